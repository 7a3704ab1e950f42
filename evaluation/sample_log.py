"""A sample run in TensorBoard: its grid (or scatter plot) as the image `sample/<run folder>`
and its score evaluations and wall time as the scalars `sample/<run folder>/nfe` and
`.../wall_seconds`, all at the checkpoint's step, beside training's curves and snapshots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from run.tensorboard import SafeWriter


def log_sample_run(tensorboard_dir: Path, png: Path, nfe_total: int, seconds: float,
                   step: int) -> str:
    """Write the run whose picture is `png` (in its run folder); returns the image's tag."""
    tag = f"sample/{Path(png).parent.name}"
    with Image.open(png) as picture:
        image = np.asarray(picture.convert("RGB"))
    writer = SafeWriter(tensorboard_dir)
    try:
        writer.add_image(tag, image, step)
        writer.add_scalar(f"{tag}/nfe", float(nfe_total), step)
        writer.add_scalar(f"{tag}/wall_seconds", float(seconds), step)
    finally:
        writer.close()
    return tag
