"""Shared by the CIFAR-10 configs of Song et al. 2021 (App. H): batch 128, lr 2e-4, warm-up
5000, gradient clipping 1, 1.3M iterations, random flips."""
import ml_collections

from configs.default import get_default_config
from models.presets import get_preset

DATA_FIELDS = ("image_size", "num_channels", "centered")


def cifar_config(sde_name: str, preset: str) -> ml_collections.ConfigDict:
    config = get_default_config()
    config.sde.name = sde_name
    model = get_preset(preset)
    for field in DATA_FIELDS:  # the data section owns these
        model.pop(field)
    config.model = ml_collections.ConfigDict(model)
    config.data.centered = sde_name != "vesde"
    if sde_name == "vesde":
        config.sampling.predictor = "reverse_diffusion"
        config.sampling.corrector = "langevin"
        config.sampling.snr = 0.16
    config.eval.bpd_repeats = 5
    return config
