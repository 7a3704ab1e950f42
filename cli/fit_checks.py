"""Checks of `--mode fit_steps` and of `sampling.time_schedule = "fitted"`, before any work."""
from __future__ import annotations

import math

from cli.checks import ConfigError, _positive_int
from evaluation.fitted_steps import SETTINGS, fit_settings, stored_schedule
from run.paths import WorkdirPaths
from run.stored_config import ConfigMismatch
from run.workdir import expand_workdir
from samplers.learned_steps import fittable_methods
from samplers.options import FITTED

INTEGERS = {"num_samples": 1, "num_holdout": 0, "n_iters": 1, "seed": 0}


def validate_fit_section(config) -> None:
    """The `fit_steps` section: counts are integers, rates and tolerances positive numbers."""
    settings = fit_settings(config)
    for name in SETTINGS:
        field, value = f"config.fit_steps.{name}", settings[name]
        if name in INTEGERS:
            _positive_int(field, value, minimum=INTEGERS[name])
        elif isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{field} must be a finite number > 0, got {value!r}")


def validate_fit_steps(config, mode: str, workdir) -> None:
    """`--mode fit_steps`: a fittable method at a budget `sampling.nfe`, on an unconditional
    model; `time_schedule = "fitted"`: a budget, and a stored schedule for it where samples are
    drawn (sample; eval with sampling; train's snapshots when they sample as configured)."""
    validate_fit_section(config)
    sampling = config.sampling
    method, nfe = sampling.get("method", "pc"), sampling.get("nfe", None)
    fitted = sampling.get("time_schedule", None) == FITTED
    if mode == "fit_steps":
        if method not in fittable_methods():
            raise ConfigError(f"config.sampling.method={method!r} has no learnable time steps; "
                              f"--mode fit_steps takes one of {fittable_methods()}")
        if nfe is None:
            raise ConfigError("--mode fit_steps needs a budget: set config.sampling.nfe (an "
                              "integer >= 1, e.g. 5)")
        if fitted:
            raise ConfigError("config.sampling.time_schedule='fitted' does not apply to --mode "
                              "fit_steps (it is the baseline the fit starts from and is "
                              "compared with); leave it unset or name a schedule")
        if config.model.get("num_classes", 0):
            raise ConfigError("--mode fit_steps needs an unconditional model "
                              "(config.model.num_classes=0)")
        return
    snapshots = (mode == "train" and config.training.get("snapshot_sampling", False)
                 and config.training.get("snapshot_sampler", "") == "sampling")
    draws = mode == "sample" or (mode == "eval" and config.eval.enable_sampling) or snapshots
    if fitted and draws:
        if mode == "train":
            raise ConfigError("config.sampling.time_schedule='fitted' is learned for a trained "
                              "model; training's snapshots (config.training.snapshot_sampler="
                              "'sampling') cannot use it: name a snapshot sampler")
        try:
            stored_schedule(WorkdirPaths(expand_workdir(workdir)), method, nfe)
        except ConfigMismatch as err:
            raise ConfigError(str(err)) from None
