"""Exponential multistep integrators in the half log-SNR ℓ, for any SDE: tables and the loop.

Every SDE here has x_t = a_t·x_0 + σ_t·z; with ℓ = log(a/σ) = `sde.log_snr`/2, x̄ = x/a, σ̄ = e^{−ℓ}
and the data prediction D = E[x_0 | x_t] = (x + σ²·s(x, t))/a (Tweedie), the reverse processes
with the marginals p_t form the family (Karras et al. 2022, eq. 6, in ℓ; η ≥ 0)
    dx̄ = −(1 + η)·(x̄ − D) dℓ + √(2η)·σ̄ dw_ℓ,
η = 0 being the probability-flow ODE and η = 1 the reverse SDE. From ℓ_s to ℓ_t = ℓ_s + h it has
the exact solution (Lu et al. 2022b, eq. 9 for η = 0 and SDE-DPM-Solver++ for η = 1)
    x_t = (σ_t/σ_s)·e^{−ηh}·x_s + a_t·(1+η)∫₀ʰ e^{−(1+η)(h−u)}·D(ℓ_s + u) du + σ_t·√(1 − e^{−2ηh})·z.
Replacing D by the polynomial through values m_j at nodes u_j = r_j·h (r = 0: the point s; r < 0:
earlier points; r = 1: the point t, for a corrector), the integral is Σ_j w_j·m_j with
    w = V⁻ᵀ·K,   V_jn = r_jⁿ,   K_n = n!/hⁿ·(1+η)∫₀ʰ e^{−(1+η)(h−u)}·uⁿ/n! du
(`scaled_integrals`: K_0 = 1 − e^{−(1+η)h}, K_n = 1 − n·K_{n−1}/((1+η)h), by parts). With two
nodes the second-order coefficient K_1 may be replaced by a leading-order B(h)/2 (`TWO_NODE`):
"bh2", B = K_0, is DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2) and k-diffusion's midpoint 2M SDE;
"bh1", B = (1+η)·h, is UniPC's B₁(h) (Zhao et al. 2023, Sec. 3.2); "exact" keeps K_1.
A step is x ← c·x + Σ_j w_j·m_j + std·z with float64 coefficients computed once per grid.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from samplers.common import CountedScore, sample_noise
from sde_lib import SDE

TWO_NODE = ("bh1", "bh2", "exact")
# step_index, t `[B]` (float64), x `[B, ...]`, denoised `[B, ...]` or None.
Callback = Optional[Callable[[int, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], None]]


def scaled_integrals(h: float, eta: float, count: int) -> List[float]:
    """K_0 … K_{count−1} of the module docstring for a step h (either sign) and noise level η."""
    c = 1.0 + eta
    if abs(c * h) < 0.5:   # series K_n = c·h·n!·Σ_k (−ch)^k/(n+k+1)!, no cancellation
        out = []
        for n in range(count):
            term = c * h / (n + 1)
            total, k = term, 0
            while abs(term) > 1e-17 * abs(total):
                k += 1
                term *= -c * h / (n + k + 1)
                total += term
            out.append(total)
        return out
    out = [-math.expm1(-c * h)]
    for n in range(1, count):
        out.append(1.0 - n * out[-1] / (c * h))
    return out


def interpolant_weights(nodes: Sequence[float], h: float, eta: float = 0.0,
                        two_node: str = "bh2") -> List[float]:
    """Weights w_j (without a_t) of the values at `nodes` r_j (u_j = r_j·h) in the step's integral."""
    K = scaled_integrals(h, eta, len(nodes))
    if len(nodes) == 2 and two_node != "exact":
        K[1] = 0.5 * (K[0] if two_node == "bh2" else (1.0 + eta) * h)
    V = np.vander(np.asarray(nodes, dtype=np.float64), len(nodes), increasing=True)
    return np.linalg.solve(V.T, np.asarray(K)).tolist()


class StepPlan(NamedTuple):
    """Per-step coefficients of x_{i+1} = c_i·x_i + Σ_j w_ij·m_{i−j} + std_i·z (Python floats).

    `corrector[i]`, when not None, are the weights on (m_{i+1}, m_i, m_{i−1}, …) of the corrected
    x_{i+1} = c_i·x_i + Σ_j w_ij·m_{i+1−j} (UniC), applied once m_{i+1} is known.
    """
    ratio: List[float]
    weights: List[List[float]]
    noise: List[float]
    corrector: List[Optional[List[float]]]


