"""sde_lib against closed forms, Monte-Carlo simulation and its own consistency relations."""
import math

import pytest
import torch

import sde_lib
from sde_lib import append_dims
from tests.conftest import SDE_FACTORIES

f64 = torch.float64


def _times(n=9, lo=1e-3, hi=1.0):
    return torch.linspace(lo, hi, n, dtype=f64)


# --- the perturbation kernel solves the SDE's moment equations ------------------------------------

def test_marginal_coeffs_solve_moment_odes(any_sde):
    """For dx = c(t)x dt + g dw: d a/dt = c·a and d σ²/dt = 2c·σ² + g² (exactly, via autograd)."""
    t = _times(lo=0.01, hi=0.99).requires_grad_(True)
    mean_coeff, std = any_sde.marginal_coeffs(t)
    mean_coeff = mean_coeff + 0 * t  # VE's constant coefficient has no graph of its own
    da_dt, = torch.autograd.grad(mean_coeff.sum(), t, retain_graph=True)
    dvar_dt, = torch.autograd.grad((std ** 2).sum(), t)
    with torch.no_grad():
        drift, diffusion = any_sde.sde(torch.ones(len(t), 1, dtype=f64), t)
        c = drift[:, 0]
        torch.testing.assert_close(da_dt, c * mean_coeff, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(dvar_dt, 2 * c * std ** 2 + diffusion ** 2, rtol=1e-9, atol=1e-9)


def _euler_maruyama_paths(sde, x0, t_end, num_paths, num_steps, generator):
    """Simulate the forward SDE from x0 `[d]` to t_end with num_paths paths."""
    x = x0.expand(num_paths, -1).clone()
    dt = t_end / num_steps
    for i in range(num_steps):
        t = torch.full((num_paths,), i * dt, dtype=f64)
        drift, diffusion = sde.sde(x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=f64)
        x = x + drift * dt + append_dims(diffusion, 2) * math.sqrt(dt) * noise
    return x


@pytest.mark.parametrize("t_end", [0.3, 0.9])
def test_marginal_prob_matches_monte_carlo(any_sde, t_end):
    """Mean and std of simulated paths agree with `marginal_prob` within 5 Monte-Carlo standard errors.

    Euler–Maruyama's own bias is O(β·dt) relative: with 1000 steps over [0, 0.9] and β ≤ 20
    there (cosine VP included) it is below 0.5 % on the variance, a tenth of the 5-SE band
    (5·√(2/M) ≈ 7 % on the variance for M = 10⁴ paths).
    """
    M = 10_000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.0, -0.5], dtype=f64)
    paths = _euler_maruyama_paths(any_sde, x0, t_end, M, 1000, gen)
    mean, std = any_sde.marginal_prob(x0[None], torch.tensor([t_end], dtype=f64))
    mean, std = mean[0], std[0]
    mean_se = std / math.sqrt(M)
    assert (paths.mean(0) - mean).abs().max() < 5 * mean_se
    # The sample std has standard error ≈ std/√(2M) for Gaussian data.
    std_se = std / math.sqrt(2 * M)
    assert (paths.std(0) - std).abs().max() < 5 * std_se


def _chain_moments(sde, x0, num_steps):
    """Propagate mean and variance through the first `num_steps` steps of `discretize` (f = c·x)."""
    mean = x0.clone()[None]
    var = torch.zeros_like(mean)
    for i in range(num_steps):
        t = torch.tensor([i * sde.T / (sde.N - 1)], dtype=f64)
        f_mean, G = sde.discretize(mean, t)
        f_one, _ = sde.discretize(torch.ones_like(mean), t)  # f = c·x, so c = f(1)
        var = (1 + f_one) ** 2 * var + G[:, None] ** 2
        mean = mean + f_mean
    return mean[0], var[0].sqrt()


