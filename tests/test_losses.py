"""training.losses against the exact score of a Gaussian mixture."""
import math

import pytest
import torch

import sde_lib
from models.analytic import GaussianMixture
from training.losses import ContinuousDSMLoss, DiscreteDSMLoss, ImportanceSampler, build_loss

f64 = torch.float64


def _mixture():
    return GaussianMixture([0.4, 0.6], [[1.0, -1.0, 0.5], [-1.0, 0.5, 0.0]], [0.2, 0.5])


def _mean_and_se(values):
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


def test_exact_score_gives_the_dsm_identity(any_sde):
    """E‖σs* + z‖² = d − E[σ²‖s*(x_t)‖²] for the exact score s* (since E[z | x_t] = −σs*)."""
    gm = _mixture()
    loss_fn = ContinuousDSMLoss(any_sde)
    gen = torch.Generator().manual_seed(0)
    x0 = gm.sample(20_000, gen)
    seen = {}

    def score_fn(x, t):
        s = gm.score(x, t, any_sde)
        seen["rhs"] = gm.dim - any_sde.marginal_coeffs(t)[1] ** 2 * (s ** 2).sum(1)
        return s

    losses = loss_fn(score_fn, x0, gen)
    diff_mean, diff_se = _mean_and_se(losses - seen["rhs"])
    assert abs(diff_mean) < 4 * diff_se


@pytest.mark.parametrize("likelihood_weighting", [False, True])
def test_exact_score_minimises_the_loss(any_sde, likelihood_weighting):
    gm = _mixture()
    loss_fn = ContinuousDSMLoss(any_sde, likelihood_weighting=likelihood_weighting)
    x0 = gm.sample(4000, torch.Generator().manual_seed(1))
    exact = gm.score_fn(any_sde)
    for wrong in (lambda x, t: 1.2 * exact(x, t), lambda x, t: exact(x, t) + 0.3):
        best = loss_fn(exact, x0, torch.Generator().manual_seed(2)).mean()
        worse = loss_fn(wrong, x0, torch.Generator().manual_seed(2)).mean()
        assert best < worse


def test_importance_sampling_is_unbiased():
    """Importance-sampled likelihood weighting has the same expectation as uniform t."""
    sde = sde_lib.VPSDE()
    gm = _mixture()
    x0 = gm.sample(40_000, torch.Generator().manual_seed(3))
    score_fn = gm.score_fn(sde)
    uniform = ContinuousDSMLoss(sde, likelihood_weighting=True)(score_fn, x0, torch.Generator().manual_seed(4))
    weighted = ContinuousDSMLoss(sde, likelihood_weighting=True, importance_sampling=True)(
        score_fn, x0, torch.Generator().manual_seed(5))
    (mu_u, se_u), (mu_w, se_w) = _mean_and_se(uniform), _mean_and_se(weighted)
    assert abs(mu_u - mu_w) < 4 * math.hypot(se_u, se_w)
    assert se_w < se_u  # the point of importance sampling


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_importance_sampler_follows_its_density(name):
    """Kolmogorov–Smirnov against the closed-form CDF (1 % critical value 1.63/√n).

    VP: ∫ β/(1 − e^{−B}) dt = log(e^B − 1) with B(t) = ∫₀ᵗβ = −2 log a(t); VE: g²/σ² is constant.
    """
    eps = 1e-5
    sde = sde_lib.VPSDE() if name == "vp" else sde_lib.VESDE()
    n = 20_000
    t = ImportanceSampler(sde, eps).sample(n, torch.Generator().manual_seed(6)).sort().values
    if name == "vp":
        def antiderivative(u):
            return torch.log(torch.expm1(-2 * sde.schedule.log_mean_coeff(u)))
    else:
        def antiderivative(u):
            return u
    lo, hi = antiderivative(torch.tensor(eps, dtype=f64)), antiderivative(torch.tensor(1.0, dtype=f64))
    u = (antiderivative(t) - lo) / (hi - lo)
    ks = (torch.arange(1, n + 1, dtype=f64) / n - u).abs().max().item()
    assert ks < 1.63 / math.sqrt(n)


