"""Inpainting and colorization: `samplers.condition` with a mask or the channel mean.

Both take `method`: "replacement" (Song et al. 2021, App. I; the default and the historical
behaviour), "smc", "repaint" or "dps" (`samplers.condition`).

Replacement: given known entries x_k = c (mask 1), before every score evaluation at time t
(corrector and predictor) the known entries of the state are replaced by a fresh draw of the
forward kernel, a(t)·c + σ(t)·z, and the run ends with them set to c (`samplers.conditioning.replacement`).
This is exact when p_0 factorizes between known and unknown entries (the score of the unknown
ones then ignores the known ones). Otherwise it approximates ∇ log p_t(x_u | x_k,0 = c) by
∇_u log p_t(x_u, x_k,t) at an x_k,t drawn afresh, independently of the path of x_u, and is
biased. For two 2-D modes (tests/test_conditional.py), given an x₁ that selects one mode (weight
1 − 3e-7), 17% of the samples end in the other one without a corrector (35% along the
probability flow; 0.1% with the Langevin corrector, which where both modes have weight ½ gives
them about 0.65 / 0.35). Any predictor and corrector of `PREDICTORS` / `CORRECTORS` run this way.
Sequential Monte Carlo (method "smc", `samplers.conditioning.smc`) removes this bias as its particles grow.

Colorization by replacement is inpainting in decoupled colour coordinates y = M·x (per pixel), M
orthogonal with first row (1, 1, 1)/√3: y_0 = √3·gray is known, y_1, y_2 are not. The forward
kernels are isotropic, so p_t(y) = p_t(Mᵀy) and the score transforms the same way,
s_y = M·s_x(Mᵀy). This is the replacement of `samplers.conditioning.replacement` for `ChannelMean` in other
coordinates (equal in law, not bit for bit); the other methods use `ChannelMean` directly.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from samplers.common import ScoreFn, select_rows
from samplers.conditioning.condition import condition
from samplers.conditioning.operators import ChannelMean, Mask
from samplers.registry import ConditionResult
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


def inpaint(score_fn: ScoreFn, sde: SDE, x_known: torch.Tensor, mask: torch.Tensor, *,
            method: str = "replacement", dtype: Optional[torch.dtype] = None,
            **options) -> ConditionResult:
    """Sample x `[B, ...]` given its known entries: `samplers.condition` with a `Mask`.

    Args:
        x_known: `[B, ...]`; only its entries where `mask` is 1 are used (the observation y).
        mask: 1 where known, 0 where to be generated; broadcastable to `x_known`.
        method: "replacement" (Song et al. 2021, App. I; the default, with its PC options
            `predictor`, `corrector`, `snr`, `n_steps`, `probability_flow` as for
            `samplers.solvers.pc.pc_sampler`), "smc" (`num_particles`, ...), "repaint" or "dps"
            (`samplers.conditioning.condition.METHOD_OPTIONS`).
        options: also `noise_std` (known entries observed with Gaussian noise; "smc", "dps"),
            `eps`, `num_steps`, `denoise`, `generator` (None, one, or B per-sample generators).
        dtype: of the computation (default x_known's).
    Returns ConditionResult(x, nfe, ...): x[mask] = x_known[mask] exactly (noiseless, except
    "dps"), the rest of p_eps (of p_0 with `denoise`) given them; replacement, RePaint and DPS
    up to their bias (module docstring), SMC exactly as its particles grow.
    """
    mask = check_mask(mask, x_known)
    x_known = x_known.to(dtype or x_known.dtype)
    return condition(score_fn, sde, x_known, Mask(mask), method=method, **options)


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


def colorize(score_fn: ScoreFn, sde: SDE, gray: torch.Tensor, *, method: str = "replacement",
             **options) -> ConditionResult:
    """Colour images `[B, 3, H, W]` whose channel mean is `gray` `[B, 1, H, W]` (App. I).

    "replacement" (the default) is inpainting in the decoupled coordinates y = M·x with
    y_0 = √3·gray known; the other methods condition on the `ChannelMean` observation
    (`samplers.condition`). `options` as for `inpaint`. The result's channel mean equals `gray`
    up to rounding (noiseless, except "dps").
    """
    if not isinstance(gray, torch.Tensor) or gray.ndim < 2 or gray.shape[1] != 1:
        raise ValueError(f"gray must be a tensor [B, 1, H, W] (the channel mean), got "
                         f"{getattr(gray, 'shape', type(gray))}")
    dtype = options.get("dtype") or gray.dtype
    if method != "replacement":
        return condition(score_fn, sde, gray.to(dtype), ChannelMean(3), method=method,
                         **{k: v for k, v in options.items() if k != "dtype"})
    known = torch.zeros((gray.shape[0], 3) + tuple(gray.shape[2:]), dtype=dtype,
                        device=gray.device)
    known[:, :1] = math.sqrt(3) * gray
    mask = torch.zeros((1, 3) + (1,) * (gray.ndim - 2), dtype=torch.bool, device=gray.device)
    mask[:, 0] = True
    result = inpaint(DecoupledScore(score_fn), sde, known, mask, **options)
    return ConditionResult(recouple(result.x), result.nfe)
