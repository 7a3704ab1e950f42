"""The replacement method for linear observations (Song et al. 2021, App. I), any operator A.

Given A·x_0 = y, the component of x_0 in A's row space is known, P·x_0 = A⁺y (P = A⁺A). Before
every score evaluation at time t (corrector and predictor), that component of the state is
replaced by a fresh draw of the forward kernel, P·(a(t)·A⁺y + σ(t)·z), and the run ends on
A·x = y. For a mask this replaces the known entries (`samplers.inpaint`); for the channel mean
the gray component. Since the kernels are isotropic, the row-space component of a(t)·x_0 + σ(t)·z
is exactly a(t)·A⁺y + σ(t)·P·z.

It is exact when p_0 factorizes between P·x and (I − P)·x and biased otherwise: it approximates
∇ log p_t(x | A·x_0 = y) by the unconditional score at a row-space component drawn afresh,
independently of the path of the rest (see `samplers.conditioning.tasks` for a measured example).
RePaint (`samplers.conditioning.repaint`) adds resampling jumps to the same replacement.
"""
from __future__ import annotations

import torch

from samplers.common import (CountedScore, Generator, ScoreFn, prior_sample, sample_noise,
                             tweedie_denoise)
from samplers.solvers.correctors import CORRECTORS
from samplers.conditioning.operators import LinearOperator
from samplers.solvers.pc import pc_loop
from samplers.solvers.predictors import PREDICTORS
from samplers.registry import SampleResult
from sde_lib import SDE


class Replacement:
    """x ← x − P·x + P·(a(t)·A⁺y + σ(t)·z): the row-space component re-noised to time t."""

    def __init__(self, operator: LinearOperator, y: torch.Tensor, x_shape, generator: Generator):
        self.operator, self.y, self.generator = operator, y, generator
        self.known = operator.pinv(y)                     # A⁺y, shaped like x
        self.shape = (y.shape[0],) + tuple(x_shape)

    def __call__(self, x: torch.Tensor, mean_coeff: float, std: float) -> torch.Tensor:
        noise = sample_noise(x, self.generator)          # [B, ...]: per-sample generators work
        known = noise.mul_(std).add_(self.known, alpha=mean_coeff)
        return self.operator.replace_row_space(x, known)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The end point: A·x = y exactly (for a mask: the known entries set)."""
        return self.operator.project_onto(x, self.y)


def replacement_pc(score_fn: ScoreFn, sde: SDE, replace: Replacement, times: torch.Tensor,
                   predictor: str, corrector: str, snr: float, n_steps: int,
                   probability_flow: bool, denoise: bool) -> SampleResult:
    """The PC loop of `samplers.solvers.pc` with the row-space component replaced before every
    evaluation. NFE = num_steps·([predictor] + n_steps·[corrector]) + [denoise]."""
    score_fn = CountedScore(score_fn)
    steps = PREDICTORS[predictor](sde, times, probability_flow)
    steps = steps.as_floats() if steps is not None else None
    corrector = CORRECTORS[corrector]
    scales = corrector.scale(sde, times[:-1], snr).tolist() if corrector is not None else None
    mean_coeffs, stds = (c.tolist() for c in sde.marginal_coeffs(times))
    y = replace.y
    x = prior_sample(sde, replace.shape, replace.generator, y.device, y.dtype)
    # The PC loop, the known component re-noised to time t_i before every evaluation.
    x = pc_loop(score_fn, x, times, steps, corrector, scales, n_steps, replace.generator,
                before=lambda state, i: replace(state, mean_coeffs[i], stds[i]))
    if denoise:
        x = replace(x, mean_coeffs[-1], stds[-1])
        x = tweedie_denoise(score_fn, sde, x, times[-1:].to(x.device).expand(x.shape[0]))
    return SampleResult(replace.finish(x), score_fn.nfe)
