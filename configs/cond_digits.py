"""Class-conditional DDPM++ on the embedded digits, trained with label dropout so that one
network gives both p_t(x | y) and p_t(x): classifier-free guidance (Ho & Salimans 2022) with
`--config.sampling.guidance_scale`, and the class with `--config.sampling.class_label`
(-1: the ten classes in turn)."""
from configs.vp_digits import get_config as vp_digits_config


def get_config():
    config = vp_digits_config()
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    return config
