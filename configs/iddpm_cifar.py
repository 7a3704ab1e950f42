"""Improved DDPM on CIFAR-10 (Nichol & Dhariwal 2021, L_hybrid): cosine schedule with T = 4000,
learned variances Σ_θ = exp(v·log β + (1 − v)·log β̃), L_simple + 0.001·L_vlb, dropout 0.3,
lr 1e-4, batch 128, 500k steps, a DDPM U-Net with 3 blocks per resolution and attention at
16×16 and 8×8. Time steps are drawn uniformly as in the paper's L_hybrid runs; set
`training.timestep_sampling=loss_second_moment` for the importance sampling it uses with L_vlb.
"""
from configs.cifar import cifar_config


def get_config():
    config = cifar_config("vpsde", "ddpm")
    config.sde.schedule = "cosine"
    config.sde.num_scales = 4000
    model = config.model
    model.num_res_blocks = 3
    model.attn_resolutions = (16, 8)
    model.dropout = 0.3
    model.learn_variance = True
    training = config.training
    training.continuous = False
    training.reduce_mean = True
    training.loss = "hybrid"
    training.vlb_weight = 0.001
    training.n_iters = 500_001
    config.optim.lr = 1e-4
    config.sampling.method = "ancestral"
    config.sampling.variance = "learned"
    config.eval.enable_vlb = True
    return config
