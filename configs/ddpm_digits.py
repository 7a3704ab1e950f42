"""DDPM-style training on the embedded digits (Ho et al. 2020's settings, scaled down).

The discrete VP chain (β linear from 1e-4 to 0.02, N = 1000), L_simple (the discrete DSM
loss with ε-prediction, reduce_mean), ancestral sampling; `--mode eval` reports the
variational bound beside the probability-flow bits/dim. The network is `vp_digits`'s.
"""
from configs.vp_digits import get_config as vp_digits_config


def get_config():
    config = vp_digits_config()
    config.training.continuous = False
    config.training.reduce_mean = True
    config.sampling.method = "ancestral"
    config.sampling.num_steps = 0          # the chain's own 1000 steps
    config.sampling.variance = "beta"      # Ho et al.: σ² = β (β̃ gives similar samples)
    config.eval.enable_vlb = True
    return config
