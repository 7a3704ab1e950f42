"""The networks of the paper's CIFAR-10 experiments, as `config.model` sections.

Song et al. 2021 (App. H) and Ho et al. 2020. Each entry is a plain dict in the schema that
`models.build_model` reads (the reference's `model` fields plus `image_size`,
`num_channels` and `centered`); configs copy or update them.
"""
from __future__ import annotations

import copy
from typing import Any, Dict

_NCSNPP_COMMON: Dict[str, Any] = dict(
    name="ncsnpp", image_size=32, num_channels=3, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4,
    attn_resolutions=(16,), dropout=0.1, resamp_with_conv=True, conditional=True,
    fir_kernel=(1, 3, 3, 1), skip_rescale=True, resblock_type="biggan", progressive="none",
    progressive_combine="sum", init_scale=0.0, fourier_scale=16.0, nonlinearity="swish",
    sigma_min=0.01, sigma_max=50.0, num_scales=1000,
)

# DDPM++ cont. (VP and sub-VP): positional embedding of 999·t, no FIR, no pyramid.
DDPMPP_CONTINUOUS = dict(_NCSNPP_COMMON, fir=False, progressive_input="none",
                         embedding_type="positional", scale_by_sigma=False, centered=True,
                         ema_rate=0.9999)
# NCSN++ cont. (VE): Fourier embedding of σ, FIR, residual input pyramid, output / σ.
NCSNPP_CONTINUOUS = dict(_NCSNPP_COMMON, fir=True, progressive_input="residual",
                         embedding_type="fourier", scale_by_sigma=True, centered=False,
                         ema_rate=0.999)
DDPMPP_DEEP_CONTINUOUS = dict(DDPMPP_CONTINUOUS, num_res_blocks=8)
NCSNPP_DEEP_CONTINUOUS = dict(NCSNPP_CONTINUOUS, num_res_blocks=8)
# DDPM (Ho et al. 2020), CIFAR-10.
DDPM_CIFAR10 = dict(name="ddpm", image_size=32, num_channels=3, nf=128, ch_mult=(1, 2, 2, 2),
                    num_res_blocks=2, attn_resolutions=(16,), dropout=0.1, resamp_with_conv=True,
                    conditional=True, scale_by_sigma=False, centered=True, nonlinearity="swish",
                    ema_rate=0.9999)

PRESETS: Dict[str, Dict[str, Any]] = {
    "ddpmpp_continuous": DDPMPP_CONTINUOUS,
    "ncsnpp_continuous": NCSNPP_CONTINUOUS,
    "ddpmpp_deep_continuous": DDPMPP_DEEP_CONTINUOUS,
    "ncsnpp_deep_continuous": NCSNPP_DEEP_CONTINUOUS,
    "ddpm": DDPM_CIFAR10,
}


def get_preset(name: str) -> Dict[str, Any]:
    """A fresh copy of the preset `name` (see `PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
