"""A residual MLP on the 2-D swiss roll, VP SDE."""
from configs.toy import toy_config


def get_config():
    return toy_config("swiss_roll")
