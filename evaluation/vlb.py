"""DDPM's variational bound in bits/dim over a data split, resumable batch by batch.

Images only: each uint8 batch is mapped to [−1, 1] without dequantization (the bound's decoder
integrates over each of the 256 bins itself, so the result is −log₂ P(x0) of the discrete
data, comparable with the dequantized probability-flow bits/dim). `num_timesteps` None sums
every term; K gives the unbiased K-term estimate (`samplers.vlb_bits_per_dim`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

import samplers
from data import Dataset, scale_images
from run.distributed import DistInfo, all_gather_objects, single_process
from run.preemption import Preempted
from run.progress import Progress, batches

TERMS = ("bpd", "prior", "decoder", "stderr")


@dataclass(frozen=True)
class VLBSettings:
    """What the bound evaluation runs: the split, its examples (0: the whole split), batch size,
    the reverse variance, the number of terms per example (None: all) and the seed of its
    draws."""
    split: str
    num_examples: int
    batch_size: int
    variance: str
    num_timesteps: Optional[int]
    seed: int

    @classmethod
    def from_config(cls, config, model) -> "VLBSettings":
        ev = config.eval
        return cls(split=ev.bpd_dataset, num_examples=ev.bpd_num_examples,
                   batch_size=ev.batch_size,
                   variance=vlb_variance(model, config.sampling.get("variance")),
                   num_timesteps=ev.get("vlb_num_timesteps", 0) or None, seed=ev.get("seed", 0))


def vlb_variance(model, sampling_variance: Optional[str]) -> str:
    """The reverse variance of the bound: the model's learned one, else `sampling_variance`
    (default β̃, the posterior's, which gives the tighter bound of the two fixed choices)."""
    if model.learn_variance:
        return "learned"
    return sampling_variance or "posterior"


@torch.no_grad()
def evaluate_vlb(model, sde, dataset: Dataset, settings: VLBSettings, done: Progress,
                 progress: bool = True, dist_info: Optional[DistInfo] = None, stop=None) -> dict:
    """The bound over `settings.num_examples` (0: all) examples → `vlb_*` metrics.

    Finished batches are kept in `done` (keyed by the checkpoint and the settings); `stop` ends
    the run between batches with `Preempted`. Under torchrun rank r takes batches r,
    r + world, ….
    """
    info = dist_info or single_process(next(model.parameters()).device)
    model.eval()
    count = len(dataset) if settings.num_examples == 0 else min(settings.num_examples,
                                                                 len(dataset))
    jobs = batches(count, settings.batch_size)[info.rank::info.world_size]
    for job in tqdm(range(len(done), len(jobs)), desc="vlb",
                    disable=not (progress and info.is_main)):
        lo, hi = jobs[job]
        x0 = scale_images(dataset.data[lo:hi], centered=True, dequantize=False).to(info.device)
        generator = torch.Generator(info.device).manual_seed(settings.seed * 1_000_003 + lo)
        result = samplers.vlb_bits_per_dim(model, sde, x0, variance=settings.variance,
                                           num_timesteps=settings.num_timesteps,
                                           generator=generator)
        done.append(**{key: getattr(result, key).double().cpu() for key in TERMS})
        if stop is not None and stop.should_stop() and job + 1 < len(jobs):
            raise Preempted(f"{stop.requested} after {job + 1} of {len(jobs)} bound batches; "
                            f"rerun the same command to continue")
    gathered = all_gather_objects(info, {k: done.done[k] for k in TERMS})
    merged = {k: torch.cat([item for part in gathered for item in part[k]]) for k in TERMS}
    bpd = merged["bpd"]
    summary = {"vlb_bpd": bpd.mean().item(),
               "vlb_bpd_sem": (bpd.std() / math.sqrt(max(len(bpd), 1))).item(),
               "vlb_prior_bpd": merged["prior"].mean().item(),
               "vlb_decoder_bpd": merged["decoder"].mean().item(),
               "vlb_variance": settings.variance, "vlb_exact": settings.num_timesteps is None,
               "vlb_num_examples": count}
    if settings.num_timesteps is not None:   # the estimate's own error, on top of the spread
        summary["vlb_estimator_sem"] = (merged["stderr"].pow(2).sum().sqrt() / len(bpd)).item()
    return summary
