"""The probability-flow ODE in the reference VP's coordinates is every SDE's own ODE (eq. 13)."""
import numpy as np
import pytest
import torch

from samplers.flow import REFERENCE_VP, VPFlow
from two_sample import MIXTURE_2D

f64 = torch.float64


@pytest.mark.parametrize("t", [1e-3, 0.2, 0.7, 0.999])
def test_vp_coordinates_give_the_probability_flow_drift(any_sde, t):
    """x = k(t)·w(τ(t)), so dx/dt = k'·w + k·(dw/dτ)·τ' must equal f − ½g²·s."""
    score_fn = MIXTURE_2D.score_fn(any_sde)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=f64) * 2
    flow = VPFlow(score_fn, any_sde, x.shape, f64, x.device)
    h = 1e-7  # central differences: O((h·dλ/dt)²) ≤ 1e-8 truncation (|dλ/dt| ≤ 1e3), rounding ~1e-9
    dk_dt = (flow.scale(t + h) - flow.scale(t - h)) / (2 * h)
    dtau_dt = (flow.tau(t + h) - flow.tau(t - h)) / (2 * h)
    w = x / flow.scale(t)
    dw_dtau = torch.from_numpy(flow.drift(flow.tau(t), w.reshape(-1).numpy())).view(x.shape)
    dx_dt = dk_dt * w + flow.scale(t) * dw_dtau * dtau_dt
    times = torch.full((6,), t, dtype=f64)
    expected = any_sde.reverse(score_fn, probability_flow=True).sde(x, times)[0]
    torch.testing.assert_close(dx_dt, expected, rtol=1e-6, atol=1e-8)


def test_vp_is_its_own_reference():
    flow = VPFlow(lambda x, t: -x, REFERENCE_VP, (1, 1), f64, "cpu")
    for t in (1e-5, 0.3, 1.0):
        assert flow.tau(t) == pytest.approx(t, rel=1e-9)
        assert flow.scale(t) == pytest.approx(1.0, rel=1e-12)


def test_standard_normal_data_is_at_rest():
    """For N(0, I) data under VP the flow is at rest: dw/dτ = 0 (why VP's time is a good one)."""
    flow = VPFlow(lambda x, t: -x, REFERENCE_VP, (3, 2), f64, "cpu")
    drift = flow.drift(0.5, np.arange(6, dtype=np.float64))
    np.testing.assert_allclose(drift, 0.0, atol=1e-12)
