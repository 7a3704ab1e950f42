"""`--mode eval` and `--mode sample`: load the latest checkpoint's EMA weights, then measure
bits/dim and/or draw samples. Results go to `workdir/<eval_folder>/` and `workdir/samples/`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

import sde_lib
from evaluation.fid import (feature_statistics, frechet_distance, inception_outputs, inception_score,
                            load_inception)
from evaluation.likelihood import evaluate_bpd
from evaluation.sampling import generate_samples, num_classes_of, save_samples
from evaluation.vlb import evaluate_vlb
from models import ExponentialMovingAverage
from training import setup
from training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, write_json
from training.datasets import build_dataset
from training.distributed import DistInfo
from training.pipeline import to_uint8_images


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


def run_eval(config, workdir, eval_folder: str = "eval", dist_info: Optional[DistInfo] = None) -> dict:
    """Bits/dim on `eval.bpd_dataset` (the probability-flow ODE's, and DDPM's variational bound
    when `eval.enable_vlb`; samples when `eval.enable_sampling`) → metrics.json.

    Under torchrun the work is split across ranks and rank 0 writes the results.
    """
    info = dist_info or DistInfo(device=setup.default_device())
    device = info.device
    eval_dir = Path(workdir) / eval_folder
    inception = None
    if config.eval.enable_fid:  # fail before any work when the network is missing
        if not config.eval.enable_sampling:
            raise ValueError("config.eval.enable_fid=True needs config.eval.enable_sampling=True")
        inception = load_inception(config.eval.inception_path, device)
    model, sde, step = load_ema_model(config, workdir, device)
    metrics = {"step": step}
    if config.eval.enable_bpd:
        dataset = build_dataset(config.data, config.eval.bpd_dataset)
        metrics.update(evaluate_bpd(config, model, sde, dataset, eval_dir, device, step, dist_info=info))
        if dataset.log_prob is not None:  # exact density known: report the gap to it
            exact = dataset.log_prob(dataset.data[:metrics["num_examples"]].double())
            metrics["nll"] = metrics["nll_per_dim"] * dataset.data.shape[1]
            metrics["exact_nll"] = -exact.mean().item()
        if metrics["num_nonfinite"]:
            logging.warning("%d likelihood evaluations were not finite and were left out",
                            metrics["num_nonfinite"])
    if config.eval.get("enable_vlb", False):  # DDPM's bound, beside the ODE's bits/dim
        dataset = build_dataset(config.data, config.eval.bpd_dataset)
        metrics.update(evaluate_vlb(config, model, sde, dataset, eval_dir, device, step,
                                    dist_info=info))
    if config.eval.enable_sampling:
        samples = generate_samples(config, model, sde, config.eval.num_samples, device,
                                   seed=config.eval.get("seed", 0), progress=True, dist_info=info)
        metrics["num_samples"] = config.eval.num_samples
        if info.is_main:
            save_samples(config, samples, eval_dir / f"samples_{step}")
            if inception is not None:
                metrics.update(fid_metrics(config, inception, samples, eval_dir))
    if info.is_main:
        write_json(eval_dir / "metrics.json", metrics)
    return metrics


def fid_metrics(config, inception, samples, eval_dir: Path) -> dict:
    """FID against the training split (its statistics cached in eval_dir) and Inception Score."""
    if samples.ndim != 4:
        raise ValueError("config.eval.enable_fid needs image data, not vectors")
    stats_path = eval_dir / f"fid_stats_{config.data.dataset}_{config.data.image_size}.npz"
    if stats_path.exists():
        with np.load(stats_path) as stats:
            mu_data, sigma_data = stats["mu"], stats["sigma"]
    else:
        data = build_dataset(config.data, "train").data
        mu_data, sigma_data = feature_statistics(inception_outputs(inception, data)[0])
        np.savez(stats_path, mu=mu_data, sigma=sigma_data)
    features, probs = inception_outputs(inception, to_uint8_images(samples, centered=config.data.centered))
    inception_mean, inception_std = inception_score(probs)
    return {"fid": frechet_distance(*feature_statistics(features), mu_data, sigma_data),
            "inception_score": inception_mean, "inception_score_std": inception_std}


def run_sample(config, workdir, dist_info: Optional[DistInfo] = None) -> Path:
    """`sampling.task`: "generate" draws `eval.num_samples` samples with the configured sampler
    (class-conditional / guided as configured) into `workdir/samples/`; "inpaint", "colorize"
    and "interpolate" work on test images (`evaluation.tasks`). Returns the PNG's path."""
    info = dist_info or DistInfo(device=setup.default_device())
    model, sde, step = load_ema_model(config, workdir, info.device)
    classifier = None
    if config.sampling.get("classifier_scale", 0.0) > 0:
        from training.classifier import load_classifier
        classifier = load_classifier(config, workdir, info.device)
    task = config.sampling.get("task", "generate")
    folder = Path(workdir) / "samples" / _sample_folder(config, step)
    if task != "generate":
        if info.world_size > 1:
            raise ValueError(f"config.sampling.task={task!r} runs in one process; launch it "
                             f"without torchrun")
        from evaluation.tasks import run_task
        return run_task(config, model, sde, folder, info.device, classifier)
    samples = generate_samples(config, model, sde, config.eval.num_samples, info.device,
                               seed=config.eval.get("seed", 0), progress=True, dist_info=info,
                               classifier=classifier)
    if info.is_main:
        save_samples(config, samples, folder, nrow=num_classes_of(config, model, classifier))
    return folder / "samples.png"


def _sample_folder(config, step: int) -> str:
    """`step_<step>_<method>`, plus the task and the guidance that made the samples."""
    sampling = config.sampling
    name = f"step_{step}_{sampling.method}"
    task = sampling.get("task", "generate")
    if task != "generate":
        name += f"_{task}" + (f"_{sampling.mask}" if task == "inpaint" else "")
    if config.model.get("num_classes", 0):
        name += f"_cfg{sampling.guidance_scale:g}"
    if sampling.get("classifier_scale", 0.0) > 0:
        name += f"_clf{sampling.classifier_scale:g}"
    return name
