"""Checking a whole config (and the workdir) before any work starts, for `main.py`.

Every check raises `ConfigError` with one line naming the field and what is allowed, so
`main.py` can exit with that line and no traceback, having written nothing.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

import sde_lib
# ConfigError is also named here (`cli.validate.ConfigError`), where main.py and tests take it.
from cli.checks import ConfigError, _choice, _positive_int, _wrapped  # noqa: F401
from configs.default import get_default_config
from data import DATASETS, LABELED_DATASETS, SPLITS, USER_SETS, DataInfo, describe
from data.datasets import STREAMABLE
from evaluation.fid import IS_SPLITS, MIN_SAMPLES_PER_SPLIT
from evaluation.tasks import CONDITION_TASKS, MASKS, TASKS
from run.builders import build_classifier, build_score_model, data_shape
from training.hybrid_loss import TIMESTEP_SAMPLING
from training.objective import build_training_loss

NAN_POLICIES = ("stop", "skip")
PRECISION_NAMES = ("fp32", "bf16", "fp16")


def validate_finite(section, prefix: str = "config") -> None:
    """Every number in the config must be finite (an inf learning rate or a NaN β would train or
    evaluate to nonsense without a word)."""
    for name, value in section.items():
        field = f"{prefix}.{name}"
        if hasattr(value, "items"):
            validate_finite(value, field)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{field}[{i}] must be a finite number, got {item!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{field} must be a finite number, got {value!r}")


def validate_training(config) -> None:
    training, optim = config.training, config.optim
    for field in ("batch_size", "n_iters", "snapshot_freq", "snapshot_freq_for_preemption",
                  "log_freq", "eval_freq"):
        _positive_int(f"config.training.{field}", training[field], minimum=0 if field == "n_iters" else 1)
    _positive_int("config.training.num_snapshot_samples", training.num_snapshot_samples)
    _choice("config.training.nan_policy", training.get("nan_policy", "stop"), NAN_POLICIES)
    _positive_int("config.training.nan_skip_limit", training.get("nan_skip_limit", 10))
    for field, section in (("training.precision", training),
                           ("sampling.precision", config.sampling)):
        value = section.get("precision", "fp32")
        _choice(f"config.{field}", value, PRECISION_NAMES)
        if value == "fp16" and not torch.cuda.is_available():
            raise ConfigError(f"config.{field}='fp16' needs a CUDA GPU; use 'bf16' on the CPU")
    accum = training.get("grad_accum_steps", 1)
    _positive_int("config.training.grad_accum_steps", accum)
    if training.batch_size % accum:
        raise ConfigError(f"config.training.grad_accum_steps={accum} must divide "
                          f"config.training.batch_size={training.batch_size}")
    if accum > 1 and training.get("timestep_sampling", "uniform") != "uniform":
        raise ConfigError("config.training.grad_accum_steps > 1 works with "
                          "config.training.timestep_sampling='uniform' only")
    for section, flag in (("training", "compile"), ("training", "channels_last"),
                          ("training", "tf32"), ("sampling", "compile")):
        value = config[section].get(flag, False)
        if not isinstance(value, bool):
            raise ConfigError(f"config.{section}.{flag} must be True or False, got {value!r}")
    _choice("config.optim.optimizer", optim.optimizer, ["Adam"])
    if not optim.lr > 0:
        raise ConfigError(f"config.optim.lr must be > 0, got {optim.lr!r}")
    if not 0 <= optim.beta1 < 1:
        raise ConfigError(f"config.optim.beta1 must be in [0, 1), got {optim.beta1!r}")
    if not optim.eps > 0 or optim.weight_decay < 0:
        raise ConfigError("config.optim.eps must be > 0 and config.optim.weight_decay >= 0")
    _positive_int("config.optim.warmup", optim.warmup, minimum=0)
    if not 0 < config.model.ema_rate <= 1:
        raise ConfigError(f"config.model.ema_rate must be in (0, 1], got {config.model.ema_rate!r}")


def validate_eval(config, sde) -> None:
    import samplers

    ev = config.eval
    _positive_int("config.eval.batch_size", ev.batch_size)
    _positive_int("config.eval.bpd_num_examples", ev.bpd_num_examples, minimum=0)
    _positive_int("config.eval.bpd_repeats", ev.bpd_repeats)
    _positive_int("config.eval.num_samples", ev.num_samples)
    _choice("config.eval.bpd_dataset", ev.bpd_dataset, SPLITS)
    _choice("config.eval.divergence", ev.divergence, samplers.DIVERGENCES)
    if not 0 < ev.likelihood_eps < sde.T:
        raise ConfigError(f"config.eval.likelihood_eps must lie in (0, T={sde.T}), "
                          f"got {ev.likelihood_eps!r}")
    if ev.get("enable_fid", False):
        least = IS_SPLITS * MIN_SAMPLES_PER_SPLIT
        if ev.num_samples < least:
            raise ConfigError(f"config.eval.num_samples must be at least {least} with "
                              f"config.eval.enable_fid=True (the Inception Score averages "
                              f"{IS_SPLITS} splits), got {ev.num_samples}")


def validate_data(config, mode: str) -> DataInfo:
    """The data section; returns what is known of the data set (`data.describe`)."""
    data = config.data
    _choice("config.data.dataset", data.dataset, DATASETS)
    if data.dataset in USER_SETS:
        if not data.get("path"):
            raise ConfigError(f"config.data.path must name your {data.dataset!r} data (a folder "
                              f"or zip of images, or an .npz file)")
        if not 0 < data.get("test_fraction", 0.1) < 1:
            raise ConfigError(f"config.data.test_fraction must lie in (0, 1), "
                              f"got {data.test_fraction!r}")
    validate_streaming(data)
    info = _wrapped("config.data", lambda: describe(data))
    if info.is_image:
        _positive_int("config.data.image_size", data.image_size)
        _choice("config.data.num_channels", data.num_channels,
                [1, 2, 3, 4] if data.dataset in USER_SETS else [1, 3])
        if data.dataset == "CIFAR10" and not data.download and mode != "sample":
            folder = Path(data.root).expanduser() / "cifar-10-batches-py"
            if not (folder / "test_batch").exists():
                raise ConfigError(f"config.data.root: CIFAR-10 not found in {folder}; put the python "
                                  f"batches there or set config.data.download=True")
    if info.example_shape is not None:   # your own arrays: the network must fit them
        expected = data_shape(config)
        stored = info.example_shape
        if info.is_image:
            expected, stored = expected[:1], stored[:1]   # images are resized to image_size
        if tuple(stored) != tuple(expected):
            raise ConfigError(f"config.data.path holds examples of shape {info.example_shape}; "
                              f"the config expects {data_shape(config)} (set config.data.dim, "
                              f"or num_channels / image_size)")
    return info


def validate_streaming(data) -> None:
    """How your own data is read: memory or streamed, workers, bad files, size limits."""
    in_memory = data.get("in_memory", None)
    if in_memory is not None and not isinstance(in_memory, bool):
        raise ConfigError(f"config.data.in_memory must be True, False or None (by size), "
                          f"got {in_memory!r}")
    if in_memory is False and data.dataset not in STREAMABLE:
        raise ConfigError(f"config.data.in_memory=False streams only {list(STREAMABLE)}; "
                          f"config.data.dataset={data.dataset!r} is always held in memory")
    _positive_int("config.data.num_workers", data.get("num_workers", -1), minimum=-1)
    if not isinstance(data.get("skip_bad_files", False), bool):
        raise ConfigError(f"config.data.skip_bad_files must be True or False, "
                          f"got {data.skip_bad_files!r}")
    _positive_int("config.data.max_image_pixels", data.get("max_image_pixels", 1))
    _positive_int("config.data.max_file_bytes", data.get("max_file_bytes", 1))


def validate_classes(config, info: DataInfo) -> None:
    """A class-conditional model's classes against the data's: labels in 0 … num_classes − 1
    (num_classes itself is the null label of classifier-free guidance), and as many class
    folders as classes."""
    num_classes, data = config.model.get("num_classes", 0), config.data
    if not num_classes or not info.num_classes:
        return
    if data.dataset == "image_folder" and info.num_classes != num_classes:
        raise ConfigError(f"config.data.path={data.path!r} holds {info.num_classes} class "
                          f"folders but config.model.num_classes={num_classes}; set it to "
                          f"{info.num_classes}")
    if info.num_classes > num_classes:
        raise ConfigError(f"config.data: labels of {data.dataset!r} reach {info.num_classes - 1} "
                          f"but config.model.num_classes={num_classes} allows 0 … "
                          f"{num_classes - 1} (label {num_classes} is the null label); set "
                          f"config.model.num_classes={info.num_classes}")


def validate_classifier(config, sde, info: DataInfo) -> None:
    """The `classifier` section, and a data set with class labels (--mode train_classifier)."""
    from models.layers import ACTIVATIONS

    section = config.get("classifier")
    if section is None:
        raise ConfigError("config.classifier is missing; add the section of configs/default.py")
    if not info.num_classes:
        raise ConfigError(f"config.data.dataset={config.data.dataset!r} has no class labels; "
                          f"a classifier needs a labeled set, e.g. one of {LABELED_DATASETS} "
                          f"or your own with labels")
    for field in ("nf", "width", "batch_size", "log_freq", "eval_freq", "snapshot_freq"):
        _positive_int(f"config.classifier.{field}", section[field])
    for field in ("num_res_blocks", "n_iters", "warmup", "eval_num_examples", "seed"):
        _positive_int(f"config.classifier.{field}", section[field], minimum=0)
    if not section.lr > 0:
        raise ConfigError(f"config.classifier.lr must be > 0, got {section.lr!r}")
    if not 0 < section.eps < sde.T:
        raise ConfigError(f"config.classifier.eps must lie in (0, T={sde.T}), "
                          f"got {section.eps!r}")
    times = section.eval_t
    if (not isinstance(times, (list, tuple)) or not times
            or not all(isinstance(v, (int, float)) and 0 < v <= sde.T for v in times)):
        raise ConfigError(f"config.classifier.eval_t must be a non-empty tuple of times in "
                          f"(0, T={sde.T}], got {times!r}")
    if not 0 <= section.dropout < 1:
        raise ConfigError(f"config.classifier.dropout must be in [0, 1), got {section.dropout!r}")
    _choice("config.classifier.nonlinearity", section.nonlinearity, ACTIVATIONS)
    with torch.device("meta"):
        _wrapped("config.classifier", lambda: build_classifier(config, sde))


LOSSES = ("dsm", "edm", "hybrid", "vlb")
PARAMETRIZATIONS = ("noise", "score", "edm")


def validate_edm(config) -> None:
    """EDM's SDE, parametrisation and loss (Karras et al. 2022): continuous time only, and the
    loss's own fields."""
    training = config.training
    requested = training.get("parametrization")
    if requested not in (None, ""):
        _choice("config.training.parametrization", requested, PARAMETRIZATIONS)
    loss = training.get("loss", "dsm")
    for field, used in (("config.sde.name='edmsde'", config.sde.name == "edmsde"),
                        ("config.training.parametrization='edm'", requested == "edm"),
                        ("config.training.loss='edm'", loss == "edm")):
        if used and not training.continuous:
            raise ConfigError(f"{field} needs continuous time: set config.training.continuous=True")
    if requested == "edm" or loss == "edm":
        sigma_data = training.get("sigma_data", 0.5)
        if isinstance(sigma_data, bool) or not isinstance(sigma_data, (int, float)) \
                or not sigma_data > 0:
            raise ConfigError(f"config.training.sigma_data must be a number > 0, got {sigma_data!r}")
    if loss == "edm":
        if not training.get("p_std", 1.2) > 0:
            raise ConfigError(f"config.training.p_std must be > 0, got {training.p_std!r}")
        if training.likelihood_weighting or training.get("importance_sampling", False):
            raise ConfigError("config.training.likelihood_weighting and importance_sampling do not "
                              "apply to config.training.loss='edm' (its weight is λ(σ)); set them "
                              "to False")