@pytest.mark.parametrize("name", sorted(SDE_FACTORIES))
def test_discretize_converges_to_continuous_kernel(name):
    """After N/2 steps (time ½T) the chain's moments approach p_0t(· | x0) as N grows (O(1/N))."""
    x0 = torch.tensor([1.0, -0.5], dtype=f64)
    errors = []
    for N in (100, 2000):
        sde = type(SDE_FACTORIES[name]())(**_same_params_with_N(SDE_FACTORIES[name](), N))
        mean, std = _chain_moments(sde, x0, N // 2)
        mean_t, std_t = sde.marginal_prob(x0[None], torch.tensor([0.5 * sde.T], dtype=f64))
        scale = std_t[0]
        errors.append(max((mean - mean_t[0]).abs().max().item(),
                          (std - std_t[0]).abs().max().item()) / scale.item())
    # First order: 20x more steps should shrink the error ~20x (require 10x); all chains here
    # have error constant below 5 at N = 100 relative to std, hence the 5e-3 cap at N = 2000.
    assert errors[1] < 5e-3
    assert errors[1] <= errors[0] / 10


def _same_params_with_N(sde, N):
    if isinstance(sde, (sde_lib.VESDE, sde_lib.EDMSDE)):
        return dict(sigma_min=sde.sigma_min, sigma_max=sde.sigma_max, N=N)
    return dict(beta_min=sde.beta_0, beta_max=sde.beta_1, N=N, schedule=sde.schedule_name)


def test_vp_discrete_chain_is_ddpm():
    """βᵢ = β_min/N + i(β_max − β_min)/(N(N−1)); ᾱ is their cumulative product of (1 − β)."""
    sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
    i = torch.arange(1000, dtype=f64)
    expected = 0.1 / 1000 + i * (20.0 - 0.1) / (1000 * 999)
    torch.testing.assert_close(sde.discrete_betas, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.alphas_cumprod, torch.cumprod(1 - expected, 0), rtol=1e-12, atol=0)


def test_ve_discrete_chain_is_smld():
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    x = torch.zeros(3, 2, dtype=f64)
    t = torch.tensor([0.0, 5 / 9, 1.0], dtype=f64)
    _, G = sde.discretize(x, t)
    s = sde.discrete_sigmas
    torch.testing.assert_close(G, torch.stack([s[0], (s[5] ** 2 - s[4] ** 2).sqrt(),
                                               (s[9] ** 2 - s[8] ** 2).sqrt()]))


# --- reverse-time SDE and probability-flow ODE ----------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 3), (5, 2, 4, 4)])
@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse_drift(any_sde, shape, probability_flow):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=f64)
    t = torch.rand(shape[0], generator=gen, dtype=f64)
    score = torch.randn(shape, generator=gen, dtype=f64)
    reverse = any_sde.reverse(lambda x_, t_: score, probability_flow=probability_flow)
    weight = 0.5 if probability_flow else 1.0
    drift, diffusion = any_sde.sde(x, t)
    rev_drift, rev_diffusion = reverse.sde(x, t)
    torch.testing.assert_close(rev_drift, drift - weight * append_dims(diffusion ** 2, x.ndim) * score)
    torch.testing.assert_close(rev_diffusion, torch.zeros_like(diffusion) if probability_flow else diffusion)
    f, G = any_sde.discretize(x, t)
    rev_f, rev_G = reverse.discretize(x, t)
    torch.testing.assert_close(rev_f, f - weight * append_dims(G ** 2, x.ndim) * score)
    torch.testing.assert_close(rev_G, torch.zeros_like(G) if probability_flow else G)
    assert rev_drift.shape == x.shape and rev_diffusion.shape == (shape[0],)


# --- prior, log-SNR, cosine schedule --------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 3), (6, 1, 2, 2)])
def test_prior_logp_matches_torch_distributions(any_sde, shape):
    gen = torch.Generator().manual_seed(2)
    z = any_sde.prior_sampling(shape, generator=gen, dtype=f64)
    assert z.shape == shape and z.dtype == f64
    prior_std = z.flatten().std().item()
    expected_std = getattr(any_sde, "sigma_max", 1.0)
    normal = torch.distributions.Normal(torch.zeros((), dtype=f64), torch.tensor(expected_std, dtype=f64))
    torch.testing.assert_close(any_sde.prior_logp(z), normal.log_prob(z).flatten(1).sum(1))
    assert prior_std == pytest.approx(expected_std, rel=0.5)


def test_prior_is_reached(any_sde):
    """At T the kernel is (nearly) the prior: a(T) small and std(T) ≈ prior std."""
    mean_coeff, std = any_sde.marginal_coeffs(torch.tensor([any_sde.T], dtype=f64))
    prior_std = getattr(any_sde, "sigma_max", 1.0)
    assert std.item() == pytest.approx(prior_std, rel=1e-2)
    if not isinstance(any_sde, (sde_lib.VESDE, sde_lib.EDMSDE)):
        assert mean_coeff.item() < 1e-2


def test_t_from_log_snr_inverts_log_snr(any_sde):
    t = torch.cat([torch.tensor([1e-5, 1e-4], dtype=f64), _times(200, 1e-3, 1.0)])
    lam = any_sde.log_snr(t)
    assert (lam[1:] < lam[:-1]).all(), "log-SNR must decrease with t"
    torch.testing.assert_close(any_sde.t_from_log_snr(lam), t, rtol=1e-9, atol=1e-12)
    mean_coeff, std = any_sde.marginal_coeffs(t)
    torch.testing.assert_close(lam, torch.log(mean_coeff ** 2 / std ** 2), rtol=1e-9, atol=1e-9)


