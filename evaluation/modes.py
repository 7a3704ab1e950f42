"""`--mode eval` and `--mode sample`: load the latest checkpoint's EMA weights, then measure
bits/dim and/or draw samples. Results go to `workdir/<eval_folder>/` and `workdir/samples/`.

`run_eval` and `run_sample` are the builders of this layer: they turn the config into the typed
settings of `evaluation.likelihood`, `evaluation.vlb`, `evaluation.sampling` and
`evaluation.tasks`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from PIL import Image

import samplers
from data import (Dataset, DataTransform, build_dataset, build_transform, describe,
                  to_uint8_images)
from evaluation import feature_fd
from evaluation.fid import (checked_inception, feature_statistics, frechet_distance,
                            inception_outputs, inception_score)
from evaluation.fitted_steps import fitted_sampler
from evaluation.likelihood import KEYS as BPD_KEYS
from evaluation.likelihood import BpdSettings, evaluate_bpd
from evaluation.sampling import (Guidance, generate_samples, samples_complete, sampling_model,
                                 save_samples)
from evaluation.sample_log import log_sample_run
from evaluation.snapshots import snapshot_sampling
from evaluation.tasks import CONDITION_TASKS, TaskSettings, run_task
from evaluation.vlb import TERMS as VLB_TERMS
from evaluation.vlb import VLBSettings, evaluate_vlb
from run.builders import data_shape
from run.distributed import DistInfo, barrier, single_process
from run.files import check_inside, save_npz, write_json
from run.loading import load_classifier, load_ema_model
from run.paths import WorkdirPaths
from run.preemption import stop_checked
from run.progress import Progress, settings_digest, weights_digest
from run.tensorboard import SafeWriter
from samplers.config import config_options, keyword_options


def build_guidance(config, model, classifier=None) -> Guidance:
    """The `Guidance` of `config.sampling` for `model` (and a guidance classifier)."""
    sampling = config.sampling
    num_classes = model.num_classes
    if not num_classes and classifier is not None:
        num_classes = describe(config.data).num_classes
    return Guidance(num_classes=num_classes, class_label=sampling.get("class_label", -1),
                    guidance_scale=sampling.get("guidance_scale", 1.0), classifier=classifier,
                    classifier_scale=sampling.get("classifier_scale", 0.0))


def network_options(config) -> dict:
    """`sampling_model`'s options from `config.sampling`: precision and compile."""
    return {"precision": config.sampling.get("precision", "fp32"),
            "compile": bool(config.sampling.get("compile", False))}


class SnapshotSamples:
    """The training loop's snapshot callback: `num_snapshot_samples` samples of the EMA model
    by `training.snapshot_sampler` (`evaluation.snapshots`), with a progress bar, written under
    `samples/iter_<step>/` (class-conditional models: one class per column); `done(step)` tells
    whether they are complete. With `stop` (one process only: the other ranks of a job would
    wait on rank 0's snapshot), a stop request ends the snapshot within one sampler step; the
    resumed run draws it again."""

    def __init__(self, config, workdir, stop=None):
        self.config, self.paths, self.stop = config, WorkdirPaths(workdir), stop
        self.sampler = samplers.build_sampler(snapshot_sampling(config))
        self.shape, self.count = data_shape(config), config.training.num_snapshot_samples
        self.batch_size, self.seed = config.eval.batch_size, config.training.seed
        self.centered = build_transform(config.data).centered
        # Snapshots are a few batches: autocast as configured, never a fresh compilation.
        self.network = {"precision": config.sampling.get("precision", "fp32")}
        self.fd = bool(config.training.get("snapshot_fd", False))

    def __call__(self, model, step: int) -> np.ndarray:
        """Write the samples of `step`; returns their PNG picture (HWC uint8) for TensorBoard."""
        guidance, stats, tick = build_guidance(self.config, model), {}, time.perf_counter()
        x = generate_samples(self.sampler, sampling_model(model, **self.network), model.sde,
                             self.shape, self.count, self.batch_size, self.seed, guidance,
                             progress=True, stats=stats, desc="snapshot", stop=self.stop)
        logging.info("snapshot %d: %d samples by %s, %d score evaluations, %.1f s", step,
                     self.count, self.sampler.method, sum(stats["nfe"]),
                     time.perf_counter() - tick)
        if self.fd:
            self.log_fd(x, step)
        png = save_samples(x, self.paths.snapshot_samples(step), centered=self.centered,
                           nrow=model.num_classes, root=self.paths.root,
                           labels=guidance.labels(range(self.count)))
        with Image.open(png) as picture:
            return np.asarray(picture.convert("RGB"))

    def log_fd(self, x, step: int) -> dict:
        """`training.snapshot_fd`: fd and fd_floor of the samples (`evaluation.feature_fd`) as
        the TensorBoard scalars `snapshot/fd`, `snapshot/fd_floor`."""
        data = self.config.data
        metrics, _ = feature_fd.fd_metrics(
            to_uint8_images(x, centered=self.centered), build_dataset(data, "train"),
            build_dataset(data, "test"), fd_classifier_path(self.paths, data), self.paths.root)
        writer = SafeWriter(self.paths.tensorboard)
        try:
            for name, value in metrics.items():
                writer.add_scalar(f"snapshot/{name}", value, step)
        finally:
            writer.close()
        logging.info("snapshot %d: fd %.4g (floor %.4g)", step, metrics["fd"],
                     metrics["fd_floor"])
        return metrics

    def done(self, step: int) -> bool:
        return samples_complete(self.paths.snapshot_samples(step))


