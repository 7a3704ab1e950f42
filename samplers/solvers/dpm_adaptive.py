"""Adaptive-step DPM-Solver (Lu et al. 2022a, Sec. 4; data prediction as DPM-Solver++, Lu et al.
2022b): embedded singlestep pairs in the half log-SNR ℓ = `sde.log_snr`/2, any SDE.

From ℓ_s with step h (ℓ_t = ℓ_s + h) and D = E[x_0 | x_t] = (x + σ²·s)/a, the steps are exact
integrals of D's Taylor polynomial (`samplers.multistep`: x_t = (σ_t/σ_s)·x_s + a_t·Σ K_n·hⁿ·D⁽ⁿ⁾/n!,
K_0 = 1 − e^{−h}, K_1 = 1 − K_0/h), with the derivative from intermediate stages at ℓ_s + r·h:
- order 2 ("12"): u = the first-order (DDIM) step to r = ½; x_high uses D' ≈ (D(u) − D_s)/(h/2),
  x_low is the DDIM step itself (2 evaluations per try);
- order 3 ("23"): u₁ at r₁ = ⅓ (DDIM), u₂ at r₂ = ⅔ with D' from u₁; x_high uses D' ≈ (D(u₂) −
  D_s)/(r₂h), whose O(h) error cancels the D'' term at r₂ = ⅔ (third order, Lu et al. 2022a,
  Alg. 2), x_low uses D(u₁) (second order) (3 evaluations per try).
Error control (Lu et al. 2022a, Alg. 4): δ = max(atol, rtol·max(|x_low|, |x_prev|)) elementwise,
E = ‖(x_high − x_low)/δ‖₂/√d per sample; accept where E ≤ 1 (x ← x_high), and always
h ← min(θ·h·E^{−1/order}, ℓ_eps − ℓ). As Lu et al. wrote it for VP, whose state stays O(1), it
is applied to w = x/√(a² + σ²), the VP-equivalent state (`samplers.flow`): on VE, where x is
O(σ_max) at first, δ on x itself allows a first step across the whole noise range.
Each sample has its own ℓ and h, as tensors: a try reads nothing back to the host; finished rows
are written out and dropped every `check_every` tries (one synchronisation), as in
`samplers.solvers.adaptive_sde`. NFE counts every score call (on the rows still active).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from samplers.adaptive import drive_rows
from samplers.common import (CountedScore, ScoreFn, callback_denoised, check_callback, check_eps,
                             coeff, data_prediction, prior_sample, select_rows)
from samplers.flow import FlowDiverged
from samplers.solvers.ode import MAX_NFE
from samplers.options import DENOISE, EPS, MAX_NFE as MAX_NFE_OPTION, ORDER, SAFETY, atol, \
    number, rtol, with_default
from samplers.registry import SampleResult, register_sampler
from sde_lib import SDE


STAGES = {2: (0.5,), 3: (1 / 3, 2 / 3)}


def phi_coefficients(h: torch.Tensor):
    """K_0 = 1 − e^{−h} and K_1 = 1 − K_0/h for steps h `[b]` (float64; series near h = 0)."""
    k0 = -torch.expm1(-h)
    small = h.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(h), h)
    k1 = torch.where(small, h * (0.5 - h / 6), 1 - k0 / safe)
    return k0, k1


class Geometry(NamedTuple):
    """t, a, σ `[S, b]` (float64) at the stage points ℓ_s + c·h, c = 0, r…, 1."""
    t: torch.Tensor
    mean_coeff: torch.Tensor
    std: torch.Tensor


def geometry(sde: SDE, ell: torch.Tensor, h: torch.Tensor, fractions: Sequence[float],
             ell_end: float) -> Geometry:
    """One vectorised call for every stage time of a try; the end of a step to ℓ_end is exact."""
    c = torch.tensor((0.0,) + tuple(fractions) + (1.0,), dtype=torch.float64, device=ell.device)
    lam = 2 * (ell[None] + c[:, None] * h[None])                                 # [S, b]
    t = sde.t_from_log_snr(lam)
    mean_coeff, std = sde.marginal_coeffs(t)
    return Geometry(t, mean_coeff, std)


def exponential_step(x, m0, slope, sigma_ratio, mean_coeff, k0, k1):
    """(σ_t/σ_s)·x + a_t·(K_0·m₀ + K_1·slope), slope ≈ h·D' (coefficients `[b]`)."""
    out = x * coeff(sigma_ratio, x)
    out = out.add_(m0 * coeff(mean_coeff * k0, x))
    if slope is not None:
        out = out.add_(slope * coeff(mean_coeff * k1, x))
    return out


