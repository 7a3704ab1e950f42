"""Up-front checks of the `distill` section and of consistency sampling (`cli.validate`)."""
from __future__ import annotations

from pathlib import Path

from cli.distill_source import TEACHER_FIELD, has_checkpoint, teacher_config
from run.builders import is_student
from training.consistency_loss import METHODS, METRICS, SOLVERS

CONSISTENCY = "consistency"
NOT_A_STUDENT = ("config.{field}='consistency' needs a consistency student (a workdir made by "
                 "--mode distill); this model is not one: use another sampling method")


def _fail(message: str):
    from cli.checks import ConfigError
    raise ConfigError(message)


def check_section(distill, sde) -> None:
    """Each field of `config.distill` in its range (one line naming the field)."""
    choices = {"method": METHODS, "loss": METRICS, "solver": SOLVERS}
    for name, allowed in choices.items():
        if distill[name] not in allowed:
            _fail(f"config.distill.{name}={distill[name]!r} is not allowed; expected one of "
                  f"{sorted(allowed)}")
    for name, lowest in (("n_iters", 1), ("num_scales", 2), ("ect_stages", 0)):
        value = distill[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            _fail(f"config.distill.{name} must be an integer >= {lowest}, got {value!r}")
    if not 0 <= distill.ema_rate < 1:
        _fail(f"config.distill.ema_rate must lie in [0, 1), got {distill.ema_rate!r}")
    if distill.lr is not None and not distill.lr > 0:
        _fail(f"config.distill.lr must be > 0, got {distill.lr!r}")
    if not distill.p_std > 0:
        _fail(f"config.distill.p_std must be > 0, got {distill.p_std!r}")
    if not 0 < distill.eps < sde.T:
        _fail(f"config.distill.eps must lie in (0, T={sde.T}), got {distill.eps!r}")


def check_teacher(config, workdir) -> None:
    """The teacher is a trained workdir of a diffusion model, other than the student's."""
    teacher = config.distill.teacher
    if not teacher:
        _fail(f"--mode distill needs {TEACHER_FIELD}=TEACHER_WORKDIR (a trained workdir)")
    if not config.distill.teacher_digest:
        _fail(f"--workdir {workdir} holds a model that is not a consistency student; give "
              f"--mode distill a new --workdir")
    try:
        teacher_config(teacher)
    except ValueError as err:
        _fail(str(err))
    if not has_checkpoint(teacher):
        _fail(f"{TEACHER_FIELD}={teacher}: no checkpoint there; train the teacher first")
    if Path(teacher).expanduser().resolve() == Path(workdir).expanduser().resolve():
        _fail(f"{TEACHER_FIELD}={teacher} is the student's own --workdir; give the student "
              f"another one")


def validate_distill(config, mode: str, workdir, sde) -> None:
    """`--mode distill` needs a student config with a trained teacher; consistency sampling
    (also for the snapshot grids) needs a student whose `distill.eps` it samples down to."""
    student = is_student(config)
    if "distill" in config:
        check_section(config.distill, sde)
    if mode == "distill":
        check_teacher(config, workdir)
    uses = [field for field, value in (("sampling.method", config.sampling.method),
                                       ("training.snapshot_sampler",
                                        config.training.get("snapshot_sampler")))
            if value == CONSISTENCY]
    if uses and not student:
        _fail(NOT_A_STUDENT.format(field=uses[0]))
    if student and config.sampling.method == CONSISTENCY \
            and config.sampling.eps != config.distill.eps:
        _fail(f"config.sampling.eps={config.sampling.eps!r} must equal the student's "
              f"config.distill.eps={config.distill.eps!r} for consistency sampling")
