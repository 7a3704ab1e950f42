"""EDM's Heun sampler (Karras et al. 2022, Alg. 2) for any SDE, through σ̄(t) = σ(t)/a(t).

Every SDE here has x_t = a(t)·(x_0 + σ̄(t)·z): in the scaled variable x̄ = x/a, p_t is the data
smoothed by N(0, σ̄²I), EDM's "σ". Its probability-flow ODE is dx̄/dσ̄ = (x̄ − D(x̄; σ̄))/σ̄ with
the denoiser D = E[x_0 | x_t] = (x + σ²·s(x, t))/a (Karras et al. 2022, eq. 3 and 4), so
    dx̄/dσ̄ = −σ(t)·s(a(t)·x̄, t),   t = t(σ̄) = `sde.t_from_log_snr(−2 log σ̄)`.
For VE (a = 1) this is EDM's own sampler; VP and sub-VP reach it through σ̄ = std/mean.

Steps: `num_steps` intervals between N = `num_steps` + 1 noise levels σ̄_0 = σ̄(T) > … >
σ̄_{N−1} = σ̄(eps) from `schedule` (default EDM's ρ-schedule, eq. 5), then σ̄_N = 0. Each of the
N − 1 steps between levels is Euler + 2nd-order (trapezoidal) correction; the last step to σ̄ = 0
is a plain Euler step, which lands exactly on D(x̄; σ̄_{N−1}), i.e. Tweedie denoising (`denoise`).
NFE = 2N − 1 (2N − 2 without `denoise`), as in EDM.

Stochastic churn (Alg. 2, lines 4–6): where S_tmin ≤ σ̄_i ≤ S_tmax, γ_i = min(S_churn/N, √2 − 1),
σ̂_i = (1 + γ_i)·σ̄_i and x̄ ← x̄ + √(σ̂_i² − σ̄_i²)·S_noise·z before the step. σ̂ is capped at
σ̄(T) (the SDE, and a network trained on it, stops at T). s_tmin / s_tmax are in σ̄ units.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from samplers.common import (CountedScore, ScoreFn, check_callback, finish_run, prior_sample,
                             sample_noise)
from samplers.options import DENOISE, EPS, RHO, number, schedule, steps
from samplers.registry import SampleResult, register_sampler
from samplers.schedules import TIME_SCHEDULES, Times, resolve_times
from sde_lib import SDE

DEFAULT_NUM_STEPS = 17   # intervals, 18 levels: EDM's CIFAR-10 setting, 35 NFE


class HeunPlan(NamedTuple):
    """Per-step float64 quantities (`[N − 1]` each) for steps σ̂_i → σ̄_{i+1}."""
    t_hat: torch.Tensor       # time of σ̂_i (after churn)
    sigma_hat: torch.Tensor   # σ̂_i
    t_next: torch.Tensor      # t_{i+1}
    sigma_next: torch.Tensor  # σ̄_{i+1}
    churn_std: torch.Tensor   # √(σ̂_i² − σ̄_i²)·S_noise


def check_churn(options) -> None:
    """0 ≤ S_tmin ≤ S_tmax (Karras et al. 2022, Alg. 2); each is checked by the declaration."""
    s_tmin, s_tmax = options["s_tmin"], options["s_tmax"]
    if s_tmax < s_tmin:
        raise ValueError(f"s_tmax must be >= s_tmin, got s_tmin={s_tmin!r}, s_tmax={s_tmax!r}")


def heun_plan(sde: SDE, times: torch.Tensor, s_churn: float, s_tmin: float, s_tmax: float,
              s_noise: float) -> HeunPlan:
    """The churned levels and their times for the grid `times` `[N]` (float64)."""
    num_levels = times.shape[0]
    sigmas = torch.exp(-0.5 * sde.log_snr(times))                                  # σ̄_i
    in_range = (sigmas[:-1] >= s_tmin) & (sigmas[:-1] <= s_tmax)
    gamma = in_range.to(torch.float64) * min(s_churn / num_levels, math.sqrt(2) - 1)
    sigma_hat = torch.minimum(sigmas[:-1] * (1 + gamma), sigmas[0])
    t_hat = torch.where(sigma_hat > sigmas[:-1], sde.t_from_log_snr(-2 * torch.log(sigma_hat)),
                        times[:-1])
    churn_std = torch.sqrt((sigma_hat ** 2 - sigmas[:-1] ** 2).clamp(min=0)) * s_noise
    return HeunPlan(t_hat, sigma_hat, times[1:], sigmas[1:], churn_std)


def _slope(score_fn: ScoreFn, x_bar: torch.Tensor, t: torch.Tensor, mean_coeff: float,
           std: float) -> torch.Tensor:
    """dx̄/dσ̄ = −σ(t)·s(a(t)·x̄, t), with a(t), σ(t) given as floats and `t` `[B]`."""
    return score_fn(x_bar * mean_coeff, t).mul(-std)


OPTIONS = dict(
    schedule=schedule("edm", TIME_SCHEDULES), rho=RHO,
    s_churn=number("float", 0.0, "EDM's stochastic churn (0: deterministic)", 0),
    s_tmin=number("float", 0.0, "churn from this σ̄", 0),
    s_tmax=number("float", float("inf"), "churn up to this σ̄", 0, inf_ok=True),
    s_noise=number("float", 1.0, "churn noise scale", 0),
    eps=EPS, num_steps=steps(DEFAULT_NUM_STEPS), denoise=DENOISE)


def _cost(options, num_steps: int) -> int:
    """Two evaluations per interval, and one for the final step to σ̄ = 0."""
    return 2 * num_steps + bool(options["denoise"])


@register_sampler("heun", OPTIONS, check_churn, _cost)
def heun_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                 generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32, schedule: Times = "edm", rho: float = 7.0,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0, eps: float = 1e-3, num_steps: Optional[int] = None,
                 denoise: bool = True, x_T: Optional[torch.Tensor] = None,
                 callback=None) -> SampleResult:
    """EDM Heun sampler (Karras et al. 2022, Alg. 2): `shape` `[B, ...]` samples of p_0.

    Without `denoise`, samples of p_eps.

    Args:
        schedule: a name in `samplers.schedules.TIME_SCHEDULES` (default "edm") or the explicit
            decreasing times of the levels; rho: its ρ.
        s_churn, s_tmin, s_tmax, s_noise: EDM's stochasticity (s_churn = 0: deterministic).
        eps: time of the smallest level; num_steps: intervals between the noise levels, ≥ 1
            (default 17: EDM's 18 levels).
        denoise: take the final Euler step to σ̄ = 0 (Tweedie's E[x_0 | x_eps]).
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` at every level (denoised: E[x_0 | x_t],
            `samplers.registry.with_denoised`).
    NFE = 2·num_steps + [denoise].
    """
    check_callback(callback)
    times = resolve_times(sde, schedule, num_steps, eps, DEFAULT_NUM_STEPS, rho)
    num_steps = times.numel() - 1        # intervals: num_steps + 1 noise levels
    plan = heun_plan(sde, times, s_churn, s_tmin, s_tmax, s_noise)
    churn_std, sigma_hat, sigma_next = (plan.churn_std.tolist(), plan.sigma_hat.tolist(),
                                        plan.sigma_next.tolist())
    # a(t), σ(t) at the times of both evaluations of each step, as floats.
    (mean_hat, std_hat), (mean_next, std_next) = (
        (c.tolist() for c in sde.marginal_coeffs(t)) for t in (plan.t_hat, plan.t_next))
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    t_hat, t_next = (t.to(device=x.device, dtype=x.dtype) for t in (plan.t_hat, plan.t_next))
    x_bar = x / (sde.marginal_coeffs(times[:1])[0].item())            # x̄ = x/a at T
    for i in range(num_steps):
        if callback is not None:
            scale = sde.marginal_coeffs(times[i:i + 1])[0].item()
            callback(i, times[i].to(x.device).expand(x.shape[0]), x_bar * scale, None)
        if churn_std[i] > 0:
            # Increase noise temporarily: σ̄_i -> σ̂_i.
            x_bar = x_bar.add(sample_noise(x_bar, generator), alpha=churn_std[i])
        h = sigma_next[i] - sigma_hat[i]
        # Euler step.
        slope = _slope(score_fn, x_bar, t_hat[i].expand(x.shape[0]), mean_hat[i], std_hat[i])
        x_euler = x_bar.add(slope, alpha=h)
        # Apply 2nd order correction.
        slope_next = _slope(score_fn, x_euler, t_next[i].expand(x.shape[0]), mean_next[i],
                            std_next[i])
        x_bar = x_bar.add(slope.add_(slope_next), alpha=0.5 * h)
    x = x_bar * sde.marginal_coeffs(times[-1:])[0].item()
    # With `denoise`, the Euler step to σ̄ = 0: x̄ + (0 − σ̄)·(x̄ − D)/σ̄ = D = E[x_0 | x_eps].
    return finish_run(score_fn, sde, x, times, denoise, callback, num_steps)
