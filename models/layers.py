"""Basic layers of the score networks: initialisers, convolutions, normalisation, activations.

The initialiser is DDPM's (Ho et al. 2020): variance scaling with fan-average and a uniform
distribution, biases at zero; an `init_scale` of 0 means "almost zero" (1e-10) so that a
layer starts as a near-identity residual branch yet still receives gradients.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]

ACTIVATIONS = {
    "swish": F.silu,
    "silu": F.silu,
    "relu": F.relu,
    "elu": F.elu,
    "lrelu": partial(F.leaky_relu, negative_slope=0.2),
}


def get_act(name: str) -> Activation:
    """The activation function named `name` (the reference configs' `nonlinearity` field)."""
    key = name.lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"Unknown nonlinearity {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]


def variance_scaling_(weight: torch.Tensor, scale: float = 1.0, in_axis: int = 1,
                      out_axis: int = 0) -> torch.Tensor:
    """Fill `weight` from U(−b, b), b = √(3·scale / fan_avg) (DDPM's `default_init`), in place.

    fan_in / fan_out are the sizes of `in_axis` / `out_axis` times the receptive field.
    A scale of 0 is replaced by 1e-10.
    """
    scale = scale if scale != 0 else 1e-10
    receptive = weight[0, 0].numel() if weight.ndim > 2 else 1
    fan_in = weight.shape[in_axis] * receptive
    fan_out = weight.shape[out_axis] * receptive
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def dense(in_features: int, out_features: int, init_scale: float = 1.0) -> nn.Linear:
    """`nn.Linear` with DDPM initialisation."""
    layer = nn.Linear(in_features, out_features)
    variance_scaling_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def conv3x3(in_ch: int, out_ch: int, *, stride: int = 1, padding: int = 1, bias: bool = True,
            init_scale: float = 1.0) -> nn.Conv2d:
    """3×3 convolution with DDPM initialisation."""
    conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=padding, bias=bias)
    variance_scaling_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    """1×1 convolution (a per-pixel linear map over channels) with DDPM initialisation."""
    conv = nn.Conv2d(in_ch, out_ch, 1)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def group_norm(channels: int, num_groups: Optional[int] = None) -> nn.GroupNorm:
    """GroupNorm with eps=1e-6; `num_groups=None` gives NCSN++'s min(channels // 4, 32)."""
    groups = min(channels // 4, 32) if num_groups is None else num_groups
    if groups < 1 or channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels cannot be split into {groups} groups")
    return nn.GroupNorm(groups, channels, eps=1e-6)


def level_resolutions(image_size: int, ch_mult: Sequence[int], attn_resolutions: Sequence[int],
                      dropout: float) -> List[int]:
    """The resolution image_size / 2^i of each level of a U-Net or encoder; ValueError naming the
    field for inconsistent sizes (levels that do not halve evenly, attention at a resolution no
    level has, dropout outside [0, 1))."""
    if len(ch_mult) < 1 or any(int(m) < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty tuple of integers >= 1, got {ch_mult!r}")
    factor = 2 ** (len(ch_mult) - 1)
    if image_size < factor or image_size % factor:
        raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult) - 1) = "
                         f"{factor} (ch_mult={tuple(ch_mult)})")
    resolutions = [image_size // 2 ** i for i in range(len(ch_mult))]
    unknown = sorted(set(attn_resolutions) - set(resolutions))
    if unknown:
        raise ValueError(f"attn_resolutions {unknown} are not among the network's resolutions "
                         f"{resolutions}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return resolutions
