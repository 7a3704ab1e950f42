"""Up- and down-sampling by 2 with FIR filters (StyleGAN2; Karras et al. 2020), in plain PyTorch.

All operations are depthwise (transposed) convolutions, so they run on any device and
memory format without a custom kernel. The filter is given as a 1-D tap list (used
separably as its outer product) normalised to unit sum, so a constant image stays constant.

Conventions (the signal-processing ones of `upfirdn2d`): upsampling inserts `factor − 1`
zeros after every pixel, pads, and convolves with `kernel · factor²`; downsampling pads,
convolves with `kernel` and keeps every `factor`-th pixel. Padding is chosen so that the
output is exactly `factor` times larger / smaller.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import variance_scaling_


def fir_kernel_2d(taps: Sequence[float]) -> torch.Tensor:
    """The 2-D filter `[k, k]` (float32) for separable 1-D taps, normalised to sum 1."""
    taps = [float(tap) for tap in taps]
    total = sum(taps)
    if not taps or total == 0:
        raise ValueError(f"fir_kernel must be a non-empty list of taps with non-zero sum, "
                         f"got {taps!r}")
    return torch.tensor([[a * b / total ** 2 for b in taps] for a in taps], dtype=torch.float32)


def _depthwise(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`[k, k]` -> `[C, 1, k, k]` weight for a depthwise convolution over `x`'s C channels."""
    return kernel.to(x.dtype)[None, None].expand(x.shape[1], 1, *kernel.shape)


def _fir(x: torch.Tensor, kernel: torch.Tensor, pad: Tuple[int, int],
         down: int = 1) -> torch.Tensor:
    """Pad by `pad` = (before, after) on both axes, convolve with `kernel`, keep every
    `down`-th pixel."""
    weight = _depthwise(kernel.flip(0, 1), x)  # convolution = correlation with the flipped filter
    if pad[0] == pad[1]:
        return F.conv2d(x, weight, stride=down, padding=pad[0], groups=x.shape[1])
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, weight, stride=down, groups=x.shape[1])


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR upsampling `[B, C, H, W] -> [B, C, H·f, W·f]` with the 2-D filter `kernel`.

    Zero insertion followed by the filter is one transposed convolution with stride f.
    """
    k = kernel.shape[0]
    p = k - factor
    pad0 = (p + 1) // 2 + factor - 1
    weight = _depthwise(kernel * factor ** 2, x)
    y = F.conv_transpose2d(x, weight, stride=factor, groups=x.shape[1])
    # y[j] is the filtered zero-inserted signal at j − (k − 1 − pad0); crop (or pad) to H·f.
    start = k - 1 - pad0
    h_out, w_out = x.shape[2] * factor, x.shape[3] * factor
    if start >= 0 and start + h_out <= y.shape[2] and start + w_out <= y.shape[3]:
        return y[:, :, start:start + h_out, start:start + w_out]
    return F.pad(y, (-start, w_out + start - y.shape[3], -start, h_out + start - y.shape[2]))


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR downsampling `[B, C, H, W] -> [B, C, H/f, W/f]` with the 2-D filter `kernel`."""
    p = kernel.shape[0] - factor
    return _fir(x, kernel, ((p + 1) // 2, p // 2), down=factor)


def upsample_conv_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor,
                     factor: int = 2) -> torch.Tensor:
    """Upsample by `factor` and apply the `[out, in, kh, kw]` convolution, fused (StyleGAN2).

    A strided transposed convolution with the (flipped) weight does the upsampling and the
    convolution at once; the FIR filter then smooths the result:
    `[B, in, H, W] -> [B, out, H·f, W·f]`.
    """
    kh = weight.shape[-1]
    p = (kernel.shape[0] - factor) - (kh - 1)
    w = weight.flip(2, 3).transpose(0, 1)  # conv weight -> conv_transpose weight [in, out, kh, kw]
    y = F.conv_transpose2d(x, w, stride=factor)
    return _fir(y, kernel * factor ** 2, ((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor,
                       factor: int = 2) -> torch.Tensor:
    """Apply the `[out, in, kh, kw]` convolution and downsample by `factor`, fused (StyleGAN2).

    The FIR filter smooths first; a strided convolution then does both steps at once.
    """
    p = (kernel.shape[0] - factor) + (weight.shape[-1] - 1)
    y = _fir(x, kernel, ((p + 1) // 2, p // 2))
    return F.conv2d(y, weight, stride=factor)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling `[B, C, H, W] -> [B, C, H·f, W·f]`."""
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling over f×f blocks `[B, C, H, W] -> [B, C, H/f, W/f]`."""
    return F.avg_pool2d(x, factor)


class Resample(nn.Module):
    """Parameter-free resampling by 2: FIR when `fir_kernel` is given, else nearest neighbour /
    average pooling.

    `direction` is "up" or "down". The FIR filter is a non-persistent buffer (not in state_dict).
    """

    def __init__(self, direction: str, fir_kernel: Sequence[float] | None = None):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"Unknown resampling direction {direction!r}; expected 'up' or 'down'")
        self.direction = direction
        self.fir = fir_kernel is not None
        if self.fir:
            self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.direction == "up":
            return upsample_2d(x, self.kernel) if self.fir else naive_upsample_2d(x)
        return downsample_2d(x, self.kernel) if self.fir else naive_downsample_2d(x)


class FIRConv2d(nn.Module):
    """k×k convolution fused with FIR up- or down-sampling by 2 (`up` / `down`), with bias.

    Parameters `weight` `[out, in, k, k]` and `bias` `[out]`.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, *, up: bool = False,
                 down: bool = False, fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if up == down:
            raise ValueError("FIRConv2d resamples: exactly one of up / down must be True")
        self.up = up
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        variance_scaling_(self.weight)
        self.register_buffer("kernel", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            y = upsample_conv_2d(x, self.weight, self.kernel)
        else:
            y = conv_downsample_2d(x, self.weight, self.kernel)
        return y + self.bias[None, :, None, None]
