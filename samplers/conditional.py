"""Inpainting and colorization: the conditional PC samplers of Song et al. 2021, App. I.

Given known entries x_k = c (mask 1) the unknown ones are sampled by *replacement*: before every
score evaluation at time t (corrector and predictor), the known entries of the state are replaced
by a fresh draw of the forward kernel, a(t)·c + σ(t)·z, and the run ends with them set to c.

This is exact when p_0 factorizes between known and unknown entries (the score of the unknown
ones then ignores the known ones). Otherwise it approximates ∇ log p_t(x_u | x_k,0 = c) by
∇_u log p_t(x_u, x_k,t) at an x_k,t drawn afresh, independently of the path of x_u, and is
biased. For two 2-D modes (tests/test_conditional.py), given an x₁ that selects one mode (weight
1 − 3e-7), 17% of the samples end in the other one without a corrector (35% along the
probability flow; 0.1% with the Langevin corrector, which where both modes have weight ½ gives
them about 0.65 / 0.35). Any predictor and corrector of `PREDICTORS` / `CORRECTORS` run this way.

Colorization is inpainting in decoupled colour coordinates y = M·x (per pixel), M orthogonal with
first row (1, 1, 1)/√3: y_0 = √3·gray is known, y_1, y_2 are not. The forward kernels are
isotropic, so p_t(y) = p_t(Mᵀy) and the score transforms the same way, s_y = M·s_x(Mᵀy).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from samplers.common import (CountedScore, Generator, ScoreFn, check_eps, check_num_steps,
                             check_positive, check_int, prior_sample, sample_noise,
                             select_rows, time_grid, tweedie_denoise)
from samplers.correctors import CORRECTORS
from samplers.pc import check_pc_options
from samplers.predictors import PREDICTORS, affine_step
from samplers.registry import SampleResult
from sde_lib import SDE

# Rows: the gray axis (1, 1, 1)/√3 and two orthonormal chroma axes; M·Mᵀ = I.
COLOR_DECOUPLE = torch.tensor([[1 / math.sqrt(3)] * 3,
                               [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
                               [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)]],
                              dtype=torch.float64)


def check_mask(mask: torch.Tensor, x_known: torch.Tensor) -> torch.Tensor:
    """`mask` broadcastable to `x_known` `[B, ...]`, values in {0, 1}: as a bool tensor."""
    if not isinstance(x_known, torch.Tensor) or x_known.ndim < 2 \
            or not x_known.is_floating_point():
        raise ValueError(f"x_known must be a floating tensor [B, ...], got "
                         f"{getattr(x_known, 'shape', type(x_known))}")
    mask = torch.as_tensor(mask, device=x_known.device)
    try:
        broadcast = torch.broadcast_shapes(mask.shape, x_known.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != x_known.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to x_known "
                         f"{tuple(x_known.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 (unknown) and 1 (known)")
    return mask.bool()


class Replacement:
    """Known entries re-noised to time t: x ← where(mask, a(t)·c + σ(t)·z, x)."""

    def __init__(self, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, generator: Generator):
        self.sde, self.x_known, self.mask, self.generator = sde, x_known, mask, generator

    def __call__(self, x: torch.Tensor, mean_coeff: float, std: float) -> torch.Tensor:
        noise = sample_noise(x, self.generator)          # [B, ...]: per-sample generators work
        known = noise.mul_(std).add_(self.x_known, alpha=mean_coeff)
        return torch.where(self.mask, known, x)


def replacement_pc(score_fn: ScoreFn, sde: SDE, replace: Replacement, times: torch.Tensor,
                   predictor: str, corrector: str, snr: float, n_steps: int,
                   probability_flow: bool, denoise: bool) -> SampleResult:
    """The PC loop of `samplers.pc` with the known entries replaced before every evaluation."""
    score_fn = CountedScore(score_fn)
    steps = PREDICTORS[predictor](sde, times, probability_flow)
    steps = steps.as_floats() if steps is not None else None
    corrector = CORRECTORS[corrector]
    scales = corrector.scale(sde, times[:-1], snr).tolist() if corrector is not None else None
    mean_coeffs, stds = (c.tolist() for c in sde.marginal_coeffs(times))
    x_known = replace.x_known
    x = prior_sample(sde, x_known.shape, replace.generator, x_known.device, x_known.dtype)
    t_x = times.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])  # [K + 1, B]
    for i in range(len(times) - 1):
        if corrector is not None:
            # Corrector: Langevin steps towards p_t, known entries at time t.
            x = replace(x, mean_coeffs[i], stds[i])
            x = corrector.step(score_fn, x, t_x[i], scales[i], n_steps, replace.generator)
        if steps is not None:
            # Predictor: t_i -> t_{i+1}, known entries at time t_i.
            x = replace(x, mean_coeffs[i], stds[i])
            x = affine_step(score_fn, x, t_x[i], steps[i], replace.generator)
    if denoise:
        x = replace(x, mean_coeffs[-1], stds[-1])
        x = tweedie_denoise(score_fn, sde, x, times[-1:].to(x.device).expand(x.shape[0]))
    return SampleResult(torch.where(replace.mask, x_known, x), score_fn.nfe)


def inpaint(score_fn: ScoreFn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *,
            predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: float = 0.16,
            n_steps: int = 1, probability_flow: bool = False, eps: float = 1e-3,
            num_steps: Optional[int] = None, denoise: bool = True, generator: Generator = None,
            dtype: Optional[torch.dtype] = None) -> SampleResult:
    """Sample x `[B, ...]` given its known entries (Song et al. 2021, App. I, replacement).

    Args:
        x_known: `[B, ...]`; only its entries where `mask` is 1 are used.
        mask: 1 where known, 0 where to be generated; broadcastable to `x_known`.
        predictor, corrector, snr, n_steps, probability_flow, eps, num_steps, denoise: as for
            `samplers.pc.pc_sampler` (NFE as there).
        generator: None, a torch.Generator, or a list of B per-sample generators.
        dtype: of the computation (default x_known's).
    Returns SampleResult(x, nfe): x with x[mask] = x_known[mask] exactly, the rest of p_eps
    (of p_0 with `denoise`) given them, up to the replacement's bias (module docstring).
    """
    mask = check_mask(mask, x_known)
    check_pc_options(predictor, corrector, probability_flow)
    snr, n_steps = check_positive("snr", snr), check_int("n_steps", n_steps)
    eps, num_steps = check_eps(sde, eps), check_num_steps(sde, num_steps)
    x_known = x_known.to(dtype or x_known.dtype)
    replace = Replacement(sde, x_known, mask, generator)
    return replacement_pc(score_fn, sde, replace, time_grid(sde, num_steps, eps), predictor,
                          corrector, snr, n_steps, probability_flow, denoise)


def decouple(x: torch.Tensor) -> torch.Tensor:
    """Colour `[B, 3, ...]` -> decoupled y = M·x per pixel (channel 0: √3·gray)."""
    return torch.einsum("ij,bj...->bi...", COLOR_DECOUPLE.to(x), x)


def recouple(y: torch.Tensor) -> torch.Tensor:
    """Decoupled `[B, 3, ...]` -> colour x = Mᵀ·y (M orthogonal)."""
    return torch.einsum("ji,bj...->bi...", COLOR_DECOUPLE.to(y), y)


class DecoupledScore:
    """The score in decoupled coordinates, s_y(y, t) = M·s_x(Mᵀ·y, t); per-row conditioning
    of `score_fn` follows the rows (`select_rows`)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn

    def __call__(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return decouple(self.score_fn(recouple(y), t))

    def select_rows(self, index: Sequence[int]) -> "DecoupledScore":
        return DecoupledScore(select_rows(self.score_fn, index))


def colorize(score_fn: ScoreFn, sde: SDE, gray: torch.Tensor, **options) -> SampleResult:
    """Colour images `[B, 3, H, W]` whose channel mean is `gray` `[B, 1, H, W]` (App. I).

    Inpainting in the decoupled coordinates y = M·x with y_0 = √3·gray known; `options` as for
    `inpaint`. The result's channel mean equals `gray` up to rounding.
    """
    if not isinstance(gray, torch.Tensor) or gray.ndim < 2 or gray.shape[1] != 1:
        raise ValueError(f"gray must be a tensor [B, 1, H, W] (the channel mean), got "
                         f"{getattr(gray, 'shape', type(gray))}")
    dtype = options.get("dtype") or gray.dtype
    known = torch.zeros((gray.shape[0], 3) + tuple(gray.shape[2:]), dtype=dtype,
                        device=gray.device)
    known[:, :1] = math.sqrt(3) * gray
    mask = torch.zeros((1, 3) + (1,) * (gray.ndim - 2), dtype=torch.bool, device=gray.device)
    mask[:, 0] = True
    result = inpaint(DecoupledScore(score_fn), sde, known, mask, **options)
    return SampleResult(recouple(result.x), result.nfe)
