"""Your own arrays: an .npz file with `x` `[N, dim]` (and optional integer labels `y`), a residual
MLP on the VP SDE. Images stored as uint8 `[N, H, W, C]` work too, with an image network (see
configs/image_folder.py's model section and set data.image_size / num_channels).

    python main.py --config configs/npz.py --workdir runs/arrays --mode train \\
        --config.data.path=/path/to/data.npz --config.data.dim=8
"""
from configs.toy import toy_config


def get_config():
    config = toy_config("npz")
    config.data.path = ""        # required: the .npz file
    config.data.dim = 2          # the length of one example
    config.eval.bpd_num_examples = 0
    return config
