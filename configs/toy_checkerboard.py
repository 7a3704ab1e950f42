"""A residual MLP on the 4×4 checkerboard, VP SDE."""
from configs.toy import toy_config


def get_config():
    return toy_config("checkerboard")
