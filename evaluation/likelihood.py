"""Bits/dim of a data split under the probability-flow ODE, resumable batch by batch.

Images: each uint8 batch is uniformly dequantized ((v + u)/256, `eval.bpd_repeats` draws of u)
and scaled as in training; `samplers.bits_per_dim` adds the bin-width offset. Vectors (toy
sets): the negative log-likelihood in nats per dim, and bits/dim = nats/ln 2 (no offset).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

import samplers
from training.checkpoint import load_checkpoint, save_checkpoint
from training.distributed import DistInfo, all_gather_objects
from training.pipeline import scale_images


def batches(num_examples: int, batch_size: int):
    """(start, stop) of each batch of `batch_size` over `num_examples` examples."""
    return [(i, min(i + batch_size, num_examples)) for i in range(0, num_examples, batch_size)]


def resume_progress(eval_dir, name: str, info: DistInfo, step: int, keys) -> tuple:
    """(path, done): this rank's progress file `eval_dir/<name>_progress_<rank>of<world>.pth`
    and the finished batches it holds for checkpoint `step` (else empty lists per key)."""
    path = Path(eval_dir) / f"{name}_progress_{info.rank}of{info.world_size}.pth"
    done = {"step": step, **{key: [] for key in keys}}
    if path.exists():
        stored = load_checkpoint(path)
        if stored.get("step") == step:
            done = stored
    return path, done


@torch.no_grad()
def evaluate_bpd(config, model, sde, dataset, eval_dir, device, step: int, progress: bool = True,
                 dist_info: Optional[DistInfo] = None) -> dict:
    """Per-example bits/dim over `eval.bpd_num_examples` (0: all) × `eval.bpd_repeats`.

    Finished batches are kept in `eval_dir/bpd_progress_<rank>of<world>.pth`, so an
    interrupted evaluation resumes at the first unfinished batch (for the same checkpoint
    step). Under torchrun rank r takes batches r, r + world, …; every rank solves its own ODEs
    (no collective inside the adaptive solver) and the results are gathered at the end.
    """
    info = dist_info or DistInfo(device=torch.device(device))
    model.eval()
    ev = config.eval
    count = len(dataset) if ev.bpd_num_examples == 0 else min(ev.bpd_num_examples, len(dataset))
    partial_path, done = resume_progress(eval_dir, "bpd", info, step, ("bpd", "nfe", "nll"))
    all_jobs = [(r, lo, hi) for r in range(ev.bpd_repeats) for lo, hi in batches(count, ev.batch_size)]
    jobs = all_jobs[info.rank::info.world_size]
    for job_index in tqdm(range(len(done["bpd"]), len(jobs)), desc="bpd",
                          disable=not (progress and info.is_main)):
        repeat, lo, hi = jobs[job_index]
        generator = torch.Generator().manual_seed(1_000_003 * repeat + lo)
        bpd, nll, nfe = _batch_bpd(config, model, sde, dataset.data[lo:hi], generator, device)
        done["bpd"].append(bpd)
        done["nll"].append(nll)
        done["nfe"].append(nfe)
        save_checkpoint(partial_path, done)
    gathered = all_gather_objects(info, {k: done[k] for k in ("bpd", "nll", "nfe")})
    merged = {k: [item for part in gathered for item in part[k]] for k in ("bpd", "nll", "nfe")}
    return _summary(merged, count)


def _batch_bpd(config, model, sde, raw, generator, device):
    if raw.dtype == torch.uint8:
        x = scale_images(raw, centered=config.data.centered, dequantize=True, generator=generator)
    else:
        x = raw.float()
    x = x.to(device)
    result = samplers.log_likelihood(
        model, sde, x, eps=config.eval.likelihood_eps, rtol=config.eval.rtol, atol=config.eval.atol,
        divergence=config.eval.divergence, generator=torch.Generator(device).manual_seed(
            int(torch.randint(2 ** 62, (1,), generator=generator))))
    logp = result.logp.double().cpu()
    num_dims = x[0].numel()
    if raw.dtype == torch.uint8:
        bpd = samplers.bits_per_dim(logp, num_dims, centered=config.data.centered)
    else:
        bpd = -logp / (num_dims * math.log(2))
    return bpd.double(), (-logp / num_dims).double(), int(result.nfe)


def _summary(done: dict, count: int) -> dict:
    bpd = torch.cat(done["bpd"])
    nll = torch.cat(done["nll"])
    finite = torch.isfinite(bpd)
    summary = {"bpd": bpd[finite].mean().item(),
               "bpd_sem": (bpd[finite].std() / math.sqrt(max(int(finite.sum()), 1))).item(),
               "nll_per_dim": nll[finite].mean().item(),
               "nfe_mean": sum(done["nfe"]) / len(done["nfe"]),
               "num_examples": count, "num_evaluations": int(bpd.numel()),
               "num_nonfinite": int((~finite).sum())}
    return summary
