"""The probability-flow likelihood by the adaptive DPM-Solver (`samplers.solvers.dpm_adaptive`).

In the half log-SNR ℓ = log(a/σ) the probability-flow ODE is dx/dℓ = (d log a/dℓ − 1)·x + a·D with
D = (x + σ²·s)/a, whose divergence is d·(d log a/dℓ) + σ²·tr ∂s/∂x. The instantaneous change of
variables (Song et al. 2021, App. D.2; Chen et al. 2018) integrated from ℓ_eps to ℓ_T gives
    log p_eps(x) = log p_T(z) + d·log(a_T/a_eps) + ∫_{ℓ_eps}^{ℓ_T} σ²·tr(∂s/∂x) dℓ,
z the end of the flow and log p_T replaced by `sde.prior_logp`. The flow is integrated backwards
(h < 0) by the embedded DPM-Solver pair, and the integral on the same stages: with the trace g_i
at stage i (one vector–Jacobian product with the stage's evaluation), Heun's third-order
quadrature h·(¼g₀ + ¾g₂) on the nodes 0, ⅓, ⅔ beside the second-order h·(−½g₀ + 3/2·g₁) ("23"),
or the midpoint h·g₁ beside h·g₀ ("12"). These are exact for polynomials of degree 2 / 1 on the
stage states, which the x-stages give to the same orders (u₂ to second, u at ½ to first order).
Error control as for sampling, on x and on the integral in nats per dimension:
E = max(E_x, |ΔL|/d / max(atol, rtol·|L|/d)).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from samplers.adaptive import drive_rows
from samplers.common import CountedScore, coeff, select_rows
from samplers.solvers.dpm_adaptive import (STAGES, check_round, embedded_pair, geometry, propose,
                                   scaled_error)
from samplers.solvers.ode import MAX_NFE
from samplers.registry import LikelihoodResult

# Quadrature weights (high, low) on the stages 0, r… of each order.
WEIGHTS = {3: ((0.25, 0.0, 0.75), (-0.5, 1.5, 0.0)), 2: ((0.0, 1.0), (1.0, 0.0))}
DPM_METHODS = {"dpm_solver_12": 2, "dpm_solver_23": 3}


class FlowState(NamedTuple):
    """Per-sample state of the active rows, integrating from ℓ_eps down to ℓ_T."""
    x: torch.Tensor        # [b, ...]
    w_prev: torch.Tensor   # [b, ...] last accepted x_low / k
    integral: torch.Tensor  # [b] float64, ∫ σ²·tr ∂s/∂x dℓ so far
    ell: torch.Tensor      # [b] float64
    h: torch.Tensor        # [b] float64, ≤ 0; 0 once ℓ = ℓ_T
    probes: torch.Tensor   # [P, b, ...]


def _try(score_fn, sde, state: FlowState, options, trace_fn) -> FlowState:
    """One backward try for every active sample (all on the tensor side)."""
    order, atol, rtol, safety, max_growth, ell_end, num_dims = options
    geo = geometry(sde, state.ell, state.h, STAGES[order], ell_end)
    traces = []

    def denoise_fn(x, i):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            score = score_fn(x_in, geo.t[i])
            traces.append(trace_fn(score, x_in, state.probes) * geo.std[i] ** 2)
        score = score.detach()
        return (x + score * coeff(geo.std[i] ** 2, x)) / coeff(geo.mean_coeff[i], x)
    x_high, x_low, _ = embedded_pair(denoise_fn, state.x, geo, state.h, order)
    high, low = (sum(w * g for w, g in zip(weights, traces) if w) for weights in WEIGHTS[order])
    l_high, l_low = state.integral + state.h * high, state.integral + state.h * low
    scale = torch.sqrt(geo.mean_coeff[-1] ** 2 + geo.std[-1] ** 2)
    err_x, w_low = scaled_error(x_high, x_low, state.w_prev, scale, atol, rtol)
    err_l = (l_high - l_low).abs() / num_dims / torch.clamp(rtol * l_high.abs() / num_dims,
                                                               min=atol)
    err = torch.maximum(err_x, err_l)
    accept = (err <= 1) & (state.h < 0)
    mask = accept.view(-1, *([1] * (state.x.ndim - 1)))
    ell = torch.where(accept, torch.where(state.h <= ell_end - state.ell,
                                          torch.full_like(state.ell, ell_end),
                                          state.ell + state.h), state.ell)
    h = torch.where(ell > ell_end, -propose(-state.h, err, ell - ell_end, order, safety,
                                                         max_growth),
                    torch.zeros_like(state.h))
    return FlowState(torch.where(mask, x_high, state.x), torch.where(mask, w_low, state.w_prev),
                     torch.where(accept, l_high, state.integral), ell, h, state.probes)


def _compact(state: FlowState, keep: torch.Tensor) -> FlowState:
    fields = [s[keep] for s in state[:-1]]
    return FlowState(*fields, state.probes[:, keep])


def dpm_log_likelihood(score_fn, sde, x: torch.Tensor, *, eps: float, rtol: float, atol: float,
                       order: int, probes: torch.Tensor, trace_fn, h_init: float = 0.05,
                       safety: float = 0.9, max_growth: float = 2.0, check_every: int = 4,
                       max_steps: int = 10_000, max_nfe: int = MAX_NFE) -> LikelihoodResult:
    """log p_eps(x) `[B]` (float64) by the adaptive DPM-Solver of `order` (2 or 3).

    `probes` `[P, B, ...]` and `trace_fn(output, inputs, probes) -> [B]` give tr ∂s/∂x. Stops
    with `samplers.flow.FlowDiverged` on a non-finite step or past `max_nfe` evaluations.
    """
    counted = CountedScore(score_fn)
    ell_eps, ell_T = (0.5 * sde.log_snr(torch.tensor([eps, sde.T], dtype=torch.float64))).tolist()
    num_dims = x[0].numel()
    options = (order, float(atol), float(rtol), float(safety), float(max_growth), ell_T, num_dims)
    mean_eps, std_eps = sde.marginal_coeffs(torch.tensor([eps], dtype=torch.float64))
    ell = torch.full((x.shape[0],), ell_eps, dtype=torch.float64, device=x.device)
    state = FlowState(x, x / torch.sqrt(mean_eps ** 2 + std_eps ** 2).item(),
                      torch.zeros_like(ell), ell, torch.full_like(ell, -min(h_init, ell_eps - ell_T)),
                      probes)
    z, integral = torch.empty_like(x), torch.zeros_like(ell)

    def run_round(state: FlowState, active, tries: int):
        rows = select_rows(counted, active)
        for _ in range(check_every):
            state = _try(rows, sde, state, options, trace_fn)
        return state, tries + check_every

    def sync(state: FlowState) -> torch.Tensor:
        flags = torch.stack([state.ell <= ell_T, ~torch.isfinite(state.h)]).cpu()
        return check_round(flags, counted.nfe, max_nfe, "likelihood ODE")

    def write(rows, state: FlowState, done) -> None:
        z[rows], integral[rows] = state.x[done], state.integral[done]

    drive_rows(state, x.shape[0], x.device, run_round=run_round, sync=sync, write=write,
               compact=_compact, max_steps=max_steps,
               unfinished=lambda left: f"log_likelihood: {left} samples did not reach T in "
                                       f"max_steps={max_steps} tries; raise max_steps, atol or "
                                       f"rtol")
    mean_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))[0].item()
    logp = (sde.prior_logp(z).double() + num_dims * torch.log(torch.tensor(mean_T) / mean_eps)
            .item() + integral)
    return LikelihoodResult(logp, z, counted.nfe)
