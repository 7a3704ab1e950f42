"""DDPM's variational bound in bits/dim over a data split, resumable batch by batch.

Images only: each uint8 batch is mapped to [−1, 1] without dequantization (the bound's decoder
integrates over each of the 256 bins itself, so the result is −log₂ P(x0) of the discrete
data, comparable with the dequantized probability-flow bits/dim). `eval.vlb_num_timesteps`
0 sums every term; K > 0 gives the unbiased K-term estimate (`samplers.vlb_bits_per_dim`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from tqdm import tqdm

import samplers
from evaluation.likelihood import batches, resume_progress
from training.checkpoint import save_checkpoint
from training.distributed import DistInfo, all_gather_objects
from training.pipeline import scale_images

TERMS = ("bpd", "prior", "decoder", "stderr")


def vlb_variance(config, model) -> str:
    """The reverse variance of the bound: the model's learned one, else `sampling.variance`
    (default β̃, the posterior's, which gives the tighter bound of the two fixed choices)."""
    if model.learn_variance:
        return "learned"
    return config.sampling.get("variance") or "posterior"


@torch.no_grad()
def evaluate_vlb(config, model, sde, dataset, eval_dir, device, step: int, progress: bool = True,
                 dist_info: Optional[DistInfo] = None) -> dict:
    """The bound over `eval.bpd_num_examples` (0: all) test examples → `vlb_*` metrics.

    Finished batches are kept in `eval_dir/vlb_progress_<rank>of<world>.pth` (resume for the
    same checkpoint step); under torchrun rank r takes batches r, r + world, ….
    """
    info = dist_info or DistInfo(device=torch.device(device))
    model.eval()
    ev = config.eval
    count = len(dataset) if ev.bpd_num_examples == 0 else min(ev.bpd_num_examples, len(dataset))
    partial_path, done = resume_progress(eval_dir, "vlb", info, step, TERMS)
    jobs = batches(count, ev.batch_size)[info.rank::info.world_size]
    variance, num_timesteps = vlb_variance(config, model), ev.get("vlb_num_timesteps", 0) or None
    for job in tqdm(range(len(done["bpd"]), len(jobs)), desc="vlb",
                    disable=not (progress and info.is_main)):
        lo, hi = jobs[job]
        x0 = scale_images(dataset.data[lo:hi], centered=True, dequantize=False).to(device)
        generator = torch.Generator(device).manual_seed(ev.get("seed", 0) * 1_000_003 + lo)
        result = samplers.vlb_bits_per_dim(model, sde, x0, variance=variance,
                                           num_timesteps=num_timesteps, generator=generator)
        for key in TERMS:
            done[key].append(getattr(result, key).double().cpu())
        save_checkpoint(partial_path, done)
    gathered = all_gather_objects(info, {k: done[k] for k in TERMS})
    merged = {k: torch.cat([item for part in gathered for item in part[k]]) for k in TERMS}
    bpd = merged["bpd"]
    summary = {"vlb_bpd": bpd.mean().item(),
               "vlb_bpd_sem": (bpd.std() / math.sqrt(max(len(bpd), 1))).item(),
               "vlb_prior_bpd": merged["prior"].mean().item(),
               "vlb_decoder_bpd": merged["decoder"].mean().item(),
               "vlb_variance": variance, "vlb_exact": num_timesteps is None,
               "vlb_num_examples": count}
    if num_timesteps is not None:   # the estimate's own error, on top of the data's spread
        summary["vlb_estimator_sem"] = (merged["stderr"].pow(2).sum().sqrt() / len(bpd)).item()
    return summary
