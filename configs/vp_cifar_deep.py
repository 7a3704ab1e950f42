"""DDPM++ cont. deep (VP) on CIFAR-10, Song et al. 2021."""
from configs.cifar import cifar_config


def get_config():
    return cifar_config("vpsde", "ddpmpp_deep_continuous")
