"""EDM's unconditional CIFAR-10 model (Karras et al. 2022: DDPM++ with EDM's preconditioning,
loss and sampler; `train.py --arch=ddpmpp --precond=edm` of NVlabs/edm, FID 1.97 at 35 NFE).

Network: DDPM++ with 128 base channels, multipliers (2, 2, 2) at 32², 16², 8², 4 residual blocks
per level, attention at 16², dropout 0.13: 55,732,739 parameters, exactly EDM's SongUNet of that
configuration without the augmentation conditioning (55,733,891 with its 9-dim augment labels;
the paper's 55.7M). Training: 200 Mimg at batch 512 (390,625 steps),
Adam lr 1e-3 (β = 0.9, 0.999, ε = 1e-8) ramped up over 10 Mimg, no gradient clipping, EMA with
a half-life of 0.5 Mimg (decay 0.5^(512/500000) per step; EDM also ramps the half-life up early
on, which is not replicated). Loss: ln σ ~ N(−1.2, 1.2²), σ_data = 0.5, summed over pixels.
Sampling: deterministic Heun, 18 levels of the ρ = 7 schedule from σ_max = 80 to σ_min = 0.002,
35 evaluations (FID 1.97 in the paper). EDM's non-leaky augmentation (p = 0.12) is not
implemented; its data set has no x-flips either (its augmentation flips).
"""
import ml_collections

from configs.default import get_default_config

BATCH = 512


def get_config():
    config = get_default_config()
    sde = config.sde
    sde.name = "edmsde"
    sde.sigma_min, sde.sigma_max = 0.002, 80.0

    config.model = ml_collections.ConfigDict(dict(
        name="ncsnpp", nf=128, ch_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
        dropout=0.13, resamp_with_conv=True, conditional=True, fir=False, skip_rescale=True,
        resblock_type="biggan", progressive="none", progressive_input="none",
        progressive_combine="sum", embedding_type="positional", init_scale=0.0,
        scale_by_sigma=False, nonlinearity="swish", ema_rate=0.5 ** (BATCH / 500_000)))

    training = config.training
    training.batch_size = BATCH
    training.n_iters = 200_000_000 // BATCH
    training.continuous = True
    training.reduce_mean = False
    training.loss = "edm"
    training.parametrization = "edm"
    training.sigma_data = 0.5
    training.p_mean, training.p_std = -1.2, 1.2

    optim = config.optim
    optim.lr = 1e-3
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 10_000_000 // BATCH
    optim.grad_clip = -1.0           # EDM does not clip

    data = config.data
    data.centered = True
    data.random_flip = False

    sampling = config.sampling
    sampling.method = "heun"
    sampling.num_steps = 17          # 18 noise levels, 35 evaluations (EDM)
    sampling.eps = 0.002
    sampling.time_schedule = "edm"
    sampling.rho = 7.0
    sampling.s_churn = 0.0
    config.classifier.eps = 0.002
    config.classifier.eval_t = (0.1, 1.0, 3.0, 20.0)
    return config