def validate_ddpm(config, sde, info: DataInfo) -> None:
    """Learned variances, the hybrid / vlb losses and DDPM's variational bound."""
    import samplers

    training, model = config.training, config.model
    loss = training.get("loss", "dsm")
    _choice("config.training.loss", loss, LOSSES)
    learned = bool(model.get("learn_variance", False))
    chain_loss = loss in ("hybrid", "vlb")
    if chain_loss or learned:
        if config.sde.name != "vpsde" or training.continuous:
            raise ConfigError(f"config.training.loss={loss!r} / config.model.learn_variance need "
                              f"the DDPM chain: config.sde.name='vpsde' and "
                              f"config.training.continuous=False")
        if learned != chain_loss:
            raise ConfigError("config.model.learn_variance=True goes with config.training.loss in "
                              "['hybrid', 'vlb'] (the variance is trained only by the bound)")
        _choice("config.training.timestep_sampling", training.get("timestep_sampling", "uniform"),
                TIMESTEP_SAMPLING)
        if not training.get("vlb_weight", 0.001) >= 0:
            raise ConfigError(f"config.training.vlb_weight must be >= 0, "
                              f"got {training.vlb_weight!r}")
    variance = config.sampling.get("variance")
    if variance is not None:
        _choice("config.sampling.variance", variance, samplers.VARIANCES)
        if variance == "learned" and not learned:
            raise ConfigError("config.sampling.variance='learned' needs a network with "
                              "config.model.learn_variance=True")
    if config.eval.get("enable_vlb", False):
        if config.sde.name != "vpsde":
            raise ConfigError(f"config.eval.enable_vlb=True needs config.sde.name='vpsde' (the DDPM "
                              f"chain), got {config.sde.name!r}")
        _positive_int("config.eval.vlb_num_timesteps", config.eval.get("vlb_num_timesteps", 0),
                      minimum=0)
        if config.eval.vlb_num_timesteps > sde.N - 1:
            raise ConfigError(f"config.eval.vlb_num_timesteps must be <= N - 1 = {sde.N - 1} "
                              f"(0: all steps), got {config.eval.vlb_num_timesteps}")
        if not info.is_image:
            raise ConfigError(f"config.eval.enable_vlb=True needs 8-bit image data; "
                              f"config.data.dataset={config.data.dataset!r} is not")
        if not config.data.centered:
            raise ConfigError("config.eval.enable_vlb=True needs config.data.centered=True (the "
                              "DDPM bound is defined for data in [-1, 1])")


