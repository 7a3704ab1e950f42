"""Generating samples with the configured sampler and writing them (`.npz` + PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

import samplers
from evaluation.images import save_image_grid, save_scatter_png
from training.distributed import DistInfo, all_gather_objects
from training.pipeline import to_uint8_images
from training.setup import data_shape


def sample_generators(seed: int, indices: range, device) -> list:
    """One generator per sample, seeded by (seed, sample index): sample i always gets the same
    noise, whatever the batch size or the number of processes."""
    return [torch.Generator(device).manual_seed(seed * 1_000_003 + i) for i in indices]


@torch.no_grad()
def generate_samples(config, model, sde, num_samples: int, device, seed: int = 0,
                     progress: bool = False, dist_info: Optional[DistInfo] = None) -> torch.Tensor:
    """`[num_samples, ...]` samples in the model's data space, in batches of `eval.batch_size`.

    Under torchrun each rank draws a contiguous block of the sample indices and rank 0
    gathers them all (other ranks return an empty tensor).
    """
    info = dist_info or DistInfo(device=torch.device(device))
    model.eval()
    sampler = samplers.build_sampler(config.sampling)
    per_rank = -(-num_samples // info.world_size)
    mine = range(info.rank * per_rank, min(num_samples, (info.rank + 1) * per_rank))
    chunks = []
    starts = range(mine.start, mine.stop, config.eval.batch_size)
    for start in tqdm(starts, desc="sample", disable=not (progress and info.is_main)):
        indices = range(start, min(start + config.eval.batch_size, mine.stop))
        result = sampler(model, sde, (len(indices),) + data_shape(config),
                         generator=sample_generators(seed, indices, device), device=device)
        chunks.append(result.x.float().cpu())
    local = torch.cat(chunks) if chunks else torch.empty((0,) + data_shape(config))
    gathered = all_gather_objects(info, local)
    return torch.cat(gathered) if info.is_main else local[:0]


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
