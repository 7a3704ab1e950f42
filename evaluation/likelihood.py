"""Bits/dim of a data split under the probability-flow ODE, resumable batch by batch.

Images: each uint8 batch is uniformly dequantized ((v + u)/256, `repeats` draws of u) and
scaled as in training; `samplers.bits_per_dim` adds the bin-width offset. Vectors (toy sets):
the negative log-likelihood in nats per dim, and bits/dim = nats/ln 2 (no offset).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

import samplers
from data import Dataset, DataTransform
from run.distributed import DistInfo, all_gather_objects, single_process
from run.preemption import Preempted
from run.progress import Progress, batches

KEYS = ("bpd", "nfe", "nll")


@dataclass(frozen=True)
class BpdSettings:
    """What the bits/dim evaluation runs: the split, its examples (0: the whole split), batch
    size, dequantization draws per example, and the likelihood ODE's options."""
    split: str
    num_examples: int
    batch_size: int
    repeats: int
    eps: float
    rtol: float
    atol: float
    divergence: str

    @classmethod
    def from_config(cls, eval_config) -> "BpdSettings":
        return cls(split=eval_config.bpd_dataset, num_examples=eval_config.bpd_num_examples,
                   batch_size=eval_config.batch_size,
                   repeats=eval_config.bpd_repeats, eps=eval_config.likelihood_eps,
                   rtol=eval_config.rtol, atol=eval_config.atol,
                   divergence=eval_config.divergence)

    def count(self, dataset: Dataset) -> int:
        """The number of examples evaluated."""
        return len(dataset) if self.num_examples == 0 else min(self.num_examples, len(dataset))


@torch.no_grad()
def evaluate_bpd(model, sde, dataset: Dataset, transform: DataTransform, settings: BpdSettings,
                 done: Progress, progress: bool = True, dist_info: Optional[DistInfo] = None,
                 stop=None) -> dict:
    """Per-example bits/dim over `settings.count(dataset)` examples × `settings.repeats`.

    Finished batches are kept in `done` (this rank's `run.progress.Progress`, keyed by the
    checkpoint and the settings), so an interrupted evaluation resumes at the first unfinished
    batch; `stop` ends it between batches with `Preempted`. Under torchrun rank r takes batches
    r, r + world, …; every rank solves its own ODEs (no collective inside the adaptive solver)
    and the results are gathered at the end.
    """
    info = dist_info or single_process(next(model.parameters()).device)
    model.eval()
    count = settings.count(dataset)
    all_jobs = [(r, lo, hi) for r in range(settings.repeats)
                for lo, hi in batches(count, settings.batch_size)]
    jobs = all_jobs[info.rank::info.world_size]
    with ExampleProgress(model, sum(hi - lo for _, lo, hi in jobs),
                         sum(hi - lo for _, lo, hi in jobs[:len(done)]),
                         show=progress and info.is_main) as bar:
        for job_index in range(len(done), len(jobs)):
            repeat, lo, hi = jobs[job_index]
            generator = torch.Generator().manual_seed(1_000_003 * repeat + lo)
            bpd, nll, nfe = _batch_bpd(model, sde, dataset.data[lo:hi], transform, settings,
                                       generator, info.device)
            done.append(bpd=bpd, nll=nll, nfe=nfe)
            bar.batch_done(hi - lo)
            if stop is not None and stop.should_stop() and job_index + 1 < len(jobs):
                raise Preempted(f"{stop.requested} after {job_index + 1} of {len(jobs)} "
                                f"bits/dim batches; rerun the same command to continue")
    gathered = all_gather_objects(info, {k: done.done[k] for k in KEYS})
    merged = {k: [item for part in gathered for item in part[k]] for k in KEYS}
    return _summary(merged, count)


class ExampleProgress:
    """The bits/dim bar: it counts examples (this rank's, repeats included) and shows, within a
    batch, the score evaluations of its ODE solve so far (a forward hook on the network), since
    one batch can take minutes. The count is redrawn at most every `refresh_seconds`."""
    refresh_seconds = 1.0

    def __init__(self, model, total: int, initial: int, show: bool):
        self.bar = tqdm(total=total, initial=initial, desc="bpd", unit="example",
                        disable=not show)
        self.net = getattr(model, "net", None) if show else None
        self.evaluations, self.hook, self.drawn = 0, None, time.monotonic()

    def __enter__(self) -> "ExampleProgress":
        if isinstance(self.net, torch.nn.Module):
            self.hook = self.net.register_forward_hook(self._evaluated)
        return self

    def _evaluated(self, *_) -> None:
        self.evaluations += 1
        if time.monotonic() - self.drawn >= self.refresh_seconds:
            self.bar.set_postfix_str(f"{self.evaluations} score evaluations in this batch")
            self.drawn = time.monotonic()

    def batch_done(self, examples: int) -> None:
        self.evaluations = 0
        self.bar.update(examples)

    def __exit__(self, *exc) -> None:
        if self.hook is not None:
            self.hook.remove()
        self.bar.close()


def _batch_bpd(model, sde, raw: torch.Tensor, transform: DataTransform, settings: BpdSettings,
               generator: torch.Generator, device):
    """(bits/dim `[b]`, nats/dim `[b]`, NFE) of one batch of stored examples."""
    is_image = raw.dtype == torch.uint8
    x = transform.images(raw, dequantize=True, generator=generator) if is_image else raw.float()
    x = x.to(device)
    result = samplers.log_likelihood(
        model, sde, x, eps=settings.eps, rtol=settings.rtol, atol=settings.atol,
        divergence=settings.divergence, generator=torch.Generator(device).manual_seed(
            int(torch.randint(2 ** 62, (1,), generator=generator))))
    logp = result.logp.double().cpu()
    num_dims = x[0].numel()
    if is_image:
        bpd = samplers.bits_per_dim(logp, num_dims, centered=transform.centered)
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