def fd_classifier_path(paths: WorkdirPaths, data) -> Path:
    """Where `fd`'s feature classifier of data section `data` is cached: the eval folder."""
    return paths.eval / f"fd_classifier_{data.dataset}_{data.image_size}.pth"


def snapshot_sampler(config, workdir, stop=None) -> SnapshotSamples:
    """The snapshot callback of `config` for `workdir` (`SnapshotSamples`)."""
    return SnapshotSamples(config, workdir, stop)


def _progress(paths: WorkdirPaths, name: str, info: DistInfo, key: dict, names) -> Progress:
    return Progress(paths.progress(name, info.rank, info.world_size), key, names, paths.root)


def run_eval(config, workdir, eval_folder: str = "eval",
             dist_info: Optional[DistInfo] = None, stop=None) -> dict:
    """Bits/dim on `eval.bpd_dataset` (the probability-flow ODE's, and DDPM's variational bound
    when `eval.enable_vlb`; samples when `eval.enable_sampling`) → metrics.json, which records
    the checkpoint and the settings that produced each number.

    Progress is kept per batch, keyed by the checkpoint's weights and every setting that changes
    the result, and removed once metrics.json is written. Under torchrun the work is split
    across ranks and rank 0 writes the results.
    """
    info = dist_info or single_process()
    paths = WorkdirPaths(workdir, eval_folder)
    ev, transform = config.eval, build_transform(config.data)
    inception = None
    if ev.enable_fid:  # fail before any work when the network is missing
        if not ev.enable_sampling:
            raise ValueError("config.eval.enable_fid=True needs config.eval.enable_sampling=True")
        inception = checked_inception(ev.inception_path, info.device)
    model, sde, step = load_ema_model(config, paths, info.device)
    checkpoint = {"step": step, "weights": weights_digest(model)}
    sampler = fitted_sampler(samplers.build_sampler(config.sampling), paths,
                             checkpoint["weights"]) if ev.enable_sampling else None
    metrics, settings, finished = {"step": step}, {}, []
    data = {"dataset": config.data.dataset, "centered": transform.centered}
    if ev.enable_bpd:
        bpd = BpdSettings.from_config(ev)
        settings["bpd"] = {**asdict(bpd), **data}
        dataset = build_dataset(config.data, bpd.split)
        done = _progress(paths, "bpd", info, {**checkpoint, **settings["bpd"]}, BPD_KEYS)
        metrics.update(evaluate_bpd(model, sde, dataset, transform, bpd, done, dist_info=info,
                                    stop=stop))
        finished.append(done)
        if dataset.log_prob is not None:  # exact density known: report the gap to it
            exact = dataset.log_prob(dataset.data[:metrics["num_examples"]].double())
            metrics["nll"] = metrics["nll_per_dim"] * dataset.data.shape[1]
            metrics["exact_nll"] = -exact.mean().item()
        if metrics["num_nonfinite"]:
            logging.warning("%d likelihood evaluations were not finite and were left out",
                            metrics["num_nonfinite"])
    if ev.get("enable_vlb", False):  # DDPM's bound, beside the ODE's bits/dim
        vlb = VLBSettings.from_config(config, model)
        settings["vlb"] = {**asdict(vlb), **data}
        done = _progress(paths, "vlb", info, {**checkpoint, **settings["vlb"]}, VLB_TERMS)
        metrics.update(evaluate_vlb(model, sde, build_dataset(config.data, vlb.split), vlb, done,
                                    dist_info=info, stop=stop))
        finished.append(done)
    if ev.enable_sampling:
        settings["sampling"] = sample_settings(config, sampler, ev.num_samples)
        samples = generate_samples(sampler, sampling_model(model, **network_options(config)), sde,
                                   data_shape(config), ev.num_samples, ev.batch_size,
                                   ev.get("seed", 0), build_guidance(config, model),
                                   progress=True, dist_info=info, stop=stop)
        metrics["num_samples"] = ev.num_samples
        if info.is_main:
            folder = paths.eval_samples(step)
            save_samples(samples, folder, centered=transform.centered, root=paths.root)
            write_json(folder / "settings.json", {"checkpoint": checkpoint,
                                                  "settings": settings["sampling"]}, paths.root)
            if inception is not None:
                stats_path = paths.fid_stats(config.data.dataset, config.data.image_size)
                metrics.update(fid_metrics(inception, samples, transform, stats_path,
                                           lambda: build_dataset(config.data, "train"),
                                           paths.root))
            if samples.ndim == 4 and feature_fd.applies(True, config.data.image_size):
                fd, settings["fd"] = feature_fd.fd_metrics(
                    transform.to_uint8(samples), build_dataset(config.data, "train"),
                    build_dataset(config.data, "test"), fd_classifier_path(paths, config.data),
                    paths.root)
                metrics.update(fd)
    barrier(info)
    if info.is_main:
        write_json(paths.metrics, {**metrics, "checkpoint": checkpoint, "settings": settings},
                   paths.root)
        log_metrics(paths, metrics, step)
    barrier(info)
    for done in finished:
        done.finish()
    return metrics