def embedded_pair(denoise_fn, x: torch.Tensor, geo: Geometry, h: torch.Tensor, order: int):
    """(x_high, x_low, D_s) of one try; `denoise_fn(x, i)` is D at stage i of `geo`."""
    fractions = STAGES[order]
    m0 = denoise_fn(x, 0)
    k0, k1 = phi_coefficients(h)
    stage_k = [phi_coefficients(r * h) for r in fractions]
    u1 = exponential_step(x, m0, None, geo.std[1] / geo.std[0], geo.mean_coeff[1],
                          stage_k[0][0], None)
    m1 = denoise_fn(u1, 1)
    end_ratio, end_mean = geo.std[-1] / geo.std[0], geo.mean_coeff[-1]
    if order == 2:
        x_low = exponential_step(x, m0, None, end_ratio, end_mean, k0, None)
        x_high = exponential_step(x, m0, (m1 - m0) / fractions[0], end_ratio, end_mean, k0, k1)
        return x_high, x_low, m0
    r1, r2 = fractions
    u2 = exponential_step(x, m0, (m1 - m0) * (r2 / r1), geo.std[2] / geo.std[0],
                          geo.mean_coeff[2], stage_k[1][0], stage_k[1][1])
    m2 = denoise_fn(u2, 2)
    x_low = exponential_step(x, m0, (m1 - m0) / r1, end_ratio, end_mean, k0, k1)
    x_high = exponential_step(x, m0, (m2 - m0) / r2, end_ratio, end_mean, k0, k1)
    return x_high, x_low, m0


def scaled_error(x_high, x_low, w_prev, scale, atol: float, rtol: float) -> torch.Tensor:
    """E = ‖(x_high − x_low)/(k·δ)‖₂/√d per sample `[b]` (float64), δ = max(atol, rtol·max(|x_low|/k,
    |w_prev|)): Lu et al.'s δ on w = x/k, k = `scale` = √(a² + σ²), the state of the VP process
    with the same log-SNR (`samplers.flow`), so that tolerances mean on VE what they mean on VP."""
    k = coeff(scale, x_low)
    w_low = x_low / k
    delta = torch.clamp(rtol * torch.maximum(w_low.abs(), w_prev.abs()), min=atol)
    return ((x_high - x_low) / k / delta).flatten(1).double().pow(2).mean(1).sqrt(), w_low


def propose(h, err, remaining, order: int, safety: float, max_growth: float) -> torch.Tensor:
    """h ← min(h·min(θ·E^{−1/order}, max_growth), remaining) (E = 0: growth by max_growth)."""
    factor = torch.clamp(safety * err.pow(-1.0 / order), max=max_growth)
    return torch.minimum(h * factor, remaining)


class State(NamedTuple):
    """Per-sample state of the active rows."""
    x: torch.Tensor        # [b, ...]
    x_prev: torch.Tensor   # [b, ...] the last accepted x_low, as w = x/k
    ell: torch.Tensor      # [b] float64
    h: torch.Tensor        # [b] float64, 0 once ℓ = ℓ_eps


def _try(score_fn, sde, state: State, options) -> State:
    """One try for every active sample: accept / reject and the next h, on the tensor side."""
    order, atol, rtol, safety, max_growth, ell_end = options
    geo = geometry(sde, state.ell, state.h, STAGES[order], ell_end)

    def denoise_fn(x, i):
        score = score_fn(x, geo.t[i])
        return (x + score * coeff(geo.std[i] ** 2, x)) / coeff(geo.mean_coeff[i], x)
    x_high, x_low, _ = embedded_pair(denoise_fn, state.x, geo, state.h, order)
    scale = torch.sqrt(geo.mean_coeff[-1] ** 2 + geo.std[-1] ** 2)
    err, w_low = scaled_error(x_high, x_low, state.x_prev, scale, atol, rtol)
    accept = (err <= 1) & (state.h > 0)
    mask = accept.view(-1, *([1] * (state.x.ndim - 1)))
    x = torch.where(mask, x_high, state.x)
    x_prev = torch.where(mask, w_low, state.x_prev)
    ell = torch.where(accept, torch.where(state.h >= ell_end - state.ell,
                                          torch.full_like(state.ell, ell_end),
                                          state.ell + state.h), state.ell)
    h = torch.where(ell < ell_end, propose(state.h, err, ell_end - ell, order, safety, max_growth),
                    torch.zeros_like(state.h))
    return State(x, x_prev, ell, h)


def check_round(flags: torch.Tensor, nfe: int, max_nfe: int, what: str) -> torch.Tensor:
    """Host-side checks after a round, from `flags` `[2, b]` (done, non-finite step): stop with
    `samplers.flow.FlowDiverged` on a non-finite step (the state or the score is not finite) or
    past `max_nfe` score evaluations, as `samplers.flow.guarded` stops scipy's solves."""
    if bool(flags[1].any()):
        raise FlowDiverged(f"{what}: the state or its derivative is not finite after {nfe} "
                           f"score evaluations; the score function diverged")
    if nfe > max_nfe:
        raise FlowDiverged(f"{what}: more than max_nfe={max_nfe} score evaluations; the scores "
                           f"are too large or stiff for these tolerances (check the model, or "
                           f"raise max_nfe)")
    return flags[0]


