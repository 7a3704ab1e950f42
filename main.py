"""score-sde command line.

    python main.py --config configs/vp_digits.py --workdir runs/digits --mode train
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode eval
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode sample \
        --config.sampling.method=ode
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode train_classifier

Every config field can be overridden as --config.<section>.<field>=value. The whole config
and the workdir are checked before any work starts; a bad value exits with status 2 and one
line naming the field, a failure during the run with status 1.
"""
import logging
import sys
from typing import List

from absl import flags
from ml_collections import config_flags

MODES = ["train", "eval", "sample", "train_classifier"]


def _define_flags(argv: List[str]) -> flags.FlagValues:
    flag_values = flags.FlagValues()
    # config_flags finds the --config.<field> overrides by scanning the argv it is given.
    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                    flag_values=flag_values, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples, eval results, logs.",
                        flag_values=flag_values)
    flags.DEFINE_enum("mode", "train", MODES, "What to run.", flag_values=flag_values)
    flags.DEFINE_string("eval_folder", "eval", "Sub-directory of workdir for eval results.",
                        flag_values=flag_values)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
    return flag_values


def _one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def _run_mode(mode: str, config, workdir: str, eval_folder: str, info) -> None:
    """Run one mode; prints its one-line summary on rank 0."""
    if mode == "train":
        from evaluation.modes import snapshot_sampler
        from training.train import train
        snapshots = snapshot_sampler(config, workdir) if config.training.snapshot_sampling else None
        train(config, workdir, info, on_snapshot=snapshots)
    elif mode == "train_classifier":
        from training.classifier import train_classifier
        metrics = train_classifier(config, workdir, info).metrics
        if info.is_main:
            print("test accuracy at t: " + " ".join(
                f"{t}={acc:.4f}" for t, acc in metrics["accuracy"].items()))
    elif mode == "eval":
        from evaluation.modes import run_eval
        metrics = run_eval(config, workdir, eval_folder, info)
        if info.is_main:
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in metrics.items()))
    else:
        from evaluation.modes import run_sample
        path = run_sample(config, workdir, info)
        if info.is_main:
            print(f"samples written to {path}")


def run(argv: List[str]) -> int:
    """Parse `argv` (argv[0] is the program), validate, run the mode; returns the exit status."""
    flag_values = _define_flags(argv)
    try:
        flag_values(argv)
        config = flag_values.config
        config.keys()  # the config file loads lazily: surface its errors here
    except (flags.Error, ValueError, TypeError, AttributeError, KeyError, OSError, SyntaxError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    from cli.validate import ConfigError, validate
    from data import DatasetError
    from evaluation.fid import InceptionError
    from run.checkpoint import CheckpointError
    from training.train import NonFiniteLossError

    try:
        validate(config, flag_values.mode, flag_values.workdir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from run.distributed import barrier, init_distributed, shutdown

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    info = init_distributed()  # world size 1 unless launched by torchrun
    try:
        _run_mode(flag_values.mode, config, flag_values.workdir, flag_values.eval_folder, info)
        barrier(info)  # no rank tears the process group down while another still uses it
    except (ValueError, DatasetError, CheckpointError, InceptionError, NonFiniteLossError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    finally:
        shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