def validate_conditioning(config, mode: str, info: DataInfo) -> None:
    """Class labels, guidance and the sample-mode tasks."""
    num_classes = config.model.get("num_classes", 0)
    _positive_int("config.model.num_classes", num_classes, minimum=0)
    if num_classes and not info.num_classes:
        raise ConfigError(f"config.model.num_classes={num_classes} needs a data set with class "
                          f"labels, e.g. one of {LABELED_DATASETS}; {config.data.dataset!r} has "
                          f"none")
    validate_classes(config, info)
    if not 0 <= config.training.get("label_dropout", 0.0) <= 1:
        raise ConfigError(f"config.training.label_dropout must lie in [0, 1], "
                          f"got {config.training.label_dropout!r}")
    sampling = config.sampling
    task = sampling.get("task", "generate")
    _choice("config.sampling.task", task, TASKS)
    if task != "generate":
        if not info.is_image:
            raise ConfigError(f"config.sampling.task={task!r} works on test images; "
                              f"config.data.dataset={config.data.dataset!r} has none")
        if task == "inpaint":
            _choice("config.sampling.mask", sampling.get("mask", "right_half"), MASKS)
        if task == "colorize" and config.data.num_channels != 3:
            raise ConfigError(f"config.sampling.task='colorize' needs colour images "
                              f"(config.data.num_channels=3), got {config.data.num_channels}")
        if task == "superres":
            validate_superres(config)
    validate_condition_method(sampling, task)
    if not num_classes and sampling.get("guidance_scale", 1.0) != 1.0:
        raise ConfigError(f"config.sampling.guidance_scale={sampling.guidance_scale!r} does "
                          f"nothing on an unconditional model (config.model.num_classes=0); "
                          f"classifier guidance is config.sampling.classifier_scale")
    if not sampling.get("classifier_scale", 0.0) >= 0:
        raise ConfigError(f"config.sampling.classifier_scale must be >= 0, "
                          f"got {sampling.classifier_scale!r}")
    guided = num_classes or sampling.get("classifier_scale", 0.0) > 0
    label = sampling.get("class_label", -1)
    if label != -1 and not guided:
        raise ConfigError("config.sampling.class_label needs a class-conditional model "
                          "(config.model.num_classes > 0) or config.sampling.classifier_scale > 0")
    if guided and mode in ("sample", "eval", "train"):
        classes = num_classes or info.num_classes
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < classes:
            raise ConfigError(f"config.sampling.class_label must be -1 (classes in turn) or in "
                              f"0 … {classes - 1}, got {label!r}")


