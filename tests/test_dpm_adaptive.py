"""The adaptive DPM-Solver sampler (`samplers.solvers.dpm_adaptive`) against the closed-form flow of
Gaussian data, its exact NFE, and its stops on diverging scores."""
import pytest
import torch

import samplers
from models.analytic import GaussianMixture
from samplers.flow import FlowDiverged
from tests.conftest import SDE_FACTORIES

f64 = torch.float64
EPS = 1e-3
GAUSSIAN = GaussianMixture(torch.ones(1, dtype=f64), torch.tensor([[0.5, -0.3, 0.1]], dtype=f64),
                           torch.tensor([[0.04, 0.09, 0.01]], dtype=f64))


def exact_flow(sde, x_T: torch.Tensor, t: float) -> torch.Tensor:
    """The probability-flow map of N(m, diag v) data from T to t: with k_t² = a_t²·v + σ_t²,
    x_t = a_t·m + (k_t/k_T)·(x_T − a_T·m) per coordinate (the flow is affine, as the marginals
    are Gaussian); returned whitened by k_t."""
    m, v = GAUSSIAN.means[0], GAUSSIAN.variances[0]
    a_T, s_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=f64))
    a_t, s_t = sde.marginal_coeffs(torch.tensor([t], dtype=f64))
    k_T, k_t = torch.sqrt(a_T ** 2 * v + s_T ** 2), torch.sqrt(a_t ** 2 * v + s_t ** 2)
    return a_t * m + k_t / k_T * (x_T - a_T * m), k_t


@pytest.mark.parametrize("order", [2, 3])
def test_error_follows_the_tolerance_and_nfe_is_counted_exactly(any_sde, order):
    """Error control bounds each step's local error by tol (on w = x/k, Lu et al. 2022a,
    Alg. 4); over the tens of accepted steps the global error stays within a small multiple of
    it (observed 1.5–5×; bound 10×), and a 10× tighter tolerance shrinks it by ≥ 4×."""
    x_T = any_sde.prior_sampling((64, 3), generator=torch.Generator().manual_seed(0), dtype=f64)
    target, k = exact_flow(any_sde, x_T, EPS)
    errors = []
    for tol in (1e-3, 1e-4):
        calls = []

        def score(x, t):
            calls.append(1)
            return GAUSSIAN.score(x, t, any_sde)
        result = samplers.sample(score, any_sde, (64, 3), "dpm_adaptive", x_T=x_T, dtype=f64,
                                 order=order, rtol=tol, atol=tol, eps=EPS, denoise=False)
        errors.append(((result.x - target) / k).abs().max().item())
        assert result.nfe == len(calls) == order * result.info["tries"]
    assert errors[1] <= 10 * 1e-4
    assert errors[1] <= errors[0] / 4


def test_a_diverging_score_stops_the_solve():
    sde = SDE_FACTORIES["vp"]()
    with pytest.raises(FlowDiverged, match="dpm_adaptive: the state or its derivative"):
        samplers.sample(lambda x, t: torch.full_like(x, float("nan")), sde, (2, 2),
                        "dpm_adaptive")
    with pytest.raises(FlowDiverged, match="more than max_nfe=30"):
        samplers.sample(lambda x, t: -x * 1e12 * (1 + torch.sin(1e6 * t)[:, None]), sde, (2, 2),
                        "dpm_adaptive", max_nfe=30)


@pytest.mark.parametrize("options, field", [
    (dict(order=1), "order"), (dict(max_growth=1.0), "max_growth"), (dict(max_nfe=0), "max_nfe"),
    (dict(rtol=0.0), "rtol"), (dict(check_every=0), "check_every"),
])
def test_bad_options(options, field):
    with pytest.raises(ValueError, match=field):
        samplers.sample(lambda x, t: -x, SDE_FACTORIES["vp"](), (2, 2), "dpm_adaptive",
                        **options)