def test_cosine_alpha_bar_matches_nichol_dhariwal():
    s = 0.008
    sde = sde_lib.VPSDE(schedule="cosine")
    t = torch.linspace(0, sde.schedule.t_clip, 101, dtype=f64)
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    alpha_bar = sde.marginal_coeffs(t)[0] ** 2
    torch.testing.assert_close(alpha_bar, f(t) / f(torch.zeros_like(t)), rtol=1e-10, atol=1e-14)
    # β(t) = −d log ᾱ / dt also past the clip, where ᾱ keeps decaying at rate β_clip.
    t = torch.linspace(0.01, 1.0, 50, dtype=f64).requires_grad_(True)
    log_alpha_bar = 2 * sde.schedule.log_mean_coeff(t)
    dlog, = torch.autograd.grad(log_alpha_bar.sum(), t)
    torch.testing.assert_close(sde.sde(torch.ones(50, 1, dtype=f64), t.detach())[1] ** 2, -dlog)


def test_cosine_discrete_chain_is_nichol_dhariwal():
    s, N = 0.008, 1000
    sde = sde_lib.VPSDE(schedule="cosine", N=N)
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for i in (0, 500, 990):
        expected = min(1 - f((i + 1) / N) / f(i / N), 0.999)
        assert sde.discrete_betas[i].item() == pytest.approx(expected, rel=1e-10)
    assert sde.discrete_betas.max().item() == pytest.approx(0.999)


# --- shapes, registry and bad arguments ----------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 7), (4, 3, 8, 8)])
def test_shapes(any_sde, shape):
    x = torch.randn(shape)
    t = torch.rand(shape[0])
    drift, diffusion = any_sde.sde(x, t)
    mean, std = any_sde.marginal_prob(x, t)
    f, G = any_sde.discretize(x, t)
    assert drift.shape == mean.shape == f.shape == shape
    assert diffusion.shape == std.shape == G.shape == (shape[0],)
    assert drift.dtype == mean.dtype == f.dtype == torch.float32
    assert any_sde.prior_logp(x).shape == (shape[0],)


def test_registry_and_build_sde():
    import ml_collections
    assert isinstance(sde_lib.get_sde("vpsde", N=10), sde_lib.VPSDE)
    cfg = ml_collections.ConfigDict(dict(name="vesde", sigma_min=0.02, sigma_max=30.0, num_scales=7,
                                         beta_min=0.1, beta_max=20.0))
    sde = sde_lib.build_sde(cfg)
    assert isinstance(sde, sde_lib.VESDE) and sde.N == 7 and sde.sigma_max == 30.0
    cfg = dict(name="vpsde", beta_min=0.1, beta_max=20.0, num_scales=10, schedule="cosine")
    assert sde_lib.build_sde(cfg).schedule_name == "cosine"


@pytest.mark.parametrize("make, argument", [
    (lambda: sde_lib.VPSDE(beta_min=20.0, beta_max=0.1), "beta_min"),
    (lambda: sde_lib.VPSDE(beta_min=1.0, beta_max=1.0), "beta_max"),
    (lambda: sde_lib.subVPSDE(beta_min=-1.0), "beta_min"),
    (lambda: sde_lib.VPSDE(N=0), "N"),
    (lambda: sde_lib.VESDE(N=2.5), "N"),
    (lambda: sde_lib.VPSDE(schedule="quadratic"), "schedule"),
    (lambda: sde_lib.VESDE(sigma_min=0.0), "sigma_min"),
    (lambda: sde_lib.VESDE(sigma_min=50.0, sigma_max=1.0), "sigma_max"),
    (lambda: sde_lib.get_sde("edm"), "SDE"),
    (lambda: sde_lib.build_sde({"name": "vp"}), "config.sde.name"),
])
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument) as info:
        make()
    message = str(info.value)
    assert "expected" in message or "must" in message


def test_discrete_marginal_coeffs(any_sde):
    """The discrete kernel at index i is the chain's own table (VP: √ᾱᵢ, √(1−ᾱᵢ); VE: 1, σᵢ),
    and is close to the continuous kernel at t_i = i/(N−1) (within the chain's O(1/N) offset)."""
    index = torch.tensor([0, 10, 500, 999])
    mean_coeff, std = any_sde.discrete_marginal_coeffs(index)
    if isinstance(any_sde, sde_lib.VPSDE):
        torch.testing.assert_close(mean_coeff ** 2, any_sde.alphas_cumprod[index])
    if isinstance(any_sde, sde_lib.VESDE):
        torch.testing.assert_close(std, any_sde.discrete_sigmas[index])
    t = index.to(f64) * any_sde.T / 999
    cont_mean, cont_std = any_sde.marginal_coeffs(t)
    torch.testing.assert_close(mean_coeff[2:], cont_mean[2:], rtol=1e-2, atol=2e-3)  # cosine: β clip at T
    torch.testing.assert_close(std[2:], cont_std[2:], rtol=1e-2, atol=1e-3)


