"""`--mode eval` and `--mode sample`: load the latest checkpoint's EMA weights, then measure
bits/dim and/or draw samples. Results go to `workdir/<eval_folder>/` and `workdir/samples/`.

`run_eval` and `run_sample` are the builders of this layer: they turn the config into the typed
settings of `evaluation.likelihood`, `evaluation.vlb`, `evaluation.sampling` and
`evaluation.tasks`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

import samplers
from data import NUM_CLASSES, Dataset, DataTransform, build_dataset, build_transform
from evaluation.fid import (feature_statistics, frechet_distance, inception_outputs,
                            inception_score, load_inception)
from evaluation.likelihood import BpdSettings, evaluate_bpd
from evaluation.sampling import Guidance, generate_samples, save_samples
from evaluation.tasks import TaskSettings, run_task
from evaluation.vlb import VLBSettings, evaluate_vlb
from run.builders import data_shape
from run.checkpoint import write_json
from run.distributed import DistInfo, single_process
from run.loading import load_classifier, load_ema_model
from run.paths import WorkdirPaths
from samplers.config import config_options, keyword_options


def build_guidance(config, model, classifier=None) -> Guidance:
    """The `Guidance` of `config.sampling` for `model` (and a guidance classifier)."""
    sampling = config.sampling
    num_classes = model.num_classes
    if not num_classes and classifier is not None:
        num_classes = NUM_CLASSES.get(config.data.dataset, 0)
    return Guidance(num_classes=num_classes, class_label=sampling.get("class_label", -1),
                    guidance_scale=sampling.get("guidance_scale", 1.0), classifier=classifier,
                    classifier_scale=sampling.get("classifier_scale", 0.0))


def snapshot_sampler(config, workdir):
    """The training loop's snapshot callback `(model, step)`: `num_snapshot_samples` samples of
    the EMA model with the configured sampler, written under `samples/iter_<step>/`
    (class-conditional models: one class per column)."""
    sampler, paths = samplers.build_sampler(config.sampling), WorkdirPaths(workdir)
    shape, count = data_shape(config), config.training.num_snapshot_samples
    batch_size, seed = config.eval.batch_size, config.training.seed
    centered = build_transform(config.data).centered

    def on_snapshot(model, step: int) -> None:
        guidance = build_guidance(config, model)
        x = generate_samples(sampler, model, model.sde, shape, count, batch_size, seed, guidance)
        save_samples(x, paths.snapshot_samples(step), centered=centered, nrow=model.num_classes)
    return on_snapshot


def run_eval(config, workdir, eval_folder: str = "eval",
             dist_info: Optional[DistInfo] = None) -> dict:
    """Bits/dim on `eval.bpd_dataset` (the probability-flow ODE's, and DDPM's variational bound
    when `eval.enable_vlb`; samples when `eval.enable_sampling`) → metrics.json.

    Under torchrun the work is split across ranks and rank 0 writes the results.
    """
    info = dist_info or single_process()
    paths = WorkdirPaths(workdir, eval_folder)
    ev, transform = config.eval, build_transform(config.data)
    inception = None
    if ev.enable_fid:  # fail before any work when the network is missing
        if not ev.enable_sampling:
            raise ValueError("config.eval.enable_fid=True needs config.eval.enable_sampling=True")
        inception = load_inception(ev.inception_path, info.device)
    model, sde, step = load_ema_model(config, paths, info.device)
    metrics = {"step": step}
    if ev.enable_bpd:
        dataset = build_dataset(config.data, ev.bpd_dataset)
        metrics.update(evaluate_bpd(model, sde, dataset, transform, BpdSettings.from_config(ev),
                                    paths, step, dist_info=info))
        if dataset.log_prob is not None:  # exact density known: report the gap to it
            exact = dataset.log_prob(dataset.data[:metrics["num_examples"]].double())
            metrics["nll"] = metrics["nll_per_dim"] * dataset.data.shape[1]
            metrics["exact_nll"] = -exact.mean().item()
        if metrics["num_nonfinite"]:
            logging.warning("%d likelihood evaluations were not finite and were left out",
                            metrics["num_nonfinite"])
    if ev.get("enable_vlb", False):  # DDPM's bound, beside the ODE's bits/dim
        dataset = build_dataset(config.data, ev.bpd_dataset)
        metrics.update(evaluate_vlb(model, sde, dataset, VLBSettings.from_config(config, model),
                                    paths, step, dist_info=info))
    if ev.enable_sampling:
        samples = generate_samples(samplers.build_sampler(config.sampling), model, sde,
                                   data_shape(config), ev.num_samples, ev.batch_size,
                                   ev.get("seed", 0), build_guidance(config, model),
                                   progress=True, dist_info=info)
        metrics["num_samples"] = ev.num_samples
        if info.is_main:
            save_samples(samples, paths.eval_samples(step), centered=transform.centered)
            if inception is not None:
                stats_path = paths.fid_stats(config.data.dataset, config.data.image_size)
                metrics.update(fid_metrics(inception, samples, transform, stats_path,
                                           lambda: build_dataset(config.data, "train")))
    if info.is_main:
        write_json(paths.metrics, metrics)
    return metrics


def fid_metrics(inception, samples, transform: DataTransform, stats_path: Path,
                reference_set) -> dict:
    """FID against the data set `reference_set()` (its statistics cached at `stats_path`) and
    Inception Score."""
    if samples.ndim != 4:
        raise ValueError("config.eval.enable_fid needs image data, not vectors")
    if stats_path.exists():
        with np.load(stats_path) as stats:
            mu_data, sigma_data = stats["mu"], stats["sigma"]
    else:
        data: Dataset = reference_set()
        mu_data, sigma_data = feature_statistics(inception_outputs(inception, data.data)[0])
        np.savez(stats_path, mu=mu_data, sigma=sigma_data)
    features, probs = inception_outputs(inception, transform.to_uint8(samples))
    inception_mean, inception_std = inception_score(probs)
    return {"fid": frechet_distance(*feature_statistics(features), mu_data, sigma_data),
            "inception_score": inception_mean, "inception_score_std": inception_std}


def run_sample(config, workdir, dist_info: Optional[DistInfo] = None) -> Path:
    """`sampling.task`: "generate" draws `eval.num_samples` samples with the configured sampler
    (class-conditional / guided as configured) into `workdir/samples/`; "inpaint", "colorize"
    and "interpolate" work on test images (`evaluation.tasks`). Returns the PNG's path."""
    info = dist_info or single_process()
    paths = WorkdirPaths(workdir)
    model, sde, step = load_ema_model(config, paths, info.device)
    classifier = None
    if config.sampling.get("classifier_scale", 0.0) > 0:
        classifier = load_classifier(config, paths, info.device)
    guidance = build_guidance(config, model, classifier)
    transform = build_transform(config.data)
    task = config.sampling.get("task", "generate")
    folder = paths.sample_run(sample_run_name(config, step))
    if task != "generate":
        if info.world_size > 1:
            raise ValueError(f"config.sampling.task={task!r} runs in one process; launch it "
                             f"without torchrun")
        return run_task(task_settings(config), model, sde, transform, folder, guidance)
    samples = generate_samples(samplers.build_sampler(config.sampling), model, sde,
                               data_shape(config), config.eval.num_samples,
                               config.eval.batch_size, config.eval.get("seed", 0), guidance,
                               progress=True, dist_info=info)
    if info.is_main:
        save_samples(samples, folder, centered=transform.centered, nrow=guidance.num_classes)
    return folder / "samples.png"


def task_settings(config) -> TaskSettings:
    """The `TaskSettings` of `config.sampling.task` (the test split's images)."""
    sampling = config.sampling
    return TaskSettings(
        task=sampling.task, test_images=build_dataset(config.data, "test").data,
        num_samples=config.eval.num_samples, seed=config.eval.get("seed", 0),
        mask=sampling.get("mask", "right_half"),
        options=config_options(sampling, keyword_options(samplers.inpaint)),
        ode_options=config_options(sampling, keyword_options(samplers.encode)))


def sample_run_name(config, step: int) -> str:
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
