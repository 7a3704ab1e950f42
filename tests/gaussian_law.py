"""The exact law of an affine sampler on 1-D Gaussian data N(μ, v).

Under every SDE here p_t = N(a_t·μ, V_t) with V_t = a_t²v + σ_t², so the score is linear,
s(x, t) = −(x − a_t·μ)/V_t, and a step x ← A·x + B·s(x, t) + C·z maps a Gaussian law N(m, q) to
N(A·m + B·s(m, t), (A − B/V_t)²·q + C²): the law of the samples follows exactly.
"""
from __future__ import annotations

import torch

from models.analytic import GaussianMixture

MU, VAR = 0.7, 0.09
GAUSSIAN = GaussianMixture([1.0], [[MU]], [VAR])
f64 = torch.float64


def marginal(sde, t: float):
    """(mean, variance) of p_t for the Gaussian data."""
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([t], dtype=f64))
    return (mean_coeff * MU).item(), (mean_coeff ** 2 * VAR + std ** 2).item()


def propagate(sde, times: torch.Tensor, steps, mean: float, var: float):
    """Push N(mean, var) through the affine steps (A, B, C) taken at `times[:-1]`."""
    for t, (x_coeff, score_coeff, noise_coeff) in zip(times[:-1].tolist(), steps.as_floats()):
        m_t, v_t = marginal(sde, t)
        mean = x_coeff * mean - score_coeff * (mean - m_t) / v_t
        var = (x_coeff - score_coeff / v_t) ** 2 * var + noise_coeff ** 2
    return mean, var


def prior_variance(sde) -> float:
    """Variance of the (isotropic Gaussian) prior, from its log-density at 0."""
    import math
    logp0 = sde.prior_logp(torch.zeros(1, 1, dtype=f64)).item()
    return math.exp(-2 * logp0) / (2 * math.pi)
