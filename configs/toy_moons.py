"""A residual MLP on two moons, VP SDE."""
from configs.toy import toy_config


def get_config():
    return toy_config("moons")