def half_log_snr(sde: SDE, times: torch.Tensor) -> List[float]:
    """ℓ = log(a/σ) at `times` (float64), as floats."""
    return (0.5 * sde.log_snr(times.to(torch.float64))).tolist()


def plan_steps(sde: SDE, times: torch.Tensor, orders: Sequence[int], *, eta: float = 0.0,
               two_node: str = "bh2", correct: bool = False) -> StepPlan:
    """The coefficients of the multistep method of step `orders` on the grid `times` `[K + 1]`.

    Step i uses the last orders[i] data predictions; with `correct`, a UniC corrector of one
    order more (its nodes: the new point and those of the step) follows every step but the last.
    """
    ell = half_log_snr(sde, times)
    mean_coeff, std = (c.tolist() for c in sde.marginal_coeffs(times.to(torch.float64)))
    plan = StepPlan([], [], [], [])
    for i, k in enumerate(orders):
        h = ell[i + 1] - ell[i]
        nodes = [(ell[i - j] - ell[i]) / h for j in range(k)]      # 0, then negative
        a_t = mean_coeff[i + 1]
        plan.ratio.append(std[i + 1] / std[i] * math.exp(-eta * h))
        plan.weights.append([a_t * w for w in interpolant_weights(nodes, h, eta, two_node)])
        plan.noise.append(std[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)) if eta else 0.0)
        last = i == len(orders) - 1
        plan.corrector.append(None if not correct or last else
                              [a_t * w for w in interpolant_weights([1.0] + nodes, h, eta,
                                                                    two_node)])
    return plan


def predict_data(score_fn: CountedScore, x: torch.Tensor, t: torch.Tensor, mean_coeff: float,
                 variance: float) -> torch.Tensor:
    """`common.data_prediction` D = (x + σ²·s(x, t))/a at `t` `[B]` (one evaluation), fused in
    place for the float coefficients of a plan (the same value up to rounding)."""
    return x.add(score_fn(x, t), alpha=variance).div_(mean_coeff)


def combine(x: torch.Tensor, ratio: float, weights: Sequence[float],
            history: Sequence[torch.Tensor]) -> torch.Tensor:
    """c·x + Σ_j w_j·m_j (a new tensor)."""
    out = x * ratio
    for weight, m in zip(weights, history):
        out.add_(m, alpha=weight)
    return out


def run_multistep(score_fn: CountedScore, sde: SDE, x: torch.Tensor, times: torch.Tensor,
                  plan: StepPlan, generator, denoise: bool, callback: Callback) -> torch.Tensor:
    """Integrate from x at times[0] along `plan`; with `denoise`, return D at the last time.

    One evaluation per grid time (the last only with `denoise`); `callback(i, t_i, x_i, m_i)` at
    every grid time, x_i after its correction, m_i the data prediction (None at the last time
    without `denoise`).
    """
    mean_coeff, std = (c.tolist() for c in sde.marginal_coeffs(times.to(torch.float64)))
    t_x = times.to(device=x.device, dtype=torch.float64)
    history, previous = [], None          # m_i, m_{i−1}, … newest first; x_{i−1}
    num_steps = len(plan.ratio)
    for i in range(num_steps + 1):
        t = t_x[i].expand(x.shape[0])
        if i == num_steps and not denoise:
            m = None
        else:
            m = predict_data(score_fn, x, t, mean_coeff[i], std[i] ** 2)
            history = [m] + history[:3]
        if i > 0 and plan.corrector[i - 1] is not None:
            # UniC: the new data prediction corrects x_i (Zhao et al. 2023, eq. 8).
            x = combine(previous, plan.ratio[i - 1], plan.corrector[i - 1], history)
        if callback is not None:
            callback(i, t, x, m)
        if i == num_steps:
            return m if denoise else x
        # Predictor: the step t_i -> t_{i+1} from the last data predictions.
        previous = x
        x = combine(x, plan.ratio[i], plan.weights[i], history)
        if plan.noise[i]:
            x.add_(sample_noise(x, generator), alpha=plan.noise[i])
    raise AssertionError("unreachable")


def check_two_node(value: str) -> str:
    """`two_node` / UniPC `variant` must be one of TWO_NODE."""
    if value not in TWO_NODE:
        raise ValueError(f"Unknown variant {value!r}; expected one of {sorted(TWO_NODE)}")
    return value

