"""Improved DDPM on the embedded digits (Nichol & Dhariwal 2021's settings, scaled down).

Cosine schedule, learned variances (the network outputs ε and v), the hybrid loss
L_simple + 0.001·L_vlb; ancestral sampling with the learned variances; `--mode eval` reports
the variational bound beside the probability-flow bits/dim.
"""
from configs.ddpm_digits import get_config as ddpm_digits_config


def get_config():
    config = ddpm_digits_config()
    config.sde.schedule = "cosine"
    config.model.learn_variance = True
    config.training.loss = "hybrid"
    config.sampling.variance = "learned"
    return config
