"""The DDPM U-Net of Ho et al. 2020 (their CIFAR-10 model: 35.7M parameters as published,
35,218,947 in the reference PyTorch port with nf=128, ch_mult=(1, 2, 2, 2), two blocks).

It is the NCSN++ U-Net with DDPM's choices fixed: positional embedding of the timestep,
"ddpm" residual blocks without rescaled skips, separate Up/Downsample layers, no FIR or
pyramids, and GroupNorm with 32 groups everywhere.
"""
from __future__ import annotations

from typing import Sequence

from models.ncsnpp import NCSNpp


class DDPM(NCSNpp):
    """DDPM network `(x [B, C, H, W], labels [B]) -> [B, C, H, W]`; labels are timesteps
    (0 … N−1, float or integer). Arguments as in `NCSNpp`; GroupNorm(32) requires every
    channel count (nf·ch_mult[i]) to be a multiple of 32.
    """

    def __init__(self, *, image_size: int, num_channels: int = 3, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.1,
                 resamp_with_conv: bool = True, conditional: bool = True,
                 scale_by_sigma: bool = False, centered: bool = True, nonlinearity: str = "swish",
                 sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = 1000,
                 num_classes: int = 0, learn_variance: bool = False):
        super().__init__(
            image_size=image_size, num_channels=num_channels, nf=nf, ch_mult=ch_mult,
            num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions, dropout=dropout,
            resamp_with_conv=resamp_with_conv, conditional=conditional, fir=False,
            skip_rescale=False, resblock_type="ddpm", progressive="none", progressive_input="none",
            embedding_type="positional", init_scale=0.0, scale_by_sigma=scale_by_sigma,
            centered=centered, nonlinearity=nonlinearity, sigma_min=sigma_min, sigma_max=sigma_max,
            num_scales=num_scales, norm_groups=32, num_classes=num_classes,
            learn_variance=learn_variance)
