"""A consistency student's config, made from its teacher workdir's (`--mode distill`).

`python main.py --workdir STUDENT --mode distill --config.distill.teacher=TEACHER` needs no
--config: the student's first run takes the teacher's stored config (`config.json`), records the
teacher's EMA weights' digest in `distill.teacher_digest`, and samples by default with
`sampling.method="consistency"` (the other sampling fields at their defaults; `sampling.eps`
= `distill.eps`). The overrides on the command line apply on top; later runs read the
student's own config.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import ml_collections

from cli.config_source import config_from_stored, flag_value
from configs.default import get_default_config
from run.stored_config import read_stored
from run.workdir import expand_workdir

TEACHER_FIELD = "config.distill.teacher"


class TeacherError(ValueError):
    """The teacher workdir is missing, untrained, or itself a student (exit 2)."""


def teacher_config(teacher: str) -> ml_collections.ConfigDict:
    """The teacher workdir's stored config; TeacherError naming it when it has none or is a
    student itself."""
    path = expand_workdir(teacher) / "config.json"
    if not path.is_file():
        raise TeacherError(f"{TEACHER_FIELD}={teacher}: no trained workdir there (no "
                           f"config.json); train the teacher first with --mode train")
    config = config_from_stored(read_stored(path), str(path))
    if config.distill.teacher:
        raise TeacherError(f"{TEACHER_FIELD}={teacher} is itself a consistency student; name "
                           f"the workdir of a trained diffusion model")
    return config


def has_checkpoint(workdir) -> bool:
    """Whether `workdir` holds a training checkpoint (a snapshot or the preemption one)."""
    root = expand_workdir(workdir)
    return any((root / folder).is_dir() and any((root / folder).glob("*.pth"))
               for folder in ("checkpoints", "checkpoints-meta"))


def student_config(teacher: str) -> ml_collections.ConfigDict:
    """The config of a new student of `teacher` (see the module docstring)."""
    import torch

    from run.loading import load_ema_model
    from run.progress import weights_digest

    config = teacher_config(teacher)
    if not has_checkpoint(teacher):
        raise TeacherError(f"{TEACHER_FIELD}={teacher}: no checkpoint there; train the teacher "
                           f"first with --mode train")
    from run.checkpoint import CheckpointError
    try:
        model, _, _ = load_ema_model(config, teacher, torch.device("cpu"))
    except (CheckpointError, RuntimeError) as err:
        raise TeacherError(f"{TEACHER_FIELD}={teacher}: {str(err).splitlines()[0]}") from None
    defaults = get_default_config()
    sampling = defaults.sampling
    sampling.method = "consistency"
    with config.unlocked():
        config.distill = defaults.distill    # not the teacher's (a teacher is no student)
        config.distill.teacher = str(teacher)
        config.distill.teacher_digest = weights_digest(model.net)
        config.sampling = sampling
        config.sampling.eps = config.distill.eps
        config.training.snapshot_sampling = False
    return config


def distill_config(argv: List[str]) -> ml_collections.ConfigDict:
    """The student's config for a first `--mode distill` run given `argv`; ValueError (one
    line) for a --config file or a missing teacher."""
    if flag_value(argv, "config") is not None:
        raise ValueError("--mode distill takes its config from the teacher workdir; drop "
                         "--config and set --config.distill.teacher=TEACHER_WORKDIR")
    teacher = flag_value(argv, TEACHER_FIELD)
    if not teacher:
        raise ValueError(f"--mode distill needs --{TEACHER_FIELD}=TEACHER_WORKDIR (a trained "
                         f"workdir of this project)")
    return student_config(teacher)
