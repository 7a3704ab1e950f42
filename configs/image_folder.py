"""Your own images: a folder or zip of PNG / JPEG files (class sub-folders give labels), a small
DDPM++ on the VP SDE. Set the data and, if they differ, size and channels:

    python main.py --config configs/image_folder.py --workdir runs/mine --mode train \\
        --config.data.path=/path/to/images --config.data.image_size=32 --config.data.num_channels=3
"""
import ml_collections

from configs.default import get_default_config


def get_config():
    config = get_default_config()
    data = config.data
    data.dataset = "image_folder"
    data.path = ""               # required: the folder or zip
    data.image_size = 32
    data.num_channels = 3
    data.centered = True
    data.random_flip = True
    data.uniform_dequantization = True
    config.model = ml_collections.ConfigDict(dict(
        name="ncsnpp", nf=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,),
        dropout=0.1, resamp_with_conv=True, conditional=True, fir=False, skip_rescale=True,
        resblock_type="biggan", progressive="none", progressive_input="none",
        progressive_combine="sum", embedding_type="positional", init_scale=0.0,
        scale_by_sigma=False, nonlinearity="swish", ema_rate=0.999,
        num_classes=0))   # > 0: class-conditional on the class sub-folders
    training = config.training
    training.batch_size = 64
    training.n_iters = 20_000
    training.snapshot_freq = 5_000
    training.snapshot_freq_for_preemption = 1_000
    config.optim.lr = 2e-4
    config.optim.warmup = 1_000
    config.eval.batch_size = 64
    return config
