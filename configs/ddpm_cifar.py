"""DDPM on CIFAR-10 (Ho et al. 2020): the 35.7M-parameter U-Net, linear β from 1e-4 to 0.02 over
T = 1000 steps (the VP SDE's discrete chain with β_min = 0.1, β_max = 20), L_simple, batch 128,
lr 2e-4 with 5000 warm-up steps, dropout 0.1, EMA 0.9999, 800k steps, ancestral sampling with
σ² = β; `--mode eval` reports the variational bound beside the probability-flow bits/dim.
"""
from configs.cifar import cifar_config


def get_config():
    config = cifar_config("vpsde", "ddpm")
    config.training.continuous = False
    config.training.reduce_mean = True
    config.training.n_iters = 800_001
    config.sampling.method = "ancestral"
    config.sampling.variance = "beta"
    config.eval.enable_vlb = True
    return config
