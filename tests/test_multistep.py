"""samplers.multistep: the exponential integrals, the interpolation weights, the step plan."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from samplers.solvers.dpm_solver import step_orders
from samplers.multistep import interpolant_weights, plan_steps, scaled_integrals
from samplers.schedules import get_time_steps


def _integral(n: int, h: float, eta: float) -> float:
    """K_n by adaptive quadrature: n!/hⁿ·(1+η)∫₀ʰ e^{−(1+η)(h−u)}·uⁿ/n! du."""
    c = 1 + eta
    value, _ = integrate.quad(lambda u: c * math.exp(-c * (h - u)) * u ** n / math.factorial(n),
                              0, h, epsabs=0, epsrel=1e-13)
    return value * math.factorial(n) / h ** n


@pytest.mark.parametrize("h", [1e-6, 1e-3, 0.2, 0.49, 0.51, 1.7, 6.0, -0.3, -2.0])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_scaled_integrals_match_quadrature(h, eta):
    # Both branches (series for |(1+η)h| < 0.5, recurrence beyond) and both signs of h.
    expected = [_integral(n, h, eta) for n in range(4)]
    np.testing.assert_allclose(scaled_integrals(h, eta, 4), expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("nodes", [[0.0], [0.0, -0.7], [0.0, -0.5, -1.3], [1.0, 0.0, -0.4, -1.1]])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_weights_integrate_polynomials_exactly(nodes, eta):
    # Σ_j w_j·q(r_j·h) = (1+η)∫₀ʰ e^{−(1+η)(h−u)}·q(u) du for q of degree < len(nodes).
    h, c = 0.8, 1 + eta
    for degree in range(len(nodes)):
        def q(u):
            return (u - 0.3) ** degree
        exact, _ = integrate.quad(lambda u: c * math.exp(-c * (h - u)) * q(u), 0, h,
                                  epsabs=0, epsrel=1e-13)
        weights = interpolant_weights(nodes, h, eta, two_node="exact")
        assert sum(w * q(r * h) for w, r in zip(weights, nodes)) == pytest.approx(exact,
                                                                                 rel=1e-10)


def test_two_node_variants():
    # One unknown beyond m₀: K_1 → B(h)/2 with B = K_0 ("bh2", Lu et al.'s DPM-Solver++(2M)) or
    # B = h ("bh1", UniPC's B₁); m₀'s weight keeps the sum K_0 (constants stay exact).
    h, r = 0.9, -0.6
    k0 = -math.expm1(-h)
    for variant, second in (("bh2", k0 / 2), ("bh1", h / 2), ("exact", 1 - k0 / h)):
        w0, w1 = interpolant_weights([0.0, r], h, 0.0, variant)
        assert w1 == pytest.approx(second / r, rel=1e-12)
        assert w0 + w1 == pytest.approx(k0, rel=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        interpolant_weights([0.0, 0.0], h)


def test_plan_corrector_and_noise(any_sde):
    times = get_time_steps(any_sde, "logsnr", 5, 1e-3)
    orders = step_orders(5, 2, False)
    plan = plan_steps(any_sde, times, orders, correct=True)
    assert plan.corrector[-1] is None and all(c is not None for c in plan.corrector[:-1])
    assert [len(c) for c in plan.corrector[:-1]] == [k + 1 for k in orders[:-1]]
    assert plan.noise == [0.0] * 5
    sde_plan = plan_steps(any_sde, times, orders, eta=1.0)
    mean_coeff, std = any_sde.marginal_coeffs(times)
    h = 0.5 * (any_sde.log_snr(times[1:]) - any_sde.log_snr(times[:-1]))
    # Noise std σ_t·√(1 − e^{−2h}) and ratio (σ_t/σ_s)·e^{−h} of the reverse SDE (η = 1).
    torch.testing.assert_close(torch.tensor(sde_plan.noise, dtype=torch.float64),
                               std[1:] * torch.sqrt(-torch.expm1(-2 * h)), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.tensor(sde_plan.ratio, dtype=torch.float64),
                               std[1:] / std[:-1] * torch.exp(-h), rtol=1e-12, atol=0)
