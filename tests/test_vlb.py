"""DDPM's variational bound (samplers.likelihood.vlb) against closed forms on Gaussian and point-mass data.

Data: 1-D Gaussian N(MU, VAR) per dimension, discretized to 256 levels on [−1, 1] (edge bins
open), whose exact bin probabilities P(k) come from the normal CDF; its model is the exact
continuous-time score of N(MU, VAR) (a one-component `GaussianMixture`), which at the chain's
log-SNR time is the exact score of the chain's marginal at every index.
"""
import math

import numpy as np
import pytest
import torch

import samplers
import sde_lib
from models.analytic import GaussianMixture
from samplers.likelihood.vlb import (VARIANCES, chain_score, discretized_gaussian_log_likelihood, normal_kl,
                          posterior_mean_variance, prior_kl, reverse_mean_log_variance, vlb_term)

f64 = torch.float64
MU, VAR = 0.1, 0.09
GRID = torch.linspace(-1, 1, 256, dtype=f64)   # the 256 levels
LN2 = math.log(2)


def bin_probs(mu=MU, var=VAR) -> torch.Tensor:
    """Exact P(k) `[256]` of N(mu, var) over the bins (width 2/255, edges open to ±∞)."""
    inf = torch.tensor([math.inf], dtype=f64)
    edges = torch.cat([-inf, (GRID[:-1] + GRID[1:]) / 2, inf])
    cdf = torch.special.ndtr((edges - mu) / math.sqrt(var))
    return cdf[1:] - cdf[:-1]


def gaussian_score(sde, dim=1):
    return GaussianMixture([1.0], [[MU] * dim], [VAR]).score_fn(sde)


def point_mass_score(sde, m):
    """Exact score of data at the point m: −(x − a(t)m)/σ(t)². With it every L_i is
    deterministic (μ_θ − μ̃ does not depend on x_i), so the full sum has no noise."""
    def score_fn(x, t):
        mean_coeff, std = sde.marginal_coeffs(t.to(f64))
        return -(x - mean_coeff[:, None] * m) / std[:, None] ** 2
    return score_fn


class ConstantVarianceModel:
    """A stand-in learned-variance model: an exact score plus a constant v."""

    def __init__(self, score_fn, v):
        self.score_fn, self.v = score_fn, v

    def __call__(self, x, t):
        return self.score_fn(x, t)

    def forward_with_variance(self, x, t):
        return self.score_fn(x, t), torch.full_like(x, self.v)