def validate_superres(config) -> None:
    """The pooling factor: an integer >= 2 that divides the image size."""
    factor = config.sampling.get("superres_factor", 2)
    _positive_int("config.sampling.superres_factor", factor, minimum=2)
    if config.data.image_size % factor:
        raise ConfigError(f"config.sampling.superres_factor={factor} must divide "
                          f"config.data.image_size={config.data.image_size}")


def validate_condition_method(sampling, task: str) -> None:
    """`sampling.condition_method` and its options: checked for the tasks that condition, and
    refused where they would be ignored (another task, or an option of another method)."""
    import samplers
    from samplers.config import config_options
    from samplers.options import SCHEMA, field_of, takers

    method = sampling.get("condition_method", "replacement")
    if task not in CONDITION_TASKS:
        if method != "replacement":
            raise ConfigError(f"config.sampling.condition_method={method!r} applies to the tasks "
                              f"{list(CONDITION_TASKS)}, not config.sampling.task={task!r}")
        method = None
    else:
        _choice("config.sampling.condition_method", method, samplers.CONDITION_METHODS)
    declared = {m: SCHEMA[f"condition:{m}"] for m in samplers.CONDITION_METHODS}
    own = {field_of(n, o): n for n, o in declared[method].items()} if method else {}
    # Fields that only condition methods take (None: the method's default).
    exclusive = {field_of(n, o) for opts in declared.values() for n, o in opts.items()} \
        - samplers.config.sampler_fields()
    for field in sorted(exclusive - set(own)):
        value = sampling.get(field)
        if value is not None:
            where = (f"condition_method={method!r}" if method else
                     f"task={task!r}, which does not condition")
            users = [t.split(":")[1] for t in takers(field)]
            raise ConfigError(f"config.sampling.{field}={value!r} does not apply ({where}); it is "
                              f"an option of condition_method {users} in the tasks "
                              f"{list(CONDITION_TASKS)}")
    if method is None:
        return
    options = config_options(sampling, set(own.values()))
    try:
        samplers.check_condition_options(method, options, "config.sampling.", by_field=True)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def validate_snapshot_sampler(config) -> None:
    """`training.snapshot_sampler` (a sampling method or "sampling") and its steps, checked by
    the sampling section's own checks (`samplers.build_sampler`)."""
    import samplers
    from evaluation.snapshots import SAME_AS_SAMPLING, snapshot_sampling

    training = config.training
    method = training.get("snapshot_sampler", "dpm_solver")
    _choice("config.training.snapshot_sampler", method, [*samplers.SAMPLERS, SAME_AS_SAMPLING])
    steps = training.get("snapshot_num_steps", 0)
    _positive_int("config.training.snapshot_num_steps", steps, minimum=0)
    if steps and method == SAME_AS_SAMPLING:
        raise ConfigError(f"config.training.snapshot_num_steps={steps} does not apply to "
                          f"config.training.snapshot_sampler='sampling' (config.sampling's own "
                          f"steps); set it to 0 or name a method")
    _wrapped(f"config.training.snapshot_sampler={method!r}",
             lambda: samplers.build_sampler(snapshot_sampling(config)))
    fd = training.get("snapshot_fd", False)
    if not isinstance(fd, bool):
        raise ConfigError(f"config.training.snapshot_fd must be True or False, got {fd!r}")
    if fd and not (describe(config.data).is_image and config.data.image_size < 32):
        raise ConfigError("config.training.snapshot_fd=True needs images below 32x32 (fd; larger "
                          "images get FID from --mode eval with config.eval.enable_fid)")


