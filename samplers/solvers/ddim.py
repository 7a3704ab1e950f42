"""DDIM (Song, Meng & Ermon 2021) for any SDE, through its kernel x_t = a(t)·x_0 + σ(t)·z.

DDIM only needs the marginals: from x_t, the predicted data and noise are
    x̂_0 = (x_t + σ_t²·s(x_t, t)) / a_t,     ε̂ = −σ_t·s(x_t, t)      (Tweedie's formula),
and the step to s < t is (Song et al. 2021a, eq. 12, with √ᾱ → a and √(1 − ᾱ) → σ)
    x_s = a_s·x̂_0 + √(σ_s² − c²)·ε̂ + c·z,    c = η·(σ_s/σ_t)·√(σ_t² − r²σ_s²),  r = a_t/a_s,
c being eq. 16's σ_t(η): η = 0 is the deterministic sampler, η = 1 the ancestral one (the
posterior q(x_s | x_t, x_0)). With the SDE's exact transition x_t | x_s ~ N(r·x_s, v·I)
(`sde.transition_coeffs`), c = η·(σ_s/σ_t)·√v. The step is affine in (x, s, z):
    x_s = (a_s/a_t)·x + σ_t·(σ_t·a_s/a_t − √(σ_s² − c²))·s(x, t) + c·z,
so it runs on the predictors' `affine_step`, with per-step coefficients in float64.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from samplers.common import CountedScore, ScoreFn, check_callback, finish_run, prior_sample
from samplers.solvers.predictors import AffineSteps, affine_step
from samplers.budget import one_per_step
from samplers.options import DENOISE, EPS, RHO, number, schedule, steps
from samplers.registry import SampleResult, register_sampler
from samplers.schedules import TIME_SCHEDULES, Times, resolve_times
from sde_lib import SDE

DEFAULT_NUM_STEPS = 50


def ddim_coefficients(sde: SDE, times: torch.Tensor, eta: float) -> AffineSteps:
    """Per-step (A, B, C) of x ← A·x + B·s(x, t_i) + C·z on `times` `[K + 1]` (float64 `[K]`)."""
    t, s = times[:-1], times[1:]
    mean_t, std_t = sde.marginal_coeffs(t)
    mean_s, std_s = sde.marginal_coeffs(s)
    _, transition_std = sde.transition_coeffs(s, t)                   # √v, v = σ_t² − r²σ_s²
    noise = eta * std_s / std_t * transition_std                       # c (eq. 16)
    direction = torch.sqrt((std_s ** 2 - noise ** 2).clamp(min=0))     # √(σ_s² − c²)
    ratio = mean_s / mean_t
    return AffineSteps(ratio, std_t * (std_t * ratio - direction), noise)


OPTIONS = dict(eta=number("float", 0.0, "0: deterministic DDIM, 1: ancestral", 0, 1),
               schedule=schedule("logsnr", TIME_SCHEDULES), rho=RHO, eps=EPS,
               num_steps=steps(DEFAULT_NUM_STEPS), denoise=DENOISE)


@register_sampler("ddim", OPTIONS, cost=one_per_step)
def ddim_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                 generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32, eta: float = 0.0,
                 schedule: Times = "logsnr", rho: float = 7.0, eps: float = 1e-3,
                 num_steps: Optional[int] = None, denoise: bool = True,
                 x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
    """DDIM sampling (Song et al. 2021a, eq. 12): `shape` `[B, ...]` samples of p_eps.

    With `denoise`, samples of p_0.

    Args:
        eta: η ∈ [0, 1]; 0 draws no noise after the prior sample (deterministic given x_T).
        schedule: a name in `samplers.schedules.TIME_SCHEDULES` (default "logsnr", measured
            best on VP, sub-VP and VE: benchmarks/peers.py) or explicit decreasing times;
            rho: ρ of the "edm" schedule.
        eps: the last time; num_steps: steps from T to eps (default 50).
        denoise: end with Tweedie's E[x_0 | x_eps] (DDIM's last x̂_0; one more evaluation).
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` at every grid time (denoised: E[x_0 | x_t],
            `samplers.registry.with_denoised`).
    NFE = num_steps + [denoise].
    """
    eta = float(eta)
    check_callback(callback)
    times = resolve_times(sde, schedule, num_steps, eps, DEFAULT_NUM_STEPS, rho)
    steps = ddim_coefficients(sde, times, eta).as_floats()
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    t_x = times.to(device=x.device, dtype=x.dtype)
    for i, coeffs in enumerate(steps):
        if callback is not None:
            callback(i, times[i].to(x.device).expand(x.shape[0]), x, None)
        # DDIM step t_i -> t_{i+1}: x̂_0 and ε̂ from one score evaluation.
        x = affine_step(score_fn, x, t_x[i].expand(x.shape[0]), coeffs, generator)
    return finish_run(score_fn, sde, x, times, denoise, callback, len(steps))
