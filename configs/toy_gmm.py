"""A residual MLP on the three-component Gaussian mixture (exact density known), VP SDE."""
from configs.toy import toy_config


def get_config():
    return toy_config("gaussian_mixture")