def validate_workdir(workdir) -> None:
    """The workdir, or its nearest existing parent, must be a writable directory."""
    path = Path(workdir).expanduser().absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: {existing} is not a writable directory")


def validate(config, mode: str, workdir) -> None:
    """All checks for `mode` ("train", "eval", "sample" or "train_classifier"); raises
    ConfigError."""
    import samplers

    validate_workdir(workdir)
    validate_finite(config)
    sde = _wrapped("config.sde", lambda: sde_lib.build_sde(config.sde))
    info = validate_data(config, mode)
    validate_edm(config)   # before the model is built: it names the fields, not the builder
    with torch.device("meta"):  # builds the network without allocating its weights
        _wrapped("config.model", lambda: build_score_model(config, sde))
    validate_training(config)
    validate_eval(config, sde)
    validate_ddpm(config, sde, info)
    validate_conditioning(config, mode, info)
    _wrapped("config.training", lambda: build_training_loss(config, sde))
    baseline = get_default_config().sampling   # fields of other methods may keep these values
    _wrapped("config.sampling", lambda: samplers.build_sampler(config.sampling, baseline))
    validate_snapshot_sampler(config)
    if not 0 < config.sampling.eps < sde.T:
        raise ConfigError(f"config.sampling.eps must lie in (0, T={sde.T}), got {config.sampling.eps!r}")
    from cli.fit_checks import validate_fit_steps
    validate_fit_steps(config, mode, workdir)
    if mode == "frontier":
        from cli.frontier_check import validate_frontier
        validate_frontier(config)
    if mode == "train_classifier":
        validate_classifier(config, sde, info)
    from cli.distill_checks import validate_distill
    validate_distill(config, mode, workdir, sde)
