"""NCSN++ / DDPM++: the U-Net score network of Song et al. 2021 (App. H).

One class covers both: DDPM++ is the configuration with positional embeddings, no FIR
and no progressive paths; NCSN++ adds FIR resampling, Fourier embeddings of σ and an
input pyramid (`progressive_input="residual"`). DDPM (Ho et al. 2020) is a further
configuration, see `models.ddpm`.

Layout: conv_in → `down` levels (residual blocks, attention at `attn_resolutions`,
a downsampling step, an optional input-pyramid merge) → `mid` → `up` levels (blocks
over the concatenated skip features, attention, an optional output pyramid, an
upsampling step) → GroupNorm, act, conv_out. Input and output are `[B, C, H, W]`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from models.blocks import AttnBlock, Combine, Downsample, ResnetBlock, Upsample, residual_sum
from models.embeddings import TimeEmbedding, check_embedding_type, label_sigmas, sigma_table
from models.layers import conv3x3, get_act, group_norm, level_resolutions
from models.up_down import Resample

RESBLOCK_TYPES = ("biggan", "ddpm")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
PROGRESSIVE_COMBINE = ("sum", "cat")


def check_choice(field: str, value: str, allowed: Sequence[str]) -> str:
    """`value` lower-cased if it is one of `allowed`, else ValueError naming `field`."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"Unknown {field} {value!r}; expected one of {list(allowed)}")
    return value.lower()


class DownLevel(nn.Module):
    """One resolution of the encoder: `blocks[i]` then `attns[i]` (if any), then `downsample`."""

    def __init__(self, blocks: List[nn.Module], attns: List[nn.Module],
                 downsample: Optional[nn.Module], pyramid: Optional[nn.Module]):
        super().__init__()
        self.blocks, self.attns = nn.ModuleList(blocks), nn.ModuleList(attns)
        self.downsample, self.pyramid = downsample, pyramid


class UpLevel(nn.Module):
    """One resolution of the decoder: blocks, attention, output-pyramid layers, upsample."""

    def __init__(self, blocks: List[nn.Module], attn: Optional[nn.Module]):
        super().__init__()
        self.blocks, self.attn = nn.ModuleList(blocks), attn
        self.pyramid_norm: Optional[nn.Module] = None
        self.pyramid_conv: Optional[nn.Module] = None
        self.pyramid_up: Optional[nn.Module] = None
        self.upsample: Optional[nn.Module] = None


class _Layers:
    """Builds the blocks of one network with its shared settings."""

    def __init__(self, act, temb_dim, fir_taps, resblock_type, resamp_with_conv, dropout,
                 skip_rescale, init_scale, norm_groups):
        self.act, self.temb_dim, self.fir_taps = act, temb_dim, fir_taps
        self.resblock_type, self.resamp_with_conv = resblock_type, resamp_with_conv
        self.dropout, self.skip_rescale = dropout, skip_rescale
        self.init_scale, self.norm_groups = init_scale, norm_groups

    def res(self, in_ch: int, out_ch: Optional[int] = None,
            resample: Optional[str] = None) -> ResnetBlock:
        return ResnetBlock(in_ch, out_ch, act=self.act, temb_dim=self.temb_dim, resample=resample,
                           fir_kernel=self.fir_taps, dropout=self.dropout,
                           skip_rescale=self.skip_rescale, init_scale=self.init_scale,
                           norm_groups=self.norm_groups,
                           shortcut_init_scale=1.0 if self.resblock_type == "biggan" else 0.1)

    def attn(self, channels: int) -> AttnBlock:
        return AttnBlock(channels, skip_rescale=self.skip_rescale, init_scale=self.init_scale,
                         norm_groups=self.norm_groups)

    def resample(self, direction: str, channels: int) -> nn.Module:
        """BigGAN: a resampling residual block; DDPM: Upsample / Downsample."""
        if self.resblock_type == "biggan":
            return self.res(channels, resample=direction)
        cls = Upsample if direction == "up" else Downsample
        return cls(channels, with_conv=self.resamp_with_conv, fir_kernel=self.fir_taps)


