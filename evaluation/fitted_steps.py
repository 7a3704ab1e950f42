"""`--mode fit_steps` and `sampling.time_schedule = "fitted"`: learned step times in the workdir.

`run_fit_steps` learns the grid of `sampling.method` within `sampling.nfe` score evaluations for
the latest checkpoint's EMA model (`samplers.learned_steps.fit_steps`, settings from the
`fit_steps` section) and writes `schedules/<method>_nfe<nfe>.json` atomically: the times, the
method, the budget, the model's weights digest (`run.progress.weights_digest`, as sample folders
record it), the method's options, the fit's settings and its held-out errors before and after.

`fitted_sampler` turns a configured sampler whose `time_schedule` is "fitted" into one that runs
on the stored times; it refuses, with one line (exit 2), a budget with none stored and a stored
schedule that is stale (another model, or other options of the method).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from evaluation.sampling import sampling_model
from run.builders import data_shape
from run.distributed import DistInfo, single_process
from run.files import write_json
from run.loading import load_ema_model
from run.paths import WorkdirPaths
from run.preemption import Preempted
from run.progress import settings_digest, weights_digest
from run.stored_config import ConfigMismatch
from samplers.config import ConfiguredSampler, build_sampler
from samplers.learned_steps import GRID_OPTIONS, NamedTimes, fit_steps
from samplers.options import FITTED, check_options

# The `fit_steps` section's fields and their defaults (a config stored before it lacks them).
SETTINGS = {"num_samples": 128, "num_holdout": 256, "n_iters": 60, "lr": 0.1, "delta": 0.01,
            "tolerance": 1e-5, "seed": 0}


def fit_settings(config) -> dict:
    """The `fit_steps` section, its defaults filled in."""
    section = config.get("fit_steps", None) or {}
    return {name: section.get(name, default) if hasattr(section, "get") else default
            for name, default in SETTINGS.items()}


def method_options(method: str, options: dict) -> dict:
    """The options of `method` that decide a run on given times (all but the grid's), resolved
    and as plain values (what a stored schedule must match)."""
    resolved = check_options(method, {k: v for k, v in options.items()
                                      if k not in GRID_OPTIONS})
    return {k: v for k, v in resolved.items() if k not in GRID_OPTIONS}


def run_fit_steps(config, workdir, dist_info: Optional[DistInfo] = None, stop=None) -> dict:
    """Learn and store the grid of `config.sampling.method` at `config.sampling.nfe`; returns the
    stored record (module docstring)."""
    info = dist_info or single_process()
    paths = WorkdirPaths(workdir)
    model, sde, step = load_ema_model(config, paths, info.device)
    sampler = build_sampler(config.sampling)
    method, nfe, settings = sampler.method, sampler.nfe, fit_settings(config)
    options = {k: v for k, v in sampler.options.items() if k != "num_steps"}
    score = sampling_model(model, precision=config.sampling.get("precision", "fp32"))
    tick = time.perf_counter()

    def report(iteration, rms):
        logging.info("fit_steps %s nfe=%d: iteration %d of %d, training RMS %.4g", method, nfe,
                     iteration, settings["n_iters"], rms)
        if stop is not None and stop.should_stop():
            raise Preempted(f"{stop.requested} during the fit (iteration {iteration}); nothing "
                            f"was stored; rerun the same command to fit again")
    learned = fit_steps(score, sde, (settings["num_samples"],) + tuple(data_shape(config)),
                        method, nfe, options=options, num_holdout=settings["num_holdout"],
                        iterations=settings["n_iters"], lr=settings["lr"],
                        delta=settings["delta"], tolerance=settings["tolerance"],
                        seed=settings["seed"], device=info.device, on_iteration=report)
    resolved = check_options(method, {**options, "num_steps": None})
    record = {"method": method, "nfe": nfe, "times": learned.times.tolist(),
              "model_digest": weights_digest(model), "checkpoint_step": step,
              "options": method_options(method, options),
              "baseline_schedule": resolved["schedule"], "settings": settings,
              "rms_default": learned.rms_default, "rms_start": learned.rms_start,
              "rms_learned": learned.rms_learned, "start": learned.start,
              "fit_nfe": learned.nfe, "wall_seconds": round(time.perf_counter() - tick, 3)}
    if info.is_main:
        write_json(paths.fitted_schedule(method, nfe), record, paths.root)
    return record


def stored_schedule(paths: WorkdirPaths, method: str, nfe) -> Path:
    """The stored schedule's path; `ConfigMismatch` (one line) when there is none."""
    path = paths.fitted_schedule(method, nfe)
    if nfe is None or not path.is_file():
        budget = "a budget config.sampling.nfe" if nfe is None else f"nfe={nfe}"
        raise ConfigMismatch(f"config.sampling.time_schedule='fitted': no learned schedule for "
                             f"method {method!r} at {budget} in {paths.schedules}; run --mode "
                             f"fit_steps with config.sampling.method={method} and "
                             f"config.sampling.nfe set first")
    return path


def fitted_sampler(sampler: ConfiguredSampler, paths: WorkdirPaths, model_digest: str
                   ) -> ConfiguredSampler:
    """`sampler` itself, or, where its schedule is "fitted", the same method on the stored times
    of (method, nfe) (`NamedTimes` named "fitted:<digest of the stored file>", which the
    resolved settings record). Refuses a missing, unreadable or stale schedule."""
    if sampler.options.get("schedule") != FITTED:
        return sampler
    path = stored_schedule(paths, sampler.method, sampler.nfe)
    try:
        record = json.loads(path.read_text())
        times = torch.tensor(record["times"], dtype=torch.float64)
        stored_digest, stored_options = record["model_digest"], record["options"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigMismatch(f"{path} is not a readable learned schedule ({err}); run --mode "
                             f"fit_steps again") from None
    if stored_digest != model_digest:
        raise ConfigMismatch(f"{path} was learned for another model (weights {stored_digest}, "
                             f"this checkpoint's are {model_digest}): it is stale; run --mode "
                             f"fit_steps again")
    current = method_options(sampler.method, {k: v for k, v in sampler.options.items()
                                              if k != "num_steps"})
    changed = sorted(k for k in set(current) | set(stored_options)
                     if current.get(k) != stored_options.get(k))
    if changed:
        raise ConfigMismatch(f"{path} was learned with " + ", ".join(
            f"{k}={stored_options.get(k)!r}" for k in changed) + "; this run has " + ", ".join(
            f"{k}={current.get(k)!r}" for k in changed) + ": set them back or run --mode "
            "fit_steps again")
    named = NamedTimes(times, f"fitted:{settings_digest(record)}")
    return ConfiguredSampler(sampler.method, {**sampler.options, "schedule": named}, None)