# --- transition kernel x_t | x_s ------------------------------------------------------------------

def test_transition_coeffs_compose_with_marginals(any_sde):
    """x_t | x_s ~ N(r·x_s, v): the kernels 0→s→t compose into 0→t, and s→u→t into s→t."""
    s = torch.tensor([0.0, 1e-5, 0.1, 0.5, 0.9], dtype=f64)
    u = s + 0.3 * (1 - s) * torch.tensor([0.0, 1.0, 0.5, 0.01, 1e-6], dtype=f64)
    t = s + 0.9 * (1 - s)
    mean_s, std_s = any_sde.marginal_coeffs(s)
    mean_t, std_t = any_sde.marginal_coeffs(t)
    ratio, std = any_sde.transition_coeffs(s, t)
    torch.testing.assert_close(ratio * mean_s, mean_t, rtol=1e-12, atol=0)
    torch.testing.assert_close(ratio ** 2 * std_s ** 2 + std ** 2, std_t ** 2,
                               rtol=1e-10, atol=1e-14)
    r_su, v_su = any_sde.transition_coeffs(s, u)
    r_ut, v_ut = any_sde.transition_coeffs(u, t)
    torch.testing.assert_close(r_ut * r_su, ratio, rtol=1e-12, atol=0)
    torch.testing.assert_close(r_ut ** 2 * v_su ** 2 + v_ut ** 2, std ** 2, rtol=1e-10, atol=1e-14)


def test_transition_coeffs_small_steps_match_the_sde(any_sde):
    """Over a step h: r = 1 + c·h + O(h²) and v = g²·h + O(h²), with drift c·x and diffusion g."""
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=f64)
    h = 1e-7
    ratio, std = any_sde.transition_coeffs(t - h, t)
    drift, diffusion = any_sde.sde(torch.ones(len(t), 1, dtype=f64), t)
    torch.testing.assert_close((ratio - 1) / h, drift[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std ** 2 / h, diffusion ** 2, rtol=1e-5, atol=1e-6)


def test_per_sample_generators_do_not_depend_on_the_batch():
    """Row i drawn with generator i equals the same row drawn in another batch composition."""
    def gens(indices):
        return [torch.Generator().manual_seed(100 + i) for i in indices]
    full = sde_lib.randn((5, 2, 3), gens(range(5)), dtype=f64)
    part = sde_lib.randn((2, 2, 3), gens([3, 4]), dtype=f64)
    assert torch.equal(full[3:], part)
    sde = sde_lib.VESDE()
    prior = sde.prior_sampling((5, 2, 3), generator=gens(range(5)), dtype=f64)
    assert torch.equal(prior, full * sde.sigma_max)
    with pytest.raises(ValueError, match="per-sample generators"):
        sde_lib.randn((4, 2), gens(range(3)))


def test_ancestral_variance_lies_between_the_posterior_and_the_transition(any_sde):
    """VE: SMLD's posterior σ_s²v/σ_t²; VP and sub-VP: v (DDPM's β); always within [posterior, v]."""
    s = torch.tensor([1e-3, 0.2, 0.6, 0.98], dtype=f64)
    t = s + torch.tensor([1e-3, 0.05, 0.2, 0.02], dtype=f64)
    _, std = any_sde.transition_coeffs(s, t)
    _, std_s = any_sde.marginal_coeffs(s)
    _, std_t = any_sde.marginal_coeffs(t)
    posterior = (std * std_s / std_t) ** 2
    variance = any_sde.ancestral_variance(s, t)
    assert torch.all(variance >= posterior * (1 - 1e-12))
    assert torch.all(variance <= std ** 2 * (1 + 1e-12))
    if isinstance(any_sde, (sde_lib.VESDE, sde_lib.EDMSDE)):
        sigma_s, sigma_t = any_sde.sigma(s), any_sde.sigma(t)
        smld = sigma_s ** 2 * (sigma_t ** 2 - sigma_s ** 2) / sigma_t ** 2
        torch.testing.assert_close(variance, smld)
    else:
        torch.testing.assert_close(variance, std ** 2)
    if isinstance(any_sde, sde_lib.VPSDE):
        mean_s, _ = any_sde.marginal_coeffs(s)
        mean_t, _ = any_sde.marginal_coeffs(t)
        torch.testing.assert_close(variance, 1 - mean_t ** 2 / mean_s ** 2)
