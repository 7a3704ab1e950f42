"""Generating samples with a configured sampler and writing them (`.npz` + PNG).

Sample i always uses the same noise (a generator seeded by (seed, i)) and the same class label,
whatever the batch size or the number of processes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

import samplers
from data import to_uint8_images
from evaluation.images import save_image_grid, save_scatter_png
from models.score_model import PRECISIONS, ScoreModel, compiled, with_network
from run.distributed import DistInfo, all_gather_objects, single_process
from run.files import readable_npz, save_npz
from run.preemption import Preempted, stop_checked
from run.progress import Progress
from sde_lib import ScoreFn


@dataclass
class Guidance:
    """How each sample is conditioned: its class label and the guidance that uses it.

    `num_classes` 0 means unconditional. `class_label` is the class of every sample, or −1 for
    the classes in turn (sample i gets i mod K, so a grid with K columns has one class per
    column). A class-conditional model gets classifier-free guidance with `guidance_scale` γ
    (s_∅ + γ(s_y − s_∅); 1 is plain conditional sampling); a `classifier` adds
    `classifier_scale`·∇ₓ log p_t(y | x).
    """
    num_classes: int = 0
    class_label: int = -1
    guidance_scale: float = 1.0
    classifier: Optional[torch.nn.Module] = None
    classifier_scale: float = 0.0
    given_labels: Optional[torch.Tensor] = None   # sample i's class (tasks: the original's)

    def labels(self, indices: range) -> Optional[torch.Tensor]:
        """Class labels `[len(indices)]` of samples `indices`, or None (unconditional)."""
        if not self.num_classes:
            return None
        if self.given_labels is not None and self.class_label == -1:
            return self.given_labels[indices.start:indices.stop]
        index = torch.arange(indices.start, indices.stop)
        return index % self.num_classes if self.class_label == -1 else torch.full_like(
            index, self.class_label)

    def score_fn(self, model, indices: range) -> ScoreFn:
        """The score function the samplers get for samples `indices`: `model` itself, or the
        guided score of their labels."""
        labels = self.labels(indices)
        if labels is None:
            return model
        labels = labels.to(next(model.parameters()).device)
        score_fn = model
        if model.num_classes:
            score_fn = samplers.classifier_free_guidance(model, labels, self.guidance_scale,
                                                         model.null_label)
        if self.classifier is not None:
            score_fn = samplers.classifier_guidance(score_fn, self.classifier.log_prob, labels,
                                                    self.classifier_scale)
        return score_fn


def sampling_model(model: ScoreModel, precision: str = "fp32", compile: bool = False
                   ) -> ScoreModel:
    """The model the samplers call (`sampling.precision`, `sampling.compile`): a view of `model`
    whose network runs under bf16 / fp16 autocast (the sampler's state and the returned scores
    stay in their own dtype) and, with `compile`, through `torch.compile` (the first batch
    includes the compilation). `model` itself is unchanged."""
    view = compiled(model) if compile else with_network(model, model.net)
    view.autocast_dtype = PRECISIONS[precision]
    return view


def sample_generators(seed: int, indices: Sequence[int], device) -> list:
    """One generator per sample, seeded by (seed, sample index): sample i always gets the same
    noise, whatever the batch size or the number of processes."""
    return [torch.Generator(device).manual_seed(seed * 1_000_003 + i) for i in indices]


@torch.no_grad()
def generate_samples(sampler, model, sde, shape: Sequence[int], num_samples: int,
                     batch_size: int, seed: int, guidance: Optional[Guidance] = None,
                     progress: bool = False, dist_info: Optional[DistInfo] = None,
                     resume: Optional[Progress] = None, stop=None,
                     stats: Optional[dict] = None, desc: str = "sample") -> torch.Tensor:
    """`[num_samples, *shape]` samples in the model's data space, drawn by `sampler` (a
    `samplers.build_sampler` result) in batches of `batch_size`, conditioned by `guidance`.

    Under torchrun each rank draws a contiguous block of the sample indices and rank 0 gathers
    them all (other ranks return an empty tensor). With `resume` (a `run.progress.Progress`
    keyed by the run's settings) every finished batch is kept, so a rerun continues; `stop` (a
    `run.preemption.StopRequest`) ends the run with `Preempted` between batches, or within one
    sampler step of a batch (`run.preemption.StopChecked`; that batch is drawn again on
    resume, with the same noise). A `stats` dict receives `nfe`: the score evaluations of each
    batch (a list, this rank's). With `progress`,
    bars named `desc` count the batches and, after a few seconds, the steps of one.
    """
    device = next(model.parameters()).device
    info = dist_info or single_process(device)
    guidance = guidance or Guidance()
    model.eval()
    per_rank = -(-num_samples // info.world_size)
    mine = range(info.rank * per_rank, min(num_samples, (info.rank + 1) * per_rank))
    starts = range(mine.start, mine.stop, batch_size)
    chunks = list(resume.done["samples"]) if resume is not None else []
    nfe = list(resume.done["nfe"]) if resume is not None else []
    show = progress and info.is_main
    for start in tqdm(starts[len(chunks):], desc=desc, disable=not show):
        indices = range(start, min(start + batch_size, mine.stop))
        # The steps of a batch: a bar of their own once the batch has run for a few seconds.
        with tqdm(desc="steps of this batch", unit="step", leave=False, delay=5,
                  disable=not show) as steps:
            done = f" (after {start - mine.start} of {len(mine)} samples" + (
                ", which are kept)" if resume is not None else ")")
            score_fn = stop_checked(guidance.score_fn(model, indices), stop, done)
            result = sampler(score_fn, sde,
                             (len(indices),) + tuple(shape),
                             generator=sample_generators(seed, indices, device), device=device,
                             callback=(lambda *step: steps.update()) if show else None)
        chunks.append(result.x.float().cpu())
        nfe.append(int(result.nfe))
        check_finite_samples(chunks[-1])   # before anything is kept of a diverged batch
        if resume is not None:
            resume.append(samples=chunks[-1], nfe=nfe[-1])
        if stop is not None and stop.should_stop() and start + batch_size < mine.stop:
            raise Preempted(f"{stop.requested} after {start + len(indices) - mine.start} of "
                            f"{len(mine)} samples; rerun the same command to continue")
    if stats is not None:
        stats["nfe"] = nfe
    local = torch.cat(chunks) if chunks else torch.empty((0,) + tuple(shape))
    gathered = all_gather_objects(info, local)
    return torch.cat(gathered) if info.is_main else local[:0]


def check_finite_samples(samples: torch.Tensor) -> None:
    """Refuse to write samples holding NaN or ±inf (a broken model or sampler)."""
    bad = int((~torch.isfinite(samples.flatten(1))).any(1).sum())
    if bad:
        raise ValueError(f"{bad} of {len(samples)} samples are not finite (NaN or inf): the "
                         f"model's scores or the sampler diverged; nothing was written")


def save_samples(samples: torch.Tensor, folder, *, centered: bool, nrow: int = 0,
                 root: Optional[Path] = None, labels: Optional[torch.Tensor] = None,
                 settings: Optional[dict] = None) -> Path:
    """Write `samples.npz` (uint8 NHWC images or float points, with `labels` and the
    `settings` as JSON text where given) and `samples.png` (a grid of `nrow` columns; 0: square)
    into `folder`, atomically (with `root`: only inside that workdir); images are in the
    model's range (`centered`)."""
    check_finite_samples(samples)
    folder = Path(folder)
    arrays = {}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    if settings is not None:
        arrays["settings"] = np.array(json.dumps(settings, sort_keys=True))
    if samples.ndim == 4:
        images = to_uint8_images(samples, centered=centered)
        save_npz(folder / "samples.npz", {"samples": images.permute(0, 2, 3, 1).numpy(),
                                          **arrays}, root)
        return save_image_grid(images[:256], folder / "samples.png", nrow=nrow, root=root)
    save_npz(folder / "samples.npz", {"samples": samples.numpy(), **arrays}, root)
    return save_scatter_png(samples, folder / "samples.png", root=root)


def samples_complete(folder) -> bool:
    """Whether `folder` holds a readable `samples.npz` and its PNG."""
    folder = Path(folder)
    return (folder / "samples.png").is_file() and readable_npz(folder / "samples.npz")
