"""Generating samples with the configured sampler and writing them (`.npz` + PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import samplers
from evaluation.images import save_image_grid, save_scatter_png
from training.pipeline import to_uint8_images
from training.setup import data_shape


@torch.no_grad()
def generate_samples(config, model, sde, num_samples: int, device, seed: int = 0,
                     progress: bool = False) -> torch.Tensor:
    """`[num_samples, ...]` samples in the model's data space, in batches of `eval.batch_size`.

    Batch j draws its noise from a generator seeded with (seed, j), so the samples do not
    depend on what ran before.
    """
    model.eval()
    sampler = samplers.build_sampler(config.sampling)
    batch_size = config.eval.batch_size
    chunks = []
    for j in tqdm(range(0, num_samples, batch_size), desc="sample", disable=not progress):
        n = min(batch_size, num_samples - j)
        generator = torch.Generator(device).manual_seed(seed * 1_000_003 + j // batch_size)
        result = sampler(model, sde, (n,) + data_shape(config), generator=generator, device=device)
        chunks.append(result.x.float().cpu())
    return torch.cat(chunks)


def save_samples(config, samples: torch.Tensor, folder) -> Path:
    """Write `samples.npz` (uint8 images or float points) and `samples.png` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if samples.ndim == 4:
        images = to_uint8_images(samples, centered=config.data.centered)
        np.savez_compressed(folder / "samples.npz", samples=images.permute(0, 2, 3, 1).numpy())
        return save_image_grid(images[:256], folder / "samples.png")
    np.savez_compressed(folder / "samples.npz", samples=samples.numpy())
    return save_scatter_png(samples, folder / "samples.png")
