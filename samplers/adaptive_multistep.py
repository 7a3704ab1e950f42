"""Adaptive-step UniPC: a variable-step exponential multistep method with one evaluation per step.

In the half log-SNR ℓ = `sde.log_snr`/2, a step from ℓ to ℓ + h (either sign) takes the UniP-k
predictor x̃ (`samplers.multistep`: the exact integral of the polynomial through the last k data
predictions), evaluates D = E[x_0 | x_t] at x̃ (the step's one evaluation), and the UniC corrector
x_c of order k + 1 (Zhao et al. 2023) with it. Their difference estimates the predictor's local
error at no cost, as in a predictor–corrector (PECE) pair of Adams methods (Hairer, Nørsett &
Wanner, Sec. III.5); the controller of Lu et al. (2022a, Sec. 4) acts on it: δ = max(atol,
rtol·max(|x_c|, |x_prev|)) on the VP-equivalent state w = x/√(a² + σ²) (`samplers.flow`),
E = max over samples of ‖(x_c − x̃)/δ‖₂/√d (the worst sample sets the step), accept where E ≤ 1 (keeping x_c and D(x̃),
as UniPC does), and h ← h·clip(θ·E^{−1/(k+1)}, 0.2, `max_growth`). A rejected try costs one
evaluation; the step sizes are one per batch, so each try reads E back to the host once.

An optional integral ∫ g dℓ rides along on the same nodes (Adams–Bashforth predictor, Adams–
Moulton corrector, `multistep.quadrature_weights`), with g given by the evaluation (the
likelihood's σ²·tr ∂s/∂x), and enters E in nats per dimension.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch

from samplers.multistep import interpolant_weights, quadrature_weights

MIN_SHRINK = 0.2
# evaluate(x, t `[B]`) -> (D `[B, ...]`, g `[B]` float64 or None)
Evaluate = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, Optional[torch.Tensor]]]


class Controls(NamedTuple):
    """Order k of the predictor (the corrector has k + 1), tolerances and step-size limits."""
    order: int
    atol: float
    rtol: float
    h_init: float
    safety: float
    max_growth: float
    max_steps: int


class Endpoint(NamedTuple):
    """The state at ℓ_end: x (corrected), D at the last evaluated point, the integral, tries."""
    x: torch.Tensor
    denoised: torch.Tensor
    integral: Optional[torch.Tensor]
    tries: int


def _geometry(sde, ell: float):
    """(t, a, σ) at ℓ as floats."""
    t = sde.t_from_log_snr(torch.tensor([2 * ell], dtype=torch.float64))
    mean_coeff, std = sde.marginal_coeffs(t)
    return t.item(), mean_coeff.item(), std.item()


def _combine(x, ratio, weights, values):
    out = x * ratio
    for weight, value in zip(weights, values):
        out.add_(value, alpha=weight)
    return out


def _error(x_c, x_p, w_prev, scale, controls: Controls) -> Tuple[float, torch.Tensor]:
    """E of the pair (the largest per-sample root mean square) and x_c in w units."""
    w_c = x_c / scale
    delta = torch.clamp(controls.rtol * torch.maximum(w_c.abs(), w_prev.abs()), min=controls.atol)
    per_sample = ((x_c - x_p) / scale / delta).flatten(1).double().pow(2).mean(1).sqrt()
    return per_sample.max().item(), w_c


def solve(evaluate: Evaluate, sde, x: torch.Tensor, ell_start: float, ell_end: float,
          controls: Controls, num_dims: int = 1, callback=None) -> Endpoint:
    """Integrate from x at ℓ_start to ℓ_end (`module docstring`)."""
    t, mean_coeff, std = _geometry(sde, ell_start)
    direction = 1.0 if ell_end > ell_start else -1.0
    times = torch.full(x.shape[:1], t, dtype=torch.float64, device=x.device)
    denoised, g = evaluate(x, times)
    history: List[tuple] = [(ell_start, denoised, g)]
    integral = None if g is None else torch.zeros_like(g)
    ell, h = ell_start, direction * min(controls.h_init, abs(ell_end - ell_start))
    w_prev, tries = x / math.hypot(mean_coeff, std), 0
    if callback is not None:
        callback(0, times, x, denoised)
    while True:
        if tries >= controls.max_steps:
            raise RuntimeError(f"adaptive solver: did not reach the end in max_steps="
                               f"{controls.max_steps} tries; raise max_steps, atol or rtol")
        last = abs(ell_end - ell) <= abs(h) * (1 + 1e-9)
        h = ell_end - ell if last else h
        k = min(controls.order, len(history))
        nodes = [(entry[0] - ell) / h for entry in history[:k]]
        t_new, mean_new, std_new = _geometry(sde, ell_end if last else ell + h)
        ratio = std_new / std
        values = [entry[1] for entry in history[:k]]
        # Predictor (UniP-k), the step's evaluation, corrector (UniC-k).
        x_p = _combine(x, ratio, [mean_new * w for w in interpolant_weights(nodes, h)], values)
        times = torch.full(x.shape[:1], t_new, dtype=torch.float64, device=x.device)
        denoised_new, g_new = evaluate(x_p, times)
        weights_c = [mean_new * w for w in interpolant_weights([1.0] + nodes, h)]
        x_c = _combine(x, ratio, weights_c, [denoised_new] + values)
        scale = math.hypot(mean_new, std_new)
        err, w_c = _error(x_c, x_p, w_prev, scale, controls)
        if integral is not None:
            g_values = [entry[2] for entry in history[:k]]
            i_p = integral + h * sum(w * v for w, v in zip(quadrature_weights(nodes), g_values))
            i_c = integral + h * sum(w * v for w, v in zip(quadrature_weights([1.0] + nodes),
                                                            [g_new] + g_values))
            tol = torch.clamp(controls.rtol * i_c.abs() / num_dims, min=controls.atol)
            err = max(err, ((i_c - i_p).abs() / num_dims / tol).max().item())
        tries += 1
        if not math.isfinite(err):
            raise RuntimeError("adaptive solver: non-finite error estimate (a NaN score?)")
        if err <= 1:
            x, w_prev, ell, std = x_c, w_c, ell + h, std_new
            integral = i_c if integral is not None else None
            history = [(ell, denoised_new, g_new)] + history[:controls.order]
            if callback is not None:
                callback(tries, times, x, denoised_new)
            if last:
                return Endpoint(x, denoised_new, integral, tries)
        factor = controls.safety * err ** (-1.0 / (k + 1)) if err > 0 else controls.max_growth
        h *= min(controls.max_growth, max(MIN_SHRINK, factor))
