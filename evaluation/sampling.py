"""Generating samples with the configured sampler and writing them (`.npz` + PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

import samplers
from evaluation.images import save_image_grid, save_scatter_png
from training.datasets import NUM_CLASSES
from training.distributed import DistInfo, all_gather_objects
from training.pipeline import to_uint8_images
from training.setup import data_shape


def sample_labels(config, indices: range, num_classes: int) -> Optional[torch.Tensor]:
    """Class labels `[len(indices)]` of samples `indices`: `sampling.class_label`, or for -1 the
    classes in turn (sample i gets i mod K, so a grid with K columns has one class per column).
    None when nothing is class-conditional."""
    if not num_classes:
        return None
    label = config.sampling.get("class_label", -1)
    index = torch.arange(indices.start, indices.stop)
    return index % num_classes if label == -1 else torch.full_like(index, label)


def guided_score_fn(config, model, labels: Optional[torch.Tensor], classifier=None):
    """The score function the samplers get: `model` itself, or for class labels `[B]` the
    classifier-free guided score of a class-conditional model (`sampling.guidance_scale` γ:
    s_∅ + γ(s_y − s_∅); 1 is plain conditional sampling), plus classifier guidance
    γ_c·∇ₓ log p_t(y | x) when `classifier` is given (`sampling.classifier_scale` γ_c)."""
    if labels is None:
        return model
    labels = labels.to(next(model.parameters()).device)
    score_fn = model
    if model.num_classes:
        score_fn = samplers.classifier_free_guidance(
            model, labels, config.sampling.get("guidance_scale", 1.0), model.null_label)
    if classifier is not None:
        score_fn = samplers.classifier_guidance(score_fn, classifier.log_prob, labels,
                                                config.sampling.classifier_scale)
    return score_fn


def num_classes_of(config, model, classifier=None) -> int:
    """Classes to sample: the conditional model's, else the data set's when a classifier guides
    (0: unconditional)."""
    if model.num_classes:
        return model.num_classes
    return NUM_CLASSES.get(config.data.dataset, 0) if classifier is not None else 0


def sample_generators(seed: int, indices: range, device) -> list:
    """One generator per sample, seeded by (seed, sample index): sample i always gets the same
    noise, whatever the batch size or the number of processes."""
    return [torch.Generator(device).manual_seed(seed * 1_000_003 + i) for i in indices]


@torch.no_grad()
def generate_samples(config, model, sde, num_samples: int, device, seed: int = 0,
                     progress: bool = False, dist_info: Optional[DistInfo] = None,
                     classifier=None) -> torch.Tensor:
    """`[num_samples, ...]` samples in the model's data space, in batches of `eval.batch_size`.

    Class-conditional models (and classifier guidance with `classifier`) sample the classes of
    `sample_labels`, guided as `guided_score_fn` says. Under torchrun each rank draws a
    contiguous block of the sample indices and rank 0 gathers them all (other ranks return an
    empty tensor).
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
        labels = sample_labels(config, indices, num_classes_of(config, model, classifier))
        score_fn = guided_score_fn(config, model, labels, classifier)
        result = sampler(score_fn, sde, (len(indices),) + data_shape(config),
                         generator=sample_generators(seed, indices, device), device=device)
        chunks.append(result.x.float().cpu())
    local = torch.cat(chunks) if chunks else torch.empty((0,) + data_shape(config))
    gathered = all_gather_objects(info, local)
    return torch.cat(gathered) if info.is_main else local[:0]


def save_samples(config, samples: torch.Tensor, folder, nrow: int = 0) -> Path:
    """Write `samples.npz` (uint8 images or float points) and `samples.png` (a grid of `nrow`
    columns; 0: square) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if samples.ndim == 4:
        images = to_uint8_images(samples, centered=config.data.centered)
        np.savez_compressed(folder / "samples.npz", samples=images.permute(0, 2, 3, 1).numpy())
        return save_image_grid(images[:256], folder / "samples.png", nrow=nrow)
    np.savez_compressed(folder / "samples.npz", samples=samples.numpy())
    return save_scatter_png(samples, folder / "samples.png")
