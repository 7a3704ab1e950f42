"""DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++", Alg. 2) in data-prediction form, any SDE.

With a(t), σ(t) from `sde.marginal_coeffs`, the half log-SNR ℓ = log(a/σ) = `sde.log_snr`/2 and the
data prediction x̂_0(x, t) = (x + σ²·s(x, t))/a (Tweedie), the probability-flow ODE has the exact
solution (Lu et al. 2022, eq. 9)
    x_t = (σ_t/σ_s)·x_s + σ_t·∫_{ℓ_s}^{ℓ_t} e^ℓ·x̂_0(ℓ) dℓ,   s > t (ℓ increases towards the data).
Expanding x̂_0 around ℓ_s with h = ℓ_t − ℓ_s and φ₁ = e^{−h} − 1, φ₂ = φ₁/h + 1, φ₃ = φ₂/h − ½:
    x_t = (σ_t/σ_s)·x_s − a_t·φ₁·x̂_0 + a_t·φ₂·h·x̂_0' − a_t·φ₃·h²·x̂_0'' + O(h⁴)
(σ_t·∫₀ʰ e^{ℓ_s+u}·uᵏ/k! du = a_t·∫₀ʰ e^{u−h}·uᵏ/k! du gives −φ₁, h·φ₂ and −h²·φ₃ for k = 0, 1, 2).
Multistep: the derivatives come from the previous data predictions m₀ (at ℓ_s), m₁, m₂:
- order 1: DDIM;   order 2: Alg. 2, x_t = (σ_t/σ_s)·x_s − a_t·φ₁·((1 + 1/2r)·m₀ − m₁/2r), r = h₋₁/h;
- order 3: the expansion above with x̂_0', x̂_0'' of the quadratic through (ℓ, m) of the last three
  points (divided differences on the non-uniform ℓ grid).
The first steps use the orders their history allows; with `lower_order_final` and fewer than
`LOWER_ORDER_FINAL_BELOW` steps the last steps do too (Lu et al. 2022, Sec. 5, for stability at
few steps). Each step is x ← c·x + Σ_j w_j·m_j with float64 coefficients; one evaluation per step.
Works on VE (a = 1, ℓ = −log σ) as on VP and sub-VP: only `marginal_coeffs` and `log_snr` are used.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from samplers.common import CountedScore, ScoreFn, prior_sample, tweedie_denoise
from samplers.registry import SampleResult, register_sampler
from samplers.schedules import check_schedule_options, get_time_steps
from sde_lib import SDE

DEFAULT_NUM_STEPS = 20
LOWER_ORDER_FINAL_BELOW = 10
ORDERS = (1, 2, 3)


def check_order(order: int) -> int:
    """The solver order must be 1, 2 or 3."""
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    return int(order)


def step_orders(num_steps: int, order: int, lower_order_final: bool) -> list:
    """Order of each of the `num_steps` steps: warm-up from 1, and lower at the end if asked."""
    orders = [min(order, i + 1) for i in range(num_steps)]
    if lower_order_final and num_steps < LOWER_ORDER_FINAL_BELOW:
        orders = [min(k, num_steps - i) for i, k in enumerate(orders)]
    return orders


def multistep_coefficients(sde: SDE, times: torch.Tensor, orders: Sequence[int]) -> torch.Tensor:
    """Per-step (c, w₀, w₁, w₂) of x ← c·x + w₀·m₀ + w₁·m₁ + w₂·m₂ (float64 `[K, 4]`)."""
    mean_coeff, std = (c.tolist() for c in sde.marginal_coeffs(times))
    ell = (0.5 * sde.log_snr(times)).tolist()                       # ℓ_i, increasing
    steps = [b - a for a, b in zip(ell[:-1], ell[1:])]               # h_i > 0
    rows = []
    for i, k in enumerate(orders):
        h, a_t = steps[i], mean_coeff[i + 1]
        phi1 = math.expm1(-h)
        row = [std[i + 1] / std[i], -a_t * phi1, 0.0, 0.0]
        if k == 2:
            r = steps[i - 1] / h
            row[1:3] = [-a_t * phi1 * (1 + 0.5 / r), a_t * phi1 * 0.5 / r]
        elif k == 3:
            h0, h1 = steps[i - 1], steps[i - 2]
            phi2 = phi1 / h + 1
            phi3 = phi2 / h - 0.5
            first = a_t * phi2 * h              # multiplies x̂_0' = [m₀,m₁] + h₀·[m₀,m₁,m₂]
            second = (first * h0 - 2 * a_t * phi3 * h ** 2) / (h0 + h1)   # on [m₀,m₁] − [m₁,m₂]
            row[1:] = [row[1] + (first + second) / h0, -(first + second) / h0 - second / h1,
                       second / h1]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@register_sampler("dpm_solver")
def dpm_solver_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                       generator: Optional[torch.Generator] = None, device=None,
                       dtype: torch.dtype = torch.float32, order: int = 2,
                       schedule: str = "logsnr", rho: float = 7.0, lower_order_final: bool = True,
                       eps: float = 1e-3, num_steps: Optional[int] = None,
                       denoise: bool = True) -> SampleResult:
    """DPM-Solver++(order)M: `shape` `[B, ...]` samples of p_eps (p_0 with `denoise`).

    Deterministic given x_T: no random number is drawn after the prior sample.

    Args:
        order: 1, 2 or 3; schedule: a name in `samplers.schedules.TIME_SCHEDULES` ("logsnr",
            "uniform", "quadratic" as in Lu et al.; "edm" too); rho: ρ of "edm".
        lower_order_final: lower the order of the last steps when num_steps < 10.
        eps: the last time; num_steps: steps from T to eps (default 20).
        denoise: end with Tweedie's E[x_0 | x_eps] (one more evaluation).
    NFE = num_steps + [denoise].
    """
    order = check_order(order)
    rho = check_schedule_options(schedule, rho)
    times = get_time_steps(sde, schedule, DEFAULT_NUM_STEPS if num_steps is None else num_steps,
                           eps, rho=rho)
    orders = step_orders(times.shape[0] - 1, order, lower_order_final)
    table = multistep_coefficients(sde, times, orders).tolist()
    mean_coeff, std = sde.marginal_coeffs(times[:-1])
    variances, mean_coeff = (std ** 2).tolist(), mean_coeff.tolist()
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype)
    t_x = times.to(device=x.device, dtype=x.dtype)
    history = []                                                     # m₀, m₁, m₂: newest first
    for i, (k, (c, *weights)) in enumerate(zip(orders, table)):
        # Data prediction x̂_0 = (x + σ²·s)/a at t_i (Tweedie), then the step from the last k.
        score = score_fn(x, t_x[i].expand(x.shape[0]))
        history = [x.add(score, alpha=variances[i]).div_(mean_coeff[i])] + history[:2]
        x = x * c
        for weight, m in zip(weights[:k], history):
            x = x.add_(m, alpha=weight)
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, times[-1:].to(x.device).expand(x.shape[0]))
    return SampleResult(x, score_fn.nfe)
