"""RePaint (Lugmayr et al. 2022, Alg. 1): replacement with resampling jumps, any operator A.

Each reverse step t_i → t_{i+1} first replaces the row-space component of x by a fresh draw of
the forward kernel given A·x_0 = y (`samplers.conditioning.replacement.Replacement`), then takes a predictor
step. Every `jump_length` steps the state jumps back up `jump_length` steps through the exact
forward transitions x_{t} = r·x_s + v·z (`sde.transition_coeffs`), `jump_n_sample` − 1 times per
jump point (the paper's j and r; j = r = 10 there), so that the unknown part harmonizes with the
known one. It remains an approximation: its fixed point is not the conditional law in general,
and its bias is measured in `benchmarks/conditioning.py`. NFE = the reverse steps taken
(≈ num_steps·jump_n_sample), plus one for `denoise`.
"""
from __future__ import annotations

from typing import List

import torch

from samplers.common import CountedScore, ScoreFn, prior_sample, sample_noise, \
    tweedie_denoise
from samplers.solvers.predictors import affine_step
from samplers.registry import ConditionResult
from samplers.conditioning.replacement import Replacement
from sde_lib import SDE


def repaint_schedule(num_steps: int, jump_length: int, jump_n_sample: int) -> List[int]:
    """The visited grid indices, from 0 (t = T) to `num_steps` (t = eps): one index per move,
    +1 a reverse step, −1 a forward (re-noising) step."""
    path, i, jumps_left = [0], 0, {}
    while i < num_steps:
        i += 1
        path.append(i)
        if i % jump_length == 0 and i < num_steps:
            left = jumps_left.setdefault(i, jump_n_sample - 1)
            if left > 0:
                jumps_left[i] = left - 1
                path.extend(range(i - 1, i - jump_length - 1, -1))
                i -= jump_length
    return path


def repaint(score_fn: ScoreFn, sde: SDE, replace: Replacement, times: torch.Tensor, steps,
            jump_length: int, jump_n_sample: int, denoise: bool) -> ConditionResult:
    """RePaint on `times` `[N + 1]` with the predictor's per-step floats `steps`."""
    counted = CountedScore(score_fn)
    mean_coeffs, stds = (c.tolist() for c in sde.marginal_coeffs(times))
    ratios, noise = (c.tolist() for c in sde.transition_coeffs(times[1:], times[:-1]))
    y, generator = replace.y, replace.generator
    x = prior_sample(sde, replace.shape, generator, y.device, y.dtype)
    t_x = times.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])
    path = repaint_schedule(len(steps), jump_length, jump_n_sample)
    for i, j in zip(path[:-1], path[1:]):
        if j == i + 1:
            # Reverse step t_i -> t_{i+1}, the known component at time t_i.
            x = replace(x, mean_coeffs[i], stds[i])
            x = affine_step(counted, x, t_x[i], steps[i], generator)
        else:
            # Forward jump t_{j+1} -> t_j: x_t = r·x_s + v·z.
            x = sample_noise(x, generator).mul_(noise[j]).add_(x, alpha=ratios[j])
    if denoise:
        x = replace(x, mean_coeffs[-1], stds[-1])
        x = tweedie_denoise(counted, sde, x, times[-1:].to(x.device).expand(x.shape[0]))
    return ConditionResult(replace.finish(x), counted.nfe)
