"""The probability-flow likelihood by the adaptive DPM-Solver (`samplers.likelihood.dpm`),
through `samplers.log_likelihood(..., ode_method="dpm_solver_23" / "dpm_solver_12")`."""
import pytest
import torch

import samplers
from samplers.flow import FlowDiverged
from tests.conftest import SDE_FACTORIES
from tests.test_likelihood import EPS, MIXTURES, flow_target


@pytest.mark.parametrize("method", ["dpm_solver_23",
                                    pytest.param("dpm_solver_12", marks=pytest.mark.slow)])
def test_exact_divergence_is_accurate_to_1e_3_nats_per_dim(any_sde, method):
    """At rtol = atol = 1e-5, the same 1e-3 nats/dim bound as the RK45 path (against the exact
    log-density of the flow's own end z)."""
    mixture = MIXTURES[2]
    x = mixture.sample(8, torch.Generator().manual_seed(0))
    result = samplers.log_likelihood(mixture.score_fn(any_sde), any_sde, x, divergence="exact",
                                     ode_method=method)
    error = (result.logp - flow_target(mixture, any_sde, x, result.z)).abs().mean() / 2
    assert error <= 1e-3
    assert result.logp.shape == (8,) and result.z.shape == x.shape
    assert result.nfe % (2 if method == "dpm_solver_12" else 3) == 0


def test_a_diverging_score_stops_the_solve():
    sde = SDE_FACTORIES["vp"]()
    with pytest.raises(FlowDiverged, match="likelihood ODE: the state or its derivative"):
        samplers.log_likelihood(lambda x, t: x * float("inf"), sde, torch.ones(2, 2),
                                ode_method="dpm_solver_23")
    with pytest.raises(FlowDiverged, match="more than max_nfe=30"):
        samplers.log_likelihood(lambda x, t: -x * 1e12 * (1 + torch.sin(1e6 * t)[:, None]), sde,
                                torch.ones(2, 2), ode_method="dpm_solver_23", max_nfe=30)