def hermite(num_nodes):
    """Nodes and weights `[J]` of E f(z), z ~ N(0, 1) (Gauss–Hermite, exact to degree 2J − 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(num_nodes)
    return torch.tensor(z, dtype=f64), torch.tensor(w, dtype=f64) / math.sqrt(2 * math.pi)


def expected_terms(sde, score_fn, x0, indices, variance, num_nodes=16, v=None):
    """E_{x_i ~ q(x_i | x0)} of `vlb_term` `[B, len(indices)]` by quadrature (x0 `[B, 1]`)."""
    z, w = hermite(num_nodes)
    rows = x0.repeat_interleave(num_nodes, 0)
    noise = z.repeat(len(x0))[:, None]
    if v is not None:
        score_fn = ConstantVarianceModel(score_fn, v)
    out = []
    for i in indices:
        index = torch.full((len(rows),), i)
        mean_coeff, std = sde.discrete_marginal_coeffs(index)
        x_t = mean_coeff[:, None] * rows + std[:, None] * noise
        score, v_out = chain_score(score_fn, sde, x_t, index, variance)
        term = vlb_term(sde, rows, x_t, index, score, v_out, variance)
        out.append((term.reshape(len(x0), num_nodes) * w).sum(1))
    return torch.stack(out, 1)


def expected_bound(sde, variance):
    """E_{x0 ~ P} of the bound per dim in nats: Σ_k P(k)·(L_T + Σ_i E L_i + E L_0)(level k)."""
    x0 = GRID[:, None]
    per_level = prior_kl(sde, x0) + expected_terms(sde, gaussian_score(sde), x0,
                                                   range(sde.N), variance).sum(1)
    return (bin_probs() * per_level).sum().item()


# --- building blocks -------------------------------------------------------------------------

@pytest.mark.parametrize("mean, std", [(0.3, 0.01), (-0.99, 1e-4), (0.9, 0.004), (5.0, 0.1),
                                       (0.0, 50.0), (0.5, 1e-6), (-3.0, 0.5)])
def test_decoder_probabilities_sum_to_one_over_the_256_bins(mean, std):
    log_p = discretized_gaussian_log_likelihood(GRID, torch.tensor(mean, dtype=f64),
                                                torch.tensor(math.log(std), dtype=f64))
    assert torch.isfinite(log_p).all()                  # far tails too (log Φ, not log of 0)
    assert abs(log_p.exp().sum().item() - 1) < 1e-12
    lo = torch.cat([torch.tensor([-math.inf], dtype=f64), (GRID[:-1] + GRID[1:]) / 2])
    hi = torch.cat([(GRID[:-1] + GRID[1:]) / 2, torch.tensor([math.inf], dtype=f64)])
    direct = torch.special.ndtr((hi - mean) / std) - torch.special.ndtr((lo - mean) / std)
    bulk = direct > 1e-6                                 # where Φ differences are accurate
    torch.testing.assert_close(log_p[bulk], direct[bulk].log(), rtol=1e-9, atol=1e-12)


def test_decoder_per_pixel_images_and_gradients():
    generator = torch.Generator().manual_seed(0)
    mean = 2 * torch.rand(2, 3, 4, 4, generator=generator, dtype=f64) - 1
    log_scale = torch.empty_like(mean).uniform_(math.log(1e-5), math.log(3.), generator=generator)
    mean.requires_grad_(), log_scale.requires_grad_()
    log_p = discretized_gaussian_log_likelihood(GRID.reshape(-1, 1, 1, 1, 1), mean, log_scale)
    total = log_p.exp().sum(0)                           # [2, 3, 4, 4]: one sum per pixel
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)
    log_p.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    mean32, log_scale32 = (y.detach().float()[0, 0, 0] for y in (mean, log_scale))   # [4]
    total32 = discretized_gaussian_log_likelihood(GRID.float()[:, None], mean32,
                                                  log_scale32).exp().sum(0)
    torch.testing.assert_close(total32, torch.ones_like(total32), rtol=0, atol=1e-5)


def test_normal_kl_is_the_closed_form_and_its_monte_carlo_estimate():
    mean1, mean2 = (torch.tensor(y, dtype=f64) for y in ([0.3, -1.0, 2.0], [0.0, -0.5, 2.5]))
    logvar1, logvar2 = (torch.tensor(y, dtype=f64) for y in ([-2.0, 0.5, -9.0], [-1.0, 0.5, -8.0]))
    kl = normal_kl(mean1, logvar1, mean2, logvar2)
    p = torch.distributions.Normal(mean1, (0.5 * logvar1).exp())
    q = torch.distributions.Normal(mean2, (0.5 * logvar2).exp())
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(p, q), rtol=1e-12, atol=0)
    x = p.sample((200_000,))                              # E_p[log p − log q], 5 standard errors
    log_ratio = p.log_prob(x) - q.log_prob(x)
    stderr = log_ratio.std(0) / math.sqrt(len(x))
    assert ((log_ratio.mean(0) - kl).abs() < 5 * stderr).all()


def test_posterior_is_bayes_rule_of_the_chain():
    """q(x_{i−1} | x_i, x0) ∝ q(x_{i−1} | x0)·q(x_i | x_{i−1}), of precision
    1/(1 − ᾱ_{i−1}) + αᵢ/βᵢ."""
    sde = sde_lib.VPSDE(N=100)
    x0 = torch.tensor([[0.5, -0.2]], dtype=f64).expand(4, -1)
    x_t = torch.tensor([[0.1, 0.7]], dtype=f64).expand(4, -1)
    index = torch.tensor([1, 2, 50, 99])
    mean, var, log_var = posterior_mean_variance(sde, x0, x_t, index)
    abar_prev, beta = sde.alphas_cumprod[index - 1], sde.discrete_betas[index]
    precision = 1 / (1 - abar_prev) + (1 - beta) / beta
    expected = (abar_prev.sqrt()[:, None] * x0 / (1 - abar_prev)[:, None]
                + (1 - beta).sqrt()[:, None] * x_t / beta[:, None]) / precision[:, None]
    torch.testing.assert_close(mean, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, 1 / precision, rtol=1e-10, atol=0)
    torch.testing.assert_close(log_var, var.log(), rtol=1e-12, atol=0)
    # Index 0: the point x0, variance 0; the clipped log-variance takes index 1's.
    mean0, var0, log_var0 = posterior_mean_variance(sde, x0[:1], x_t[:1], torch.tensor([0]))
    torch.testing.assert_close(mean0, x0[:1])
    assert var0.item() == 0 and log_var0.item() == log_var[0].item()


def test_reverse_mean_is_the_posterior_mean_at_the_predicted_x0_and_variances_interpolate():
    sde = sde_lib.VPSDE(N=100)
    generator = torch.Generator().manual_seed(1)
    x_t, score = (torch.randn(5, 3, generator=generator, dtype=f64) for _ in range(2))
    index = torch.tensor([0, 1, 7, 60, 99])
    std = sde.sqrt_1m_alphas_cumprod[index][:, None]
    eps_hat = -std * score                                         # ε̂ = −σᵢ·s
    x0_hat = (x_t - std * eps_hat) / sde.sqrt_alphas_cumprod[index][:, None]
    mean, log_beta = reverse_mean_log_variance(sde, x_t, index, score, variance="beta")
    torch.testing.assert_close(mean, posterior_mean_variance(sde, x0_hat, x_t, index)[0])
    _, log_posterior = reverse_mean_log_variance(sde, x_t, index, score, variance="posterior")
    torch.testing.assert_close(log_beta[:, 0], sde.discrete_betas[index].log())
    torch.testing.assert_close(log_posterior[:, 0],
                               posterior_mean_variance(sde, x_t, x_t, index)[2])
    for v, same in ((1.0, log_beta), (0.0, log_posterior)):
        _, log_var = reverse_mean_log_variance(sde, x_t, index, score, torch.full_like(x_t, v),
                                               variance="learned")
        assert torch.equal(log_var, same.expand_as(log_var))
    v = torch.full_like(x_t, 0.25)
    _, log_var = reverse_mean_log_variance(sde, x_t, index, score, v, variance="learned")
    torch.testing.assert_close(log_var, 0.25 * log_beta + 0.75 * log_posterior.expand_as(x_t))


@pytest.mark.parametrize("variance, v", [("beta", None), ("posterior", None), ("learned", 0.3)])
def test_kl_terms_match_closed_form_and_monte_carlo_with_the_exact_gaussian_score(variance, v):
    """E_{x_i} L_i in closed form (μ_θ − μ̃ is affine in x_i for Gaussian data) against the
    average of `vlb_term` over 20 000 draws of x_i (4.5 standard errors), and quadrature."""
    sde = sde_lib.VPSDE(N=100)
    x0 = torch.tensor([[-0.4], [0.55]], dtype=f64)
    indices = [1, 5, 30, 99]
    z = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(2), dtype=f64)
    for i in indices:
        names = ("discrete_betas", "alphas", "alphas_cumprod")
        beta, alpha, abar = (getattr(sde, name)[i].item() for name in names)
        abar_prev = sde.alphas_cumprod[i - 1].item()
        log_beta = math.log(beta)
        log_posterior = math.log(beta * (1 - abar_prev) / (1 - abar))
        log_var = {"beta": log_beta, "posterior": log_posterior}.get(variance)
        log_var = v * log_beta + (1 - v) * log_posterior if log_var is None else log_var
        marginal_var = abar * VAR + 1 - abar                      # of x_i under the data
        coef_x0 = beta * math.sqrt(abar_prev) / (1 - abar)
        coef_xt = math.sqrt(alpha) * (1 - abar_prev) / (1 - abar)
        slope = (1 - beta / marginal_var) / math.sqrt(alpha) - coef_xt  # μ_θ − μ̃ = slope·x_i + c
        for x in x0[:, 0].tolist():
            offset = beta * math.sqrt(abar) * MU / (marginal_var * math.sqrt(alpha)) - coef_x0 * x
            mean_sq = (slope * math.sqrt(abar) * x + offset) ** 2 + slope ** 2 * (1 - abar)
            exact = 0.5 * (log_var - log_posterior + math.exp(log_posterior - log_var) - 1
                           + mean_sq * math.exp(-log_var))
            rows = torch.full_like(z, x)
            x_t = math.sqrt(abar) * rows + math.sqrt(1 - abar) * z
            index = torch.full((len(z),), i)
            model = ConstantVarianceModel(gaussian_score(sde), v) if v is not None \
                else gaussian_score(sde)
            score, v_out = chain_score(model, sde, x_t, index, variance)
            terms = vlb_term(sde, rows, x_t, index, score, v_out, variance)
            stderr = terms.std().item() / math.sqrt(len(terms))
            assert abs(terms.mean().item() - exact) < 4.5 * stderr + 1e-12, (i, x)
    quadrature = expected_terms(sde, gaussian_score(sde), x0, indices, variance, v=v)
    assert torch.isfinite(quadrature).all() and (quadrature >= 0).all()


def test_vlb_term_is_differentiable_in_v_and_equals_the_fixed_choices_at_v_0_and_1():
    sde = sde_lib.VPSDE(N=50)
    generator = torch.Generator().manual_seed(3)
    x0 = GRID[torch.randint(256, (6, 2, 2), generator=generator)]
    index = torch.tensor([0, 0, 1, 2, 25, 49])
    mean_coeff, std = (c[:, None, None] for c in sde.discrete_marginal_coeffs(index))
    x_t = mean_coeff * x0 + std * torch.randn(x0.shape, generator=generator, dtype=f64)
    score = torch.randn(x0.shape, generator=generator, dtype=f64)
    for v, fixed in ((1.0, "beta"), (0.0, "posterior")):
        learned = vlb_term(sde, x0, x_t, index, score, torch.full_like(x0, v), "learned")
        assert torch.equal(learned, vlb_term(sde, x0, x_t, index, score, None, fixed))
    v = torch.full_like(x0, 0.5, requires_grad=True)
    vlb_term(sde, x0, x_t, index, score, v, "learned").sum().backward()
    assert torch.isfinite(v.grad).all() and (v.grad != 0).all()
    assert torch.isfinite(vlb_term(sde, x0.float(), x_t.float(), index, score.float())).all()


# --- the bound against the exact NLL of the discretized data ----------------------------------

def test_bound_is_above_the_exact_discretized_nll_and_close_to_it_for_large_N():
    """E_P[bound] = H(P) + KL(P ‖ P_θ) + E_P KL(q(x_{0:N−1} | x0) ‖ p_θ(x_{0:N−1} | x0)) ≥ H(P),
    computed exactly (quadrature over x_i, sum over the 256 levels). With σ² = β the gap shrinks
    with the chain's discretization, 0.055 bits/dim at N = 100 to 0.0098 at N = 1000 (5.6×);
    N = 1000 is also where the decoder's σ₀ = √β₀ = 0.01 is about a bin (2/255), which the
    continuous-data model needs: at N = 3000 the gap is back to 0.013 (σ₀ ≪ bin gives
    log(bin/(√(2πe)σ₀)) per dim as N → ∞). With σ² = β̃ the exact continuous-data score's
    reverse kernel is too narrow at small i (β̃ᵢ/βᵢ = σ²ᵢ₋₁/σ²ᵢ, 1/2 at i = 1): 1.66 → 0.76.
    Bound ≥ exact NLL holds in expectation over the data (Gibbs), not per level: the model
    P_θ is not P.
    """
    probs = bin_probs()
    entropy = -(probs * probs.log()).sum().item()
    gaps = {(variance, N): (expected_bound(sde_lib.VPSDE(N=N), variance) - entropy) / LN2
            for variance in ("beta", "posterior") for N in (100, 1000)}
    assert all(gap > 0 for gap in gaps.values()), gaps
    assert gaps["beta", 1000] < 0.02 and gaps["beta", 1000] < gaps["beta", 100] / 4, gaps
    assert gaps["posterior", 1000] < gaps["posterior", 100], gaps


def test_vlb_bits_per_dim_matches_the_quadrature_bound_on_average():
    """The one-sample bound of `vlb_bits_per_dim` on x0 ~ P `[400, 8]`: its mean gap to the exact
    NLL −log₂ P(x0)/D agrees with the exact expected gap within 4.5 standard errors."""
    sde = sde_lib.VPSDE(N=100)
    probs = bin_probs()
    generator = torch.Generator().manual_seed(4)
    levels = torch.multinomial(probs, 400 * 8, replacement=True, generator=generator)
    x0 = GRID[levels].reshape(400, 8)
    result = samplers.vlb_bits_per_dim(gaussian_score(sde, 8), sde, x0, variance="beta",
                                       generator=generator)
    nll = -probs.log()[levels].reshape(400, 8).sum(1) / (8 * LN2)
    gap = result.bpd - nll
    expected = (expected_bound(sde, "beta") + (probs * probs.log()).sum().item()) / LN2
    assert abs(gap.mean().item() - expected) < 4.5 * gap.std().item() / math.sqrt(len(gap))
    assert result.exact and result.nfe == sde.N and result.terms.shape == (400, sde.N - 1)
    assert torch.equal(result.indices[0], torch.arange(1, sde.N))
    torch.testing.assert_close(result.bpd, result.prior + result.decoder + result.terms.sum(1))
    assert torch.equal(result.stderr, torch.zeros(400, dtype=f64))
    torch.testing.assert_close(result.prior, prior_kl(sde, x0) / (8 * LN2))


# --- the unbiased subset estimate ----------------------------------------------------------------

def test_subset_estimate_is_unbiased_and_its_standard_error_calibrated():
    """With a point-mass model every term is deterministic, so the full sum is exact and
    each of R = 400 subset estimates (K = 20 of 99 terms, independent draws) differs from it by
    sampling alone. E[SE²] = Var(estimate) exactly (without-replacement sampling, ddof = 1), so
    z = (mean estimate − full)/√(mean SE²/R) is ≈ N(0, 1) by the CLT over R: |z| < 4 has a
    false-alarm rate of 6e-5. The ratio Var(estimate)/mean SE² checks the SE's scale: over 40
    seeds it was 1.00 ± 0.03 (0.94–1.07; z had sd 0.87), so [0.85, 1.18] is ≈ ±5σ, while an SE
    without the finite-population factor 1 − K/(N − 1) = 0.8 would give a ratio near 0.8."""
    sde = sde_lib.VPSDE(N=100)
    model = point_mass_score(sde, 0.2)
    x0 = torch.tensor([[0.25, 0.15, 0.3]], dtype=f64)
    full = samplers.vlb_bits_per_dim(model, sde, x0)
    estimates = samplers.vlb_bits_per_dim(model, sde, x0.expand(400, -1), num_timesteps=20,
                                          generator=torch.Generator().manual_seed(5))
    assert not estimates.exact and estimates.nfe == 21 and estimates.indices.shape == (400, 20)
    assert (estimates.indices.diff(dim=1) > 0).all() and estimates.indices.min() >= 1
    assert len(set(map(tuple, estimates.indices.tolist()))) > 390    # per-example draws
    mean_sq_se = (estimates.stderr ** 2).mean().item()
    z = (estimates.bpd.mean().item() - full.bpd.item()) / math.sqrt(mean_sq_se / 400)
    assert abs(z) < 4, z
    assert 0.85 < estimates.bpd.var().item() / mean_sq_se < 1.18
    # K = N − 1 is the full sum; K = 1 has no standard error.
    every = samplers.vlb_bits_per_dim(model, sde, x0, num_timesteps=sde.N - 1)
    assert every.exact and every.stderr.item() == 0
    torch.testing.assert_close(every.bpd, full.bpd, rtol=1e-12, atol=0)
    assert math.isnan(samplers.vlb_bits_per_dim(model, sde, x0, num_timesteps=1).stderr.item())


# --- options ---------------------------------------------------------------------------------

def test_learned_variance_with_constant_v_equals_the_fixed_choices():
    sde = sde_lib.VPSDE(N=50)
    x0 = GRID[torch.randint(256, (4, 3), generator=torch.Generator().manual_seed(6))]
    for v, fixed in ((1.0, "beta"), (0.0, "posterior")):
        model = ConstantVarianceModel(gaussian_score(sde, 3), v)
        results = [samplers.vlb_bits_per_dim(model, sde, x0, variance=variance, num_timesteps=10,
                                             generator=torch.Generator().manual_seed(7))
                   for variance in ("learned", fixed)]
        assert torch.equal(results[0].bpd, results[1].bpd)


def test_chain_time_of_the_model_is_used_and_per_sample_generators_reproduce():
    sde = sde_lib.VPSDE(N=30)
    seen = []

    class Model:
        def chain_time(self, index):
            return index.to(f64) / 29

        def __call__(self, x, t):
            seen.append(t)
            return -x

    x0 = torch.tensor([[0.2, 0.4], [-0.5, 1.0]], dtype=f64)
    result = samplers.vlb_bits_per_dim(Model(), sde, x0, num_timesteps=5,
                                       generator=[torch.Generator().manual_seed(s) for s in (8, 9)])
    assert len(seen) == result.nfe == 6
    torch.testing.assert_close(torch.stack(seen[1:], 1), result.indices.to(f64) / 29)
    alone = samplers.vlb_bits_per_dim(Model(), sde, x0[1:], num_timesteps=5,
                                      generator=[torch.Generator().manual_seed(9)])
    assert torch.equal(alone.indices[0], result.indices[1])
    torch.testing.assert_close(alone.bpd[0], result.bpd[1], rtol=1e-14, atol=0)


def test_float32_images():
    sde = sde_lib.VPSDE(N=30)
    x0 = GRID[torch.randint(256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(10))]
    result = samplers.vlb_bits_per_dim(lambda x, t: -x, sde, x0.float(), num_timesteps=4)
    assert result.bpd.dtype == torch.float32 and result.bpd.shape == (2,)
    assert torch.isfinite(result.bpd).all() and (result.bpd > 0).all()


@pytest.mark.parametrize("sde, x0, options, message", [
    (sde_lib.subVPSDE(), None, {}, "VPSDE"),
    (sde_lib.VESDE(), None, {}, "VPSDE"),
    (sde_lib.VPSDE(N=1), None, {}, "N >= 2"),
    (sde_lib.VPSDE(N=10), None, {}, "betas"),                      # β_max/N = 2 > 1
    (None, torch.full((2, 3), 1.5, dtype=f64), {}, r"\[-1, 1\]"),
    (None, torch.full((2, 3), float("nan"), dtype=f64), {}, r"\[-1, 1\]"),
    (None, torch.zeros(3, dtype=f64), {}, "x0"),
    (None, torch.zeros(2, 3, dtype=torch.long), {}, "x0"),
    (None, None, dict(num_timesteps=0), "num_timesteps"),
    (None, None, dict(num_timesteps=50), "num_timesteps"),
    (None, None, dict(num_timesteps=2.5), "num_timesteps"),
    (None, None, dict(num_timesteps=True), "num_timesteps"),
    (None, None, dict(variance="large"), "variance"),
    (None, None, dict(variance="learned"), "forward_with_variance"),
])
def test_bad_input_raises_before_any_work(sde, x0, options, message):
    def score_fn(x, t):
        raise AssertionError("no score evaluation expected")

    sde = sde_lib.VPSDE(N=50) if sde is None else sde
    x0 = torch.zeros(2, 3, dtype=f64) if x0 is None else x0
    with pytest.raises(ValueError, match=message):
        samplers.vlb_bits_per_dim(score_fn, sde, x0, **options)


def test_learned_variance_model_without_v_raises():
    class NoVariance:
        learn_variance = False

        def __call__(self, x, t):
            return -x

        def forward_with_variance(self, x, t):
            return -x, None

    sde = sde_lib.VPSDE(N=30)
    with pytest.raises(ValueError, match="learned"):
        samplers.vlb_bits_per_dim(NoVariance(), sde, torch.zeros(2, 2, dtype=f64),
                                  variance="learned")
    NoVariance.learn_variance = True    # no attribute to tell: the first call finds v = None
    with pytest.raises(ValueError, match="no v"):
        samplers.vlb_bits_per_dim(NoVariance(), sde, torch.zeros(2, 2, dtype=f64),
                                  variance="learned")
    assert samplers.VARIANCES == VARIANCES == ("beta", "posterior", "learned")