def log_metrics(paths: WorkdirPaths, metrics: dict, step: int) -> None:
    """The numbers of an evaluation as TensorBoard scalars at the checkpoint's step, beside the
    training curves (tags `<eval folder>/<metric>`)."""
    writer = SafeWriter(paths.tensorboard)
    try:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "step":
                writer.add_scalar(f"{paths.eval_folder}/{name}", float(value), step)
    finally:
        writer.close()


def reference_statistics(inception, stats_path: Path, reference_set,
                         root: Optional[Path] = None):
    """(μ, Σ) of the Inception features of `reference_set()`, cached at `stats_path`."""
    if stats_path.exists():
        with np.load(stats_path) as stats:
            return stats["mu"], stats["sigma"]
    data: Dataset = reference_set()
    if data.data.dtype != torch.uint8 or data.data.ndim != 4:
        raise ValueError("FID needs 8-bit image data, not vectors")
    mu, sigma = feature_statistics(inception_outputs(inception, data.data)[0])
    save_npz(stats_path, {"mu": mu, "sigma": sigma}, root)
    return mu, sigma


def fid_metrics(inception, samples, transform: DataTransform, stats_path: Path,
                reference_set, root: Optional[Path] = None) -> dict:
    """FID against the data set `reference_set()` (its statistics cached at `stats_path`) and
    Inception Score."""
    if samples.ndim != 4:
        raise ValueError("config.eval.enable_fid needs image data, not vectors")
    mu_data, sigma_data = reference_statistics(inception, stats_path, reference_set, root)
    features, probs = inception_outputs(inception, transform.to_uint8(samples))
    inception_mean, inception_std = inception_score(probs)
    return {"fid": frechet_distance(*feature_statistics(features), mu_data, sigma_data),
            "inception_score": inception_mean, "inception_score_std": inception_std}


