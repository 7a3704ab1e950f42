"""Probability-flow ODE sampling: exact Gaussian flows, mixture samples, NFE and options."""
import pytest
import torch

import samplers
from models.analytic import GaussianMixture
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURES, assert_matches_exact, run_sampler

f64 = torch.float64
MEAN, VAR = 0.7, 0.09
GAUSSIAN = GaussianMixture([1.0], [[MEAN]], [VAR])


def exact_gaussian_flow(sde, x_T, t_end):
    """For N(μ, v) data the flow is affine: x_t − a_t μ scales with std_t = √(a_t²v + σ_t²)."""
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([sde.T, t_end], dtype=f64))
    spread = (mean_coeff ** 2 * VAR + std ** 2).sqrt()
    return mean_coeff[1] * MEAN + spread[1] / spread[0] * (x_T - mean_coeff[0] * MEAN)


@pytest.mark.parametrize("dim", [2, pytest.param(16, marks=pytest.mark.slow)])
def test_ode_sampler_matches_exact_samples(any_sde, dim):
    result = run_sampler(any_sde, MIXTURES[dim], "ode")
    assert_matches_exact(result.x, MIXTURES[dim], any_sde, EPS)


def test_ode_sampler_follows_the_exact_gaussian_flow(any_sde):
    """The end point error shrinks with the tolerances, below 1e-4 at the defaults 1e-5."""
    shape, seed = (16, 1), 3
    x_T = any_sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
    target = exact_gaussian_flow(any_sde, x_T, EPS)
    errors = []
    for tol in (1e-3, 1e-5):
        result = samplers.sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "ode", dtype=f64,
                                 rtol=tol, atol=tol, denoise=False,
                                 generator=torch.Generator().manual_seed(seed))
        errors.append((result.x - target).abs().max().item())
    assert errors[1] < 1e-4 and errors[1] < errors[0]


def test_nfe_and_determinism():
    sde = SDE_FACTORIES["ve"]()
    calls = []

    def score_fn(x, t):
        calls.append(1)
        return GAUSSIAN.score(x, t, sde)

    first = samplers.sample(score_fn, sde, (4, 1), "ode", dtype=f64,
                            generator=torch.Generator().manual_seed(0))
    assert first.nfe == len(calls) > 1
    second = samplers.sample(GAUSSIAN.score_fn(sde), sde, (4, 1), "ode", dtype=f64,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.x, second.x)
    no_denoise = samplers.sample(GAUSSIAN.score_fn(sde), sde, (4, 1), "ode", dtype=f64,
                                 denoise=False, generator=torch.Generator().manual_seed(0))
    assert no_denoise.nfe == first.nfe - 1


@pytest.mark.parametrize("ode_method", ["RK23", "DOP853"])
def test_other_scipy_methods(ode_method):
    sde = SDE_FACTORIES["subvp"]()
    x_T = sde.prior_sampling((8, 1), generator=torch.Generator().manual_seed(1), dtype=f64)
    # At 1e-5 DOP853's error estimate, from very few steps, lets 1e-3 through: use 1e-7.
    result = samplers.sample(GAUSSIAN.score_fn(sde), sde, (8, 1), "ode", dtype=f64,
                             ode_method=ode_method, rtol=1e-7, atol=1e-7, denoise=False,
                             generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(result.x, exact_gaussian_flow(sde, x_T, EPS), rtol=0, atol=1e-5)


@pytest.mark.parametrize("options, field", [
    (dict(ode_method="rk4"), "ode_method"), (dict(rtol=0.0), "rtol"), (dict(atol=-1.0), "atol"),
    (dict(eps=2.0), "eps"),
])
def test_bad_options(options, field):
    with pytest.raises(ValueError, match=field):
        samplers.sample(lambda x, t: -x, SDE_FACTORIES["vp"](), (2, 2), "ode", **options)


def test_a_diverging_score_stops_the_solve_at_once_or_at_the_cap():
    import pytest
    from samplers.flow import FlowDiverged

    calls = []

    def nan_score(x, t):
        calls.append(1)
        return torch.full_like(x, float("nan"))

    sde = SDE_FACTORIES["vp"]()
    with pytest.raises(FlowDiverged, match="not finite after 1 score evaluations"):
        samplers.sample(nan_score, sde, (2, 2), "ode")
    assert len(calls) == 1
    calls.clear()

    def stiff_score(x, t):   # finite, but so large that an adaptive solver crawls
        calls.append(1)
        return -x * 1e12 * (1 + torch.sin(1e6 * t)[:, None])

    with pytest.raises(FlowDiverged, match="more than max_nfe=50"):
        samplers.sample(stiff_score, sde, (2, 2), "ode", max_nfe=50)
    assert len(calls) == 50