def _sync(state: State, ell_end: float, nfe: int, max_nfe: int) -> torch.Tensor:
    """The one host read of a round: which rows are done (after `check_round`)."""
    flags = torch.stack([state.ell >= ell_end, ~torch.isfinite(state.h)]).cpu()
    return check_round(flags, nfe, max_nfe, "dpm_adaptive")


def solve_adaptive(score_fn: CountedScore, sde: SDE, x: torch.Tensor, eps: float, options,
                   h_init: float, check_every: int, max_steps: int, callback=None,
                   max_nfe: int = MAX_NFE):
    """Run tries in rounds until every sample reaches ℓ_eps: (x `[B, ...]` at eps, tries)."""
    ell_T, ell_end = (0.5 * sde.log_snr(torch.tensor([sde.T, eps], dtype=torch.float64))).tolist()
    options = options + (ell_end,)
    ell = torch.full((x.shape[0],), ell_T, dtype=torch.float64, device=x.device)
    mean_T, std_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    w_T = x / torch.sqrt(mean_T ** 2 + std_T ** 2).item()
    state = State(x, w_T, ell, torch.full_like(ell, min(h_init, ell_end - ell_T)))
    out = torch.empty_like(x)

    def run_round(state: State, active, tries: int):
        rows = select_rows(score_fn, active)
        for _ in range(check_every):
            if callback is not None:
                t = sde.t_from_log_snr(2 * state.ell)
                callback(tries, t, state.x, callback_denoised(rows, sde, state.x, t))
            state = _try(rows, sde, state, options)
            tries += 1
        return state, tries

    def write(rows, state: State, done) -> None:
        out[rows] = state.x[done]

    tries = drive_rows(state, x.shape[0], out.device, run_round=run_round,
                       sync=lambda state: _sync(state, ell_end, score_fn.nfe, max_nfe),
                       write=write, compact=lambda state, keep: State(*(s[keep] for s in state)),
                       max_steps=max_steps,
                       unfinished=lambda left: f"dpm_adaptive: {left} samples did not reach eps "
                                               f"in max_steps={max_steps} tries; raise max_steps, "
                                               f"atol or rtol")
    return out, tries


OPTIONS = dict(
    order=with_default(ORDER, 3, choices=tuple(STAGES), doc="3: DPM-Solver-23, 2: -12"),
    rtol=rtol(0.05), atol=atol(0.0078),
    h_init=number("float", 0.05, "the first step (in half log-SNR)", 0, open_lo=True),
    safety=SAFETY,
    max_growth=number("float", 2.0, "the largest growth of a step after a try", 1, open_lo=True),
    check_every=number("int", 4, "tries between host reads", 1),
    max_steps=number("int", 10_000, "most tries before an error", 1),
    max_nfe=MAX_NFE_OPTION, eps=EPS, denoise=DENOISE)


@register_sampler("dpm_adaptive", OPTIONS)
def dpm_adaptive_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *, generator=None,
                         device=None, dtype: torch.dtype = torch.float32, order: int = 3,
                         rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
                         safety: float = 0.9, max_growth: float = 2.0, check_every: int = 4,
                         max_steps: int = 10_000, max_nfe: int = MAX_NFE,
                         eps: float = 1e-3, denoise: bool = True,
                         x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
    """Adaptive DPM-Solver-12 (`order` 2) or -23 (3) on the probability-flow ODE.

    Returns `shape` `[B, ...]` samples of p_eps (of p_0 with `denoise`: Tweedie at eps).

    Args:
        rtol, atol: the tolerances of δ (defaults: Lu et al.'s 0.05 and 0.0078, for data in
            [−1, 1]; named as `adaptive_sde`'s, apart from scipy's rtol / atol of "ode").
        h_init: first step in ℓ; safety: θ; max_growth: the largest factor by which h grows
            after a try (> 1): without it one lucky estimate on a tiny step lets the next try
            span the whole range, whose embedded estimate can pass while both solutions are off.
        check_every: tries between host reads.
        max_steps: most tries before a RuntimeError.
        max_nfe: the solve stops with `samplers.flow.FlowDiverged` once it has spent more than
            this many score evaluations (checked every `check_every` tries), or as soon as a step
            size is not finite (a diverging score).
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` before every try i, on the rows still active
            (t `[b]`: each sample's time).
    Deterministic given x_T. NFE = order·tries + [denoise] score calls.
    """
    eps = check_eps(sde, eps)
    check_callback(callback)
    counted = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    with torch.no_grad():
        x, tries = solve_adaptive(counted, sde, x, eps, (order, float(atol), float(rtol),
                                                         float(safety), float(max_growth)),
                                  float(h_init), check_every, max_steps, callback, max_nfe)
        if denoise:
            t = torch.full((x.shape[0],), eps, dtype=torch.float64, device=x.device)
            mean_coeff, std = sde.marginal_coeffs(t)
            denoised = data_prediction(x, counted(x, t), coeff(mean_coeff, x), coeff(std ** 2, x))
            if callback is not None:
                callback(tries, t, x, denoised)
            x = denoised
    return SampleResult(x, counted.nfe, {"tries": tries})
