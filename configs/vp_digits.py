"""The embedded CPU default: a small DDPM++ on scikit-learn's 8×8 digits, VP SDE.

Sized to give recognisable digits on 2 CPU cores in about 5 minutes (4000 steps).
"""
import ml_collections

from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.data.dataset = "DIGITS"
    config.data.image_size = 8
    config.data.num_channels = 1
    config.data.centered = True
    config.data.random_flip = False
    config.data.uniform_dequantization = True

    config.model = ml_collections.ConfigDict(dict(
        name="ncsnpp", nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
        dropout=0.0, resamp_with_conv=True, conditional=True, fir=False, skip_rescale=True,
        resblock_type="biggan", progressive="none", progressive_input="none",
        progressive_combine="sum", embedding_type="positional", init_scale=0.0,
        scale_by_sigma=False, nonlinearity="swish", ema_rate=0.999))

    training = config.training
    training.batch_size = 64
    training.n_iters = 4000
    training.snapshot_freq = 2000
    training.snapshot_freq_for_preemption = 500
    training.log_freq = 50
    training.eval_freq = 500
    training.num_snapshot_samples = 64
    config.optim.lr = 1e-3
    config.optim.warmup = 200

    config.sampling.pc_num_steps = 500   # pc & co.; other methods keep their own defaults
    config.eval.batch_size = 300
    config.eval.num_samples = 256      # --mode sample's grid; eval's fd (beside its floor)
    config.eval.enable_sampling = True  # --mode eval: fd in a digits classifier's features
    return config