def run_fid_stats(config, workdir, eval_folder: str = "eval") -> Path:
    """`--mode fid_stats`: the training split's Inception statistics, cached in the eval folder
    where `--mode eval` with `eval.enable_fid` finds them (sets up the network as "auto" does
    when `eval.inception_path` is "auto")."""
    paths = WorkdirPaths(workdir, eval_folder)
    inception = checked_inception(config.eval.inception_path, "cpu")
    stats_path = paths.fid_stats(config.data.dataset, config.data.image_size)
    reference_statistics(inception, stats_path, lambda: build_dataset(config.data, "train"),
                         paths.root)
    return stats_path


class SampleRun(NamedTuple):
    """What `--mode sample` made: the PNG, how many samples, the score evaluations of each batch
    (`nfe`, a list) and the wall time in seconds."""
    path: Path
    num_samples: int
    nfe: list
    seconds: float


def run_sample(config, workdir, dist_info: Optional[DistInfo] = None, stop=None) -> SampleRun:
    """`sampling.task`: "generate" draws `eval.num_samples` samples with the configured sampler
    (class-conditional / guided as configured) into `workdir/samples/`; "inpaint", "colorize"
    and "interpolate" work on test images (`evaluation.tasks`).

    Each run's folder is named by its settings (`sample_run_name`), holds `settings.json` (the
    settings, checkpoint, NFE, wall time and class labels) and keeps per-batch progress while it
    runs, so a rerun continues and runs of other settings never overwrite it.
    """
    info = dist_info or single_process()
    paths = WorkdirPaths(workdir)
    model, sde, step = load_ema_model(config, paths, info.device)
    classifier = None
    if config.sampling.get("classifier_scale", 0.0) > 0:
        classifier = load_classifier(config, paths, info.device)
    guidance = build_guidance(config, model, classifier)
    transform = build_transform(config.data)
    task = config.sampling.get("task", "generate")
    digest = weights_digest(model)
    sampler = fitted_sampler(samplers.build_sampler(config.sampling), paths, digest)
    record = {"checkpoint": {"step": step, "weights": digest},
              "settings": sample_settings(config, sampler, config.eval.num_samples)}
    folder = paths.sample_run(sample_run_name(config, step, settings_digest(record)))
    check_inside(folder, paths.root)
    tick, stats = time.perf_counter(), {}
    if task != "generate":
        if info.world_size > 1:
            raise ValueError(f"config.sampling.task={task!r} runs in one process; launch it "
                             f"without torchrun")
        settings = task_settings(config)
        if guidance.num_classes and settings.test_labels is not None:
            guidance.given_labels = settings.test_labels   # complete each image as its class
        png = run_task(settings, stop_checked(model, stop), sde, transform, folder, guidance,
                       paths.root, stats)   # a stop request ends it within one sampler step
        run = SampleRun(png, settings.num_samples, stats.get("nfe", []),
                        time.perf_counter() - tick)
        write_json(folder / "settings.json", _provenance(record, run, guidance), paths.root)
        log_sample_run(paths.tensorboard, png, sum(run.nfe), run.seconds, step)
        return run
    done = Progress(folder / f"progress_{info.rank}of{info.world_size}.pth", record,
                    ("samples", "nfe"), paths.root)
    samples = generate_samples(sampler, sampling_model(model, **network_options(config)), sde,
                               data_shape(config), config.eval.num_samples,
                               config.eval.batch_size, config.eval.get("seed", 0), guidance,
                               progress=True, dist_info=info, resume=done, stop=stop,
                               stats=stats)
    run = SampleRun(folder / "samples.png", config.eval.num_samples, stats["nfe"],
                    time.perf_counter() - tick)
    if info.is_main:
        labels = guidance.labels(range(config.eval.num_samples))
        provenance = _provenance(record, run, guidance)
        save_samples(samples, folder, centered=transform.centered, nrow=guidance.num_classes,
                     root=paths.root, labels=labels, settings=provenance)
        write_json(folder / "settings.json", provenance, paths.root)
        log_sample_run(paths.tensorboard, run.path, sum(run.nfe), run.seconds, step)
    barrier(info)
    done.finish()
    return run


