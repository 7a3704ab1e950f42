"""One- and multistep consistency sampling (Song et al. 2023, Alg. 1).

For a consistency student (`models.consistency`), E[x_0 | x_t] from its score is the
consistency function f(x_t, t) (`samplers.common.data_prediction` recovers it). The sampler:

    x̂ ← f(x_T, T)                                            (one step)
    for τ in τ_1 > … > τ_{n−1}:                                 (each further step)
        z ~ N(0, I);  x_τ = a(τ)·(x̂ + √(σ̄(τ)² − σ̄(eps)²)·z);  x̂ ← f(x_τ, τ)

so `num_steps` = n counts the evaluations (NFE = n). The levels T = τ_0 > … > τ_{n−1} are the
first n of a time schedule of n intervals down to eps (default EDM's ρ-schedule, Karras et al.
2022, eq. 5), or explicit times τ_0 … τ_n (the last is eps). On any other score function this
is a denoise-and-renoise sampler; `main.py` refuses it for models that are not students.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import torch

from samplers.common import (CountedScore, ScoreFn, check_callback, prior_sample, sample_noise,
                             tweedie_denoise)
from samplers.options import EPS, RHO, number, schedule
from samplers.registry import SampleResult, register_sampler
from samplers.schedules import TIME_SCHEDULES, Times, resolve_times
from sde_lib import SDE

DEFAULT_NUM_STEPS = 1
MAX_NUM_STEPS = 8

OPTIONS = dict(
    schedule=schedule("edm", TIME_SCHEDULES), rho=RHO, eps=EPS,
    num_steps=dataclasses.replace(
        number("int", None, f"evaluations of the consistency function; default "
               f"{DEFAULT_NUM_STEPS}", 1, MAX_NUM_STEPS, optional=True),
        implied=DEFAULT_NUM_STEPS))


def _cost(options, num_steps: int) -> float:
    """One evaluation per step; more than 8 steps are not offered (a budget above 8 takes 8)."""
    return num_steps if num_steps <= MAX_NUM_STEPS else math.inf


@register_sampler("consistency", OPTIONS, cost=_cost)
def consistency_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                        generator=None, device=None, dtype: torch.dtype = torch.float32,
                        schedule: Times = "edm", rho: float = 7.0, eps: float = 1e-3,
                        num_steps: Optional[int] = None, x_T: Optional[torch.Tensor] = None,
                        callback=None) -> SampleResult:
    """Consistency sampling (Song et al. 2023, Alg. 1): `shape` `[B, ...]` samples in
    `num_steps` (1 … 8) evaluations; `eps` must be the student's smallest time.

    Args:
        schedule, rho: the levels' time schedule (a name, or n + 1 explicit decreasing times).
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` at every level (denoised: f(x, t)) and at eps.
    """
    check_callback(callback)
    times = resolve_times(sde, schedule, num_steps, eps, DEFAULT_NUM_STEPS, rho)
    if times.numel() - 1 > MAX_NUM_STEPS:
        raise ValueError(f"schedule: at most {MAX_NUM_STEPS} steps ({MAX_NUM_STEPS + 1} times), "
                         f"got {times.numel() - 1}")
    mean_coeff, std = sde.marginal_coeffs(times)
    sigma_bar = std / mean_coeff                                   # float64 [n + 1]
    noise_std = torch.sqrt((sigma_bar[:-1] ** 2 - sigma_bar[-1] ** 2).clamp(min=0))
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    denoised = None
    for i in range(times.numel() - 1):
        if i > 0:
            # Renoise the estimate to level τ_i: x_τ = a(τ)·(x̂ + √(σ̄(τ)² − σ̄_min²)·z).
            x = (denoised + sample_noise(denoised, generator) * noise_std[i].item()) \
                * mean_coeff[i].item()
        t = times[i:i + 1].to(device=x.device).expand(x.shape[0])
        denoised = tweedie_denoise(score_fn, sde, x, t)            # f(x_τ, τ)
        if callback is not None:
            callback(i, t, x, denoised)
    if callback is not None:     # the end, at eps: f(x, eps) = x̂ is the sample itself
        t = times[-1:].to(device=x.device).expand(x.shape[0])
        callback(times.numel() - 1, t, denoised * mean_coeff[-1].item(), denoised)
    return SampleResult(denoised, score_fn.nfe)