def test_ddpm_loss_is_epsilon_mse():
    """With score = −ε_θ/σᵢ the discrete VP loss is ‖ε_θ − ε‖² on the DDPM chain."""
    sde = sde_lib.VPSDE(N=1000)
    x0 = torch.randn(64, 3, dtype=f64, generator=torch.Generator().manual_seed(7))
    record = {}

    def score_fn(x, t):
        index = torch.round(t * (sde.N - 1)).long()
        std = sde.sqrt_1m_alphas_cumprod[index]
        eps_pred = 0.1 * x
        record.update(x=x, index=index, eps_pred=eps_pred)
        return -eps_pred / std[:, None]

    losses = DiscreteDSMLoss(sde)(score_fn, x0, torch.Generator().manual_seed(8))
    i = record["index"]
    eps = (record["x"] - sde.sqrt_alphas_cumprod[i, None] * x0) / sde.sqrt_1m_alphas_cumprod[i, None]
    torch.testing.assert_close(losses, ((record["eps_pred"] - eps) ** 2).sum(1))


def test_reduce_mean_divides_by_dims():
    sde = sde_lib.VESDE()
    x0 = torch.randn(8, 2, 4, 4, dtype=f64)
    score_fn = lambda x, t: -x  # noqa: E731
    total = ContinuousDSMLoss(sde)(score_fn, x0, torch.Generator().manual_seed(9))
    mean = ContinuousDSMLoss(sde, reduce_mean=True)(score_fn, x0, torch.Generator().manual_seed(9))
    torch.testing.assert_close(total, mean * 32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(continuous=True, reduce_mean=False, likelihood_weighting=False, importance_sampling=True),
     "likelihood_weighting"),
    (dict(continuous=False, reduce_mean=False, likelihood_weighting=True), "continuous"),
])
def test_bad_loss_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loss(sde_lib.VPSDE(), **kwargs)


@pytest.mark.parametrize("continuous", [True, False])
def test_shards_reproduce_the_global_batch(continuous):
    """Rank r of w computes exactly the per-example losses of its slice of the global batch."""
    sde = sde_lib.VPSDE()
    loss_fn = build_loss(sde, continuous=continuous, reduce_mean=False, likelihood_weighting=False)
    gm = _mixture()
    x0 = gm.sample(12, torch.Generator().manual_seed(10))
    score_fn = gm.score_fn(sde)
    full = loss_fn(score_fn, x0, torch.Generator().manual_seed(11))
    shards = [loss_fn(score_fn, x0[r * 4:(r + 1) * 4], torch.Generator().manual_seed(11), (r, 3))
              for r in range(3)]
    torch.testing.assert_close(torch.cat(shards), full, rtol=0, atol=0)


# Class labels and label dropout.

def test_label_dropout_replaces_the_expected_fraction_and_passes_labels_on():
    from training.losses import LabelDropout
    sde = sde_lib.VPSDE()
    seen = []

    def score_fn(x, t, y):
        seen.append(y.clone())
        return torch.zeros_like(x)

    loss = LabelDropout(DiscreteDSMLoss(sde), p=0.2, null_label=10)
    y = torch.arange(20_000) % 10
    loss(score_fn, torch.zeros(20_000, 2), torch.Generator().manual_seed(0), (0, 1), y)
    dropped = seen[0] == 10
    # Binomial(20000, 0.2): the fraction's standard deviation is 0.0028; 5 SD.
    assert abs(dropped.float().mean().item() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 20_000)
    assert torch.equal(seen[0][~dropped], y[~dropped])


def test_label_dropout_draws_for_the_global_batch():
    """Rank r of a 2-process run drops exactly the labels the single process drops in its rows."""
    from training.losses import LabelDropout
    sde = sde_lib.VPSDE()
    seen = {}

    def recorder(key):
        def score_fn(x, t, y):
            seen[key] = y.clone()
            return torch.zeros_like(x)
        return score_fn

    loss = LabelDropout(DiscreteDSMLoss(sde), p=0.5, null_label=3)
    y = torch.arange(8) % 3
    loss(recorder("one"), torch.zeros(8, 2), torch.Generator().manual_seed(1), (0, 1), y)
    loss(recorder("rank1"), torch.zeros(4, 2), torch.Generator().manual_seed(1), (1, 2), y[4:])
    assert torch.equal(seen["rank1"], seen["one"][4:])


def test_conditional_loss_without_labels_raises():
    from training.losses import LabelDropout
    loss = LabelDropout(DiscreteDSMLoss(sde_lib.VPSDE()), p=0.1, null_label=3)
    with pytest.raises(ValueError, match="needs class labels"):
        loss(lambda x, t, y: x, torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"label_dropout must lie in \[0, 1\]"):
        LabelDropout(loss, p=1.5, null_label=3)