class NCSNpp(nn.Module):
    """NCSN++ / DDPM++ network `(x [B, C, H, W], labels [B]) -> [B, C, H, W]`.

    Args (the reference configs' `model` fields, plus `image_size`, `num_channels`,
    `centered` from its `data` section):
        image_size: H = W of the training images; must be divisible by 2^(len(ch_mult) − 1).
        nf, ch_mult: channels nf·ch_mult[i] at resolution image_size / 2^i.
        num_res_blocks: residual blocks per resolution (num_res_blocks + 1 on the way up).
        attn_resolutions: resolutions (in pixels) with a self-attention block.
        resblock_type: "biggan" (blocks that resample themselves) or "ddpm" (separate
            Upsample / Downsample, with a 3×3 conv when `resamp_with_conv`).
        fir, fir_kernel: FIR filtering (taps of a separable filter) for every resampling.
        progressive: "none", "output_skip" (sum of upsampled per-resolution RGB outputs)
            or "residual" (a residual upsampling path); progressive_input: "none",
            "input_skip" or "residual", merged by `progressive_combine` ("sum" / "cat").
        embedding_type: "positional" (of the label) or "fourier" (of log label, `fourier_scale`).
        init_scale: scale of the last layer of each residual branch (0 → 1e-10).
        scale_by_sigma: divide the output by σ: the label itself for Fourier embeddings,
            else the σ of a label index into exp(linspace(log σ_max, log σ_min, num_scales)).
        centered: inputs are in [−1, 1]; else in [0, 1] and mapped to [−1, 1] first.
        norm_groups: GroupNorm groups; None gives min(C // 4, 32).
        num_classes: class-conditional network with this many classes (0: unconditional);
            `forward(x, labels, y)` takes class labels y `[B]`, num_classes being the null label.
        learn_variance: output 2·C channels: the noise prediction and, in the last C, the
            raw interpolation v of a learned reverse variance (Nichol & Dhariwal 2021).
    """

    def __init__(self, *, image_size: int, num_channels: int = 3, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.1,
                 resamp_with_conv: bool = True, conditional: bool = True, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
                 resblock_type: str = "biggan", progressive: str = "none",
                 progressive_input: str = "none", progressive_combine: str = "sum",
                 embedding_type: str = "positional", fourier_scale: float = 16.0,
                 init_scale: float = 0.0, scale_by_sigma: bool = False, centered: bool = True,
                 nonlinearity: str = "swish", sigma_min: float = 0.01, sigma_max: float = 50.0,
                 num_scales: int = 1000, norm_groups: Optional[int] = None,
                 num_classes: int = 0, learn_variance: bool = False):
        super().__init__()
        if learn_variance and scale_by_sigma:
            raise ValueError("learn_variance=True cannot be combined with scale_by_sigma=True "
                             "(learned variances belong to the VP noise parametrisation)")
        self.resblock_type = check_choice("resblock_type", resblock_type, RESBLOCK_TYPES)
        self.progressive = check_choice("progressive", progressive, PROGRESSIVE)
        self.progressive_input = check_choice("progressive_input", progressive_input,
                                              PROGRESSIVE_INPUT)
        self.combine = check_choice("progressive_combine", progressive_combine, PROGRESSIVE_COMBINE)
        self.embedding_type = check_embedding_type(embedding_type)
        self.resolutions = level_resolutions(image_size, ch_mult, attn_resolutions, dropout)
        self.num_channels, self.centered, self.skip_rescale = num_channels, centered, skip_rescale
        self.scale_by_sigma = scale_by_sigma
        self.num_classes, self.learn_variance = num_classes, learn_variance
        self.out_channels = num_channels * (2 if learn_variance else 1)
        self.act = get_act(nonlinearity)
        self.fir_taps = tuple(fir_kernel) if fir else None
        make = _Layers(self.act, 4 * nf if conditional else None, self.fir_taps, self.resblock_type,
                       resamp_with_conv, dropout, skip_rescale, init_scale, norm_groups)
        self.embed = TimeEmbedding(nf, self.act, self.embedding_type, fourier_scale, conditional,
                                   num_classes)
        self.conv_in = conv3x3(num_channels, nf)
        skip_ch, in_ch, pyramid_ch = self._build_down(make, nf, ch_mult, num_res_blocks,
                                                      attn_resolutions)
        self.mid = nn.ModuleList([make.res(in_ch), make.attn(in_ch), make.res(in_ch)])
        in_ch = self._build_up(make, nf, ch_mult, num_res_blocks, attn_resolutions, skip_ch,
                               in_ch, pyramid_ch, init_scale)
        self.pyramid_down = Resample("down", self.fir_taps)  # the input_skip / output_skip pyramids
        self.pyramid_upsample = Resample("up", self.fir_taps)
        self.out_norm = self.conv_out = None
        if self.progressive != "output_skip":
            self.out_norm = group_norm(in_ch, norm_groups)
            self.conv_out = conv3x3(in_ch, self.out_channels, init_scale=init_scale)
        needs_table = scale_by_sigma and self.embedding_type == "positional"
        self.register_buffer("sigmas", sigma_table(sigma_min, sigma_max, num_scales)
                             if needs_table else None, persistent=False)

    def _build_down(self, make: "_Layers", nf, ch_mult, num_res_blocks, attn_resolutions):
        """The encoder levels; returns the skip channels, and the channels out and of the input
        pyramid."""
        skip_ch, in_ch, pyramid_ch = [nf], nf, self.num_channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(make.res(in_ch, nf * mult))
                in_ch = nf * mult
                if self.resolutions[level] in attn_resolutions:
                    attns.append(make.attn(in_ch))
                skip_ch.append(in_ch)
            downsample = pyramid = None
            if level != len(ch_mult) - 1:
                downsample = make.resample("down", in_ch)
                if self.progressive_input == "input_skip":
                    pyramid = Combine(pyramid_ch, in_ch, self.combine)
                    in_ch *= 2 if self.combine == "cat" else 1
                elif self.progressive_input == "residual":
                    pyramid = Downsample(pyramid_ch, in_ch, with_conv=True,
                                         fir_kernel=self.fir_taps)
                    pyramid_ch = in_ch
                skip_ch.append(in_ch)
            self.down.append(DownLevel(blocks, attns, downsample, pyramid))
        return skip_ch, in_ch, pyramid_ch

    def _build_up(self, make: "_Layers", nf, ch_mult, num_res_blocks, attn_resolutions, skip_ch,
                  in_ch, pyramid_ch, init_scale) -> int:
        """The decoder levels (consuming `skip_ch`); returns the channels out."""
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(make.res(in_ch + skip_ch.pop(), nf * ch_mult[level]))
                in_ch = nf * ch_mult[level]
            with_attn = self.resolutions[level] in attn_resolutions
            up = UpLevel(blocks, make.attn(in_ch) if with_attn else None)
            if self.progressive == "output_skip":
                up.pyramid_norm = group_norm(in_ch)
                up.pyramid_conv = conv3x3(in_ch, self.out_channels, init_scale=init_scale)
            elif self.progressive == "residual" and level == len(ch_mult) - 1:
                up.pyramid_norm, up.pyramid_conv = group_norm(in_ch), conv3x3(in_ch, in_ch)
            elif self.progressive == "residual":
                up.pyramid_up = Upsample(pyramid_ch, in_ch, with_conv=True,
                                         fir_kernel=self.fir_taps)
            pyramid_ch = self.out_channels if self.progressive == "output_skip" else in_ch
            up.upsample = make.resample("up", in_ch) if level != 0 else None
            self.up.append(up)
        return in_ch

    def _check_input(self, x: torch.Tensor) -> None:
        factor = 2 ** (len(self.resolutions) - 1)
        if x.ndim != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f"expected x of shape [B, {self.num_channels}, H, W], "
                             f"got {tuple(x.shape)}")
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"image size {tuple(x.shape[2:])} must be divisible by {factor}")

    def _progressive_output(self, level: UpLevel, pyramid: Optional[torch.Tensor],
                            h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Update the output pyramid at one decoder level; returns (pyramid, h)."""
        if level.pyramid_up is not None:  # "residual" after the first level: h joins the pyramid
            pyramid = residual_sum(level.pyramid_up(pyramid), h, self.skip_rescale)
            return pyramid, pyramid
        out = level.pyramid_conv(self.act(level.pyramid_norm(h)))
        if self.progressive == "output_skip" and pyramid is not None:
            out = self.pyramid_upsample(pyramid) + out
        return out, h

    def _encode(self, x: torch.Tensor, temb: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """Encoder features, the last one being the input of the middle blocks."""
        pyramid = x
        hs = [self.conv_in(x)]
        for level in self.down:
            for i, block in enumerate(level.blocks):
                h = block(hs[-1], temb)
                hs.append(level.attns[i](h) if len(level.attns) else h)
            if level.downsample is None:
                continue
            h = level.downsample(hs[-1], temb)
            if self.progressive_input == "input_skip":
                pyramid = self.pyramid_down(pyramid)
                h = level.pyramid(pyramid, h)
            elif self.progressive_input == "residual":
                pyramid = h = residual_sum(level.pyramid(pyramid), h, self.skip_rescale)
            hs.append(h)
        return hs

    def forward(self, x: torch.Tensor, labels: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Network output `[B, out_channels, H, W]` for images `x` `[B, C, H, W]` at noise labels
        `[B]` (see `ScoreModel`) and class labels y `[B]` (class-conditional networks only)."""
        self._check_input(x)
        temb = self.embed(labels, y)
        if not self.centered:
            x = 2 * x - 1.0
        hs = self._encode(x, temb)
        h = self.mid[2](self.mid[1](self.mid[0](hs[-1], temb)), temb)
        pyramid = None
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            if level.attn is not None:
                h = level.attn(h)
            if self.progressive != "none":
                pyramid, h = self._progressive_output(level, pyramid, h)
            if level.upsample is not None:
                h = level.upsample(h, temb)
        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.conv_out(self.act(self.out_norm(h)))
        if self.scale_by_sigma:
            sigma = label_sigmas(labels, self.embedding_type, self.sigmas)
            h = h / sigma.to(h.dtype)[:, None, None, None]
        return h
