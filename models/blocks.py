"""Building blocks of the U-Nets: residual block, self-attention, resampling, pyramid combine.

Shapes: feature maps `[B, C, H, W]` (contiguous or channels-last), conditioning `temb` `[B, D]`.
`skip_rescale` divides every residual sum by √2 (Song et al. 2021, App. H.1), keeping the
variance of the activations constant through the network.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import Activation, conv1x1, conv3x3, dense, group_norm, variance_scaling_
from models.up_down import FIRConv2d, Resample

INV_SQRT2 = 1.0 / math.sqrt(2.0)


def residual_sum(x: torch.Tensor, h: torch.Tensor, skip_rescale: bool) -> torch.Tensor:
    """x + h, divided by √2 when `skip_rescale`."""
    out = x + h
    return out.mul_(INV_SQRT2) if skip_rescale else out  # in place on a fresh tensor: autograd-safe


class ResnetBlock(nn.Module):
    """Pre-activation residual block conditioned on `temb` (DDPM; BigGAN when it resamples).

    h = conv1(dropout(act(norm1(conv0(resample(act(norm0(x)))) + dense(act(temb))))));
    out = shortcut(resample(x)) + h, the shortcut being a 1×1 convolution when the channel
    count changes or the block resamples (`resample` = "up" / "down"; FIR if `fir_kernel`).
    `shortcut_init_scale`: 1 for NCSN++'s BigGAN block, 0.1 for the DDPM block.
    """

    def __init__(self, in_ch: int, out_ch: Optional[int] = None, *, act: Activation,
                 temb_dim: Optional[int] = None, resample: Optional[str] = None,
                 fir_kernel: Optional[Sequence[float]] = None, dropout: float = 0.1,
                 skip_rescale: bool = True, init_scale: float = 0.0,
                 shortcut_init_scale: float = 1.0, norm_groups: Optional[int] = None):
        super().__init__()
        out_ch = out_ch or in_ch
        self.act = act
        self.skip_rescale = skip_rescale
        self.norm0 = group_norm(in_ch, norm_groups)
        self.resample = Resample(resample, fir_kernel) if resample else None
        self.conv0 = conv3x3(in_ch, out_ch)
        self.temb_proj = dense(temb_dim, out_ch) if temb_dim is not None else None
        self.norm1 = group_norm(out_ch, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        needs_shortcut = in_ch != out_ch or resample is not None
        self.shortcut = conv1x1(in_ch, out_ch, shortcut_init_scale) if needs_shortcut else None

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.act(self.norm0(x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv0(h)
        if temb is not None and self.temb_proj is not None:
            h += self.temb_proj(self.act(temb))[:, :, None, None]  # conv backward keeps no output
        h = self.conv1(self.dropout(self.act(self.norm1(h))))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return residual_sum(x, h, self.skip_rescale)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W pixels, with a residual connection.

    out = x + proj(softmax(q kᵀ/√C) v), q, k, v = per-pixel linear maps of norm(x).
    `qkv` is one `Linear(C, 3C)` (fused q, k, v); `proj` starts at `init_scale`.
    """

    def __init__(self, channels: int, *, skip_rescale: bool = False, init_scale: float = 0.0,
                 norm_groups: Optional[int] = None):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        for chunk in self.qkv.weight.data.chunk(3, dim=0):  # q, k, v each initialised as C -> C
            variance_scaling_(chunk, 0.1)
        nn.init.zeros_(self.qkv.bias)
        self.proj = dense(channels, channels, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, 1, height * width, c)  # [B, 1, HW, C]
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        h = self.proj(F.scaled_dot_product_attention(q, k, v))
        # [B, HW, C] -> [B, C, H, W] (a view, with channels-last strides)
        h = h.reshape(b, height, width, c).permute(0, 3, 1, 2)
        return residual_sum(x, h, self.skip_rescale)


class Downsample(nn.Module):
    """Downsampling by 2, with a 3×3 convolution (`with_conv`) or without (pooling / FIR filter).

    Without FIR the convolution has stride 2 and 'SAME'-style padding (one row and column
    after the image); with FIR it is the fused FIR convolution. `forward` ignores `temb`.
    """

    def __init__(self, in_ch: int, out_ch: Optional[int] = None, *, with_conv: bool = True,
                 fir_kernel: Optional[Sequence[float]] = None):
        super().__init__()
        out_ch = out_ch or in_ch
        self.with_conv = with_conv
        self.fir = fir_kernel is not None
        if with_conv:
            self.conv = (FIRConv2d(in_ch, out_ch, down=True, fir_kernel=fir_kernel) if self.fir
                         else conv3x3(in_ch, out_ch, stride=2, padding=0))
        else:
            if out_ch != in_ch:
                raise ValueError("Downsample without a convolution cannot change the channel count")
            self.pool = Resample("down", fir_kernel)

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.with_conv:
            return self.pool(x)
        if not self.fir:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Upsampling by 2: nearest neighbour then a 3×3 convolution, or FIR (fused with the conv).

    `forward` ignores `temb`.
    """

    def __init__(self, in_ch: int, out_ch: Optional[int] = None, *, with_conv: bool = True,
                 fir_kernel: Optional[Sequence[float]] = None):
        super().__init__()
        out_ch = out_ch or in_ch
        self.with_conv = with_conv
        self.fir = fir_kernel is not None
        if with_conv:
            self.conv = (FIRConv2d(in_ch, out_ch, up=True, fir_kernel=fir_kernel) if self.fir
                         else conv3x3(in_ch, out_ch))
        elif out_ch != in_ch:
            raise ValueError("Upsample without a convolution cannot change the channel count")
        self.resample = None if (with_conv and self.fir) else Resample("up", fir_kernel)

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.with_conv:
            return self.resample(x)
        if self.fir:
            return self.conv(x)
        return self.conv(self.resample(x))


class Combine(nn.Module):
    """Merge the input pyramid `x` `[B, C_x, H, W]` into the features `y` `[B, C_y, H, W]`.

    A 1×1 convolution maps x to C_y channels, then "sum" adds and "cat" concatenates
    (giving 2·C_y channels).
    """

    METHODS = ("cat", "sum")

    def __init__(self, in_ch: int, out_ch: int, method: str = "cat"):
        super().__init__()
        if method not in self.METHODS:
            raise ValueError(f"Unknown progressive_combine {method!r}; expected one of "
                             f"{list(self.METHODS)}")
        self.method = method
        self.conv = conv1x1(in_ch, out_ch)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y
