"""`--mode eval` and `--mode sample`: load the latest checkpoint's EMA weights, then measure
bits/dim and/or draw samples. Results go to `workdir/<eval_folder>/` and `workdir/samples/`."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

import sde_lib
from evaluation.likelihood import evaluate_bpd
from evaluation.sampling import generate_samples, save_samples
from models import ExponentialMovingAverage
from training import setup
from training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from training.datasets import build_dataset


def load_ema_model(config, workdir, device):
    """The score model with the EMA weights of `workdir`'s latest checkpoint, and its step."""
    path = latest_checkpoint(workdir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {Path(workdir) / 'checkpoints-meta'}; train first "
                              f"(--mode train) or convert one (python -m models.convert)")
    state = load_checkpoint(path, map_location=device)
    sde = sde_lib.build_sde(config.sde)
    model = setup.build_score_model(config, sde, device)
    try:
        model.net.load_state_dict(state["model"], strict=True)
        ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
        ema.load_state_dict(state["ema"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit config.model: "
                              f"{str(err).splitlines()[0]}") from None
    ema.copy_to(model.parameters())
    return model.eval(), sde, int(state["step"])


def write_json(path: Path, payload: dict) -> None:
    """Atomically replace `path` with `payload` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def run_eval(config, workdir, eval_folder: str = "eval", device=None) -> dict:
    """Bits/dim on `eval.bpd_dataset` (and samples when `eval.enable_sampling`) → metrics.json."""
    device = device or setup.default_device()
    eval_dir = Path(workdir) / eval_folder
    model, sde, step = load_ema_model(config, workdir, device)
    metrics = {"step": step}
    if config.eval.enable_bpd:
        dataset = build_dataset(config.data, config.eval.bpd_dataset)
        metrics.update(evaluate_bpd(config, model, sde, dataset, eval_dir, device, step))
        if dataset.log_prob is not None:  # exact density known: report the gap to it
            exact = dataset.log_prob(dataset.data[:metrics["num_examples"]].double())
            metrics["nll"] = metrics["nll_per_dim"] * dataset.data.shape[1]
            metrics["exact_nll"] = -exact.mean().item()
        if metrics["num_nonfinite"]:
            logging.warning("%d likelihood evaluations were not finite and were left out",
                            metrics["num_nonfinite"])
    if config.eval.enable_sampling:
        samples = generate_samples(config, model, sde, config.eval.num_samples, device,
                                   seed=config.eval.get("seed", 0), progress=True)
        save_samples(config, samples, eval_dir / f"samples_{step}")
        metrics["num_samples"] = config.eval.num_samples
    write_json(eval_dir / "metrics.json", metrics)
    return metrics


def run_sample(config, workdir, device=None) -> Path:
    """Draw `eval.num_samples` samples with the configured sampler into `workdir/samples/`."""
    device = device or setup.default_device()
    model, sde, step = load_ema_model(config, workdir, device)
    samples = generate_samples(config, model, sde, config.eval.num_samples, device,
                               seed=config.eval.get("seed", 0), progress=True)
    return save_samples(config, samples, Path(workdir) / "samples" / f"step_{step}_{config.sampling.method}")