def _provenance(record: dict, run: SampleRun, guidance: Guidance) -> dict:
    """settings.json: the settings and checkpoint, with the NFE, wall time and labels."""
    labels = guidance.labels(range(run.num_samples))
    return {**record, "nfe_per_batch": run.nfe, "nfe_total": int(sum(run.nfe)),
            "wall_seconds": round(run.seconds, 3),
            "labels": None if labels is None else labels.tolist()}


def sample_settings(config, sampler, num_samples: int) -> dict:
    """Everything that decides a sample run's output: the method and its options, the number,
    batch size and seed, the class labels and guidance, and the task."""
    sampling = config.sampling
    settings = {"method": sampler.method, "options": sampler.resolved(config.sde.num_scales),
                "num_samples": num_samples, "batch_size": config.eval.batch_size,
                "seed": config.eval.get("seed", 0), "task": sampling.get("task", "generate"),
                **network_options(config),
                "class_label": sampling.get("class_label", -1),
                "guidance_scale": sampling.get("guidance_scale", 1.0),
                "classifier_scale": sampling.get("classifier_scale", 0.0)}
    if settings["task"] == "inpaint":
        settings["mask"] = sampling.get("mask", "right_half")
    if settings["task"] == "superres":
        settings["superres_factor"] = sampling.get("superres_factor", 2)
    if settings["task"] in CONDITION_TASKS:
        method = sampling.get("condition_method", "replacement")
        settings["condition"] = {"method": method, "options": resolved_condition_settings(sampling)}
    return settings


def condition_settings(sampling) -> dict:
    """The options of `sampling.condition_method` that the config sets (`samplers.condition`)."""
    method = sampling.get("condition_method", "replacement")
    return config_options(sampling, samplers.condition_options(method))


def resolved_condition_settings(sampling) -> dict:
    """Every option of `sampling.condition_method`, the config's over the defaults."""
    method = sampling.get("condition_method", "replacement")
    options = condition_settings(sampling)
    return {**options, **samplers.check_condition_options(
        method, {k: v for k, v in options.items() if k in samplers.METHOD_OPTIONS[method]})}


def task_settings(config) -> TaskSettings:
    """The `TaskSettings` of `config.sampling.task` (the test split's images)."""
    sampling = config.sampling
    test = build_dataset(config.data, "test")
    return TaskSettings(
        task=sampling.task, test_images=test.data, test_labels=test.labels,
        num_samples=config.eval.num_samples, seed=config.eval.get("seed", 0),
        mask=sampling.get("mask", "right_half"),
        superres_factor=sampling.get("superres_factor", 2),
        condition_method=sampling.get("condition_method", "replacement"),
        options=condition_settings(sampling),
        ode_options=config_options(sampling, keyword_options(samplers.encode)))


def sample_run_name(config, step: int, digest: str = "") -> str:
    """`step_<step>_<method>`, the task and the guidance that made the samples, and the digest
    of all their settings (so runs of other settings never share a folder)."""
    sampling = config.sampling
    name = f"step_{step}_{sampling.method}"
    task = sampling.get("task", "generate")
    if task != "generate":
        name += f"_{task}" + (f"_{sampling.mask}" if task == "inpaint" else "")
        method = sampling.get("condition_method", "replacement")
        if task in CONDITION_TASKS and method != "replacement":
            name += f"_{method}"
    if config.model.get("num_classes", 0):
        name += f"_cfg{sampling.guidance_scale:g}"
    if sampling.get("classifier_scale", 0.0) > 0:
        name += f"_clf{sampling.classifier_scale:g}"
    return f"{name}_{digest}" if digest else name
