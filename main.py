"""score-sde command line.

    python main.py --config configs/vp_digits.py --workdir runs/digits --mode train
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode eval
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode sample \
        --config.sampling.method=ode
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode train_classifier
    python main.py --workdir runs/digits --mode fit_steps --config.sampling.method=dpm_solver \
        --config.sampling.nfe=5     # then sample with --config.sampling.time_schedule=fitted

Every config field can be overridden as --config.<section>.<field>=value. The whole config
and the workdir are checked before any work starts. Exit status: 0 done; 1 the run failed;
2 bad input (a config field, a workdir in use or holding another model, a path leading out of
it), before any work; 3 stopped by SIGTERM / SIGINT / SIGUSR1 after saving its progress (rerun
the same command to resume); 130 aborted by a second Ctrl-C. Errors are one line;
--verbose (or SCORE_SDE_VERBOSE=1) adds the traceback.
"""
import errno
import logging
import os
import re
from pathlib import Path
import sys
import traceback
from typing import List, Tuple

from absl import flags
from ml_collections import config_flags

MODES = ["train", "eval", "sample", "train_classifier", "fid_stats", "show_config", "distill",
         "fit_steps", "frontier"]


def _define_flags(argv: List[str]) -> flags.FlagValues:
    from cli.config_source import check_config_path, flag_value, stored_workdir_config

    check_config_path(flag_value(argv, "config"))
    flag_values = flags.FlagValues()
    stored = stored_workdir_config(argv)
    if stored is None and flag_value(argv, "mode") == "distill":
        from cli.distill_source import distill_config
        stored = distill_config(argv)   # a new student: the teacher's config
    if stored is None and flag_value(argv, "config") is None and any(
            arg.startswith("--config.") for arg in argv[1:]):
        raise ValueError(NO_CONFIG)      # overrides of no config
    # config_flags finds the --config.<field> overrides by scanning the argv it is given.
    if stored is None:
        config_flags.DEFINE_config_file(
            "config", None, "Experiment config file (configs/*.py); optional on a workdir that "
            "has a config.json (its first run's config).", flag_values=flag_values,
            lock_config=True, sys_argv=argv)
    else:
        config_flags.DEFINE_config_dict("config", stored, "The workdir's stored config.",
                                        flag_values=flag_values, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples, eval results, logs.",
                        flag_values=flag_values)
    flags.DEFINE_enum("mode", "train", MODES, "What to run (the modes above).",
                      flag_values=flag_values)
    flags.DEFINE_string("eval_folder", "eval", "Sub-directory of workdir for eval results.",
                        flag_values=flag_values)
    flags.DEFINE_integer("threads", 0, "Torch CPU threads per process (0: the cores this "
                         "process may use, shared among the job's processes and idle cores; "
                         "OMP_NUM_THREADS also sets it).", flag_values=flag_values)
    flags.DEFINE_string("device", "", "Where to compute: cpu, cuda or cuda:N (default: CUDA "
                        "when available, else the CPU).", flag_values=flag_values)
    flags.DEFINE_bool("verbose", False, "Print the traceback of an error (also: "
                      "SCORE_SDE_VERBOSE=1).", flag_values=flag_values)
    return flag_values


def _one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined); a config field's typo
    becomes "unknown config field 'x': did you mean …"."""
    inner = err   # config_flags wraps ConfigDict's KeyError in an AttributeError
    while isinstance(inner, (KeyError, AttributeError)) and inner.args \
            and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    keyed = isinstance(inner, (KeyError, AttributeError)) and inner.args
    text = str(inner.args[0]) if keyed else str(inner)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if keyed and len(lines) == 2 and lines[1].startswith("Did you mean"):
        return f"unknown config field {lines[0]}: d{lines[1][1:]}"
    if isinstance(inner, KeyError) and len(lines) == 1:
        return f"unknown config field {lines[0]} (this config has no such field)"
    boolean = BOOLEAN_FLAG.match(text)
    if boolean:
        return f"{boolean['field']} must be True or False, got {boolean['value']!r}"
    return "; ".join(lines) or type(err).__name__


# absl's message for a boolean config field given another word.
BOOLEAN_FLAG = re.compile(r"flag --(?P<field>config\.[\w.]+)=(?P<value>.*): "
                          r"\('Non-boolean argument to boolean flag'")


BATCH_FIELD = {"train": "config.training.batch_size", "eval": "config.eval.batch_size",
               "sample": "config.eval.batch_size", "frontier": "config.eval.batch_size",
               "train_classifier": "config.classifier.batch_size"}


def _run_mode(mode: str, config, workdir: str, eval_folder: str, info, stop) -> None:
    """Run one mode; prints its one-line summary on rank 0."""
    if mode == "train":
        from evaluation.modes import snapshot_sampler
        from training.train import train
        snapshots = snapshot_sampler(config, workdir, stop if info.world_size == 1 else None) \
            if config.training.snapshot_sampling else None
        state = train(config, workdir, info, on_snapshot=snapshots, stop=stop)
        if info.is_main:
            print(f"trained to step {state.step} of {config.training.n_iters}; checkpoints in "
                  f"{Path(workdir) / 'checkpoints'}")
    elif mode == "train_classifier":
        from training.classifier import train_classifier
        metrics = train_classifier(config, workdir, info, stop=stop).metrics
        if info.is_main:
            print("test accuracy at t: " + " ".join(
                f"{t}={acc:.4f}" for t, acc in metrics["accuracy"].items()))
    elif mode == "eval":
        from evaluation.modes import run_eval
        metrics = run_eval(config, workdir, eval_folder, info, stop=stop)
        if info.is_main:
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in metrics.items()))
    elif mode == "distill":
        _run_distill(config, workdir, info, stop)
    elif mode == "fit_steps":
        _fit_steps(config, workdir, info, stop)
    elif mode == "frontier":
        _run_frontier(config, workdir, info, stop)
    elif mode == "fid_stats":
        from evaluation.modes import run_fid_stats
        if info.is_main:
            print(f"FID statistics in {run_fid_stats(config, workdir, eval_folder)}")
    else:
        from evaluation.modes import run_sample
        run = run_sample(config, workdir, info, stop=stop)
        if info.is_main:
            nfe = sorted(set(run.nfe)) or [0]
            per_batch = nfe[0] if len(nfe) == 1 else f"{nfe[0]}–{nfe[-1]}"
            print(f"samples written to {run.path}: {run.num_samples} samples, {per_batch} score "
                  f"evaluations per batch ({sum(run.nfe)} in all), {run.seconds:.1f} s")


def _run_distill(config, workdir: str, info, stop) -> None:
    """`--mode distill`: train the consistency student (`training.distill`)."""
    import time

    from cli.distill_source import teacher_config
    from training.distill import distill
    start = time.perf_counter()
    state = distill(config, workdir, teacher_config(config.distill.teacher), info, stop=stop)
    if info.is_main:
        print(f"distilled to step {state.step} of {config.distill.n_iters} "
              f"({config.distill.method}) in {time.perf_counter() - start:.1f} s; sample with "
              f"--workdir {workdir} --mode sample (sampling.method='consistency')")


def _fit_steps(config, workdir: str, info, stop) -> None:
    """`--mode fit_steps`: learn and store the step times of sampling.method at sampling.nfe."""
    from evaluation.fitted_steps import run_fit_steps
    from run.paths import WorkdirPaths
    record = run_fit_steps(config, workdir, info, stop=stop)
    if info.is_main:
        path = WorkdirPaths(workdir).fitted_schedule(record["method"], record["nfe"])
        print(f"learned {record['method']} times at nfe={record['nfe']} in {path}: RMS to the "
              f"converged flow {record['rms_default']:.4g} ({record['baseline_schedule']}) -> "
              f"{record['rms_learned']:.4g} on {record['settings']['num_holdout'] or 'the'} "
              f"held-out pairs, {record['wall_seconds']:.1f} s")


def _run_frontier(config, workdir: str, info, stop) -> None:
    """`--mode frontier`: the three files, and the best method per budget printed."""
    from evaluation.frontier_mode import run_frontier
    from evaluation.frontier_report import best_lines
    record = run_frontier(config, workdir, info, stop=stop)
    if info.is_main:
        print("\n".join(best_lines(record)))
        print(f"frontier written to {Path(workdir) / 'frontier'} (frontier.json, frontier.md, "
              f"frontier.png)")


def _classify(err: BaseException, mode: str) -> Tuple[int, str]:
    """(exit status, one-line message) for an error that ended a run."""
    from cli.validate import ConfigError
    from data.errors import DataInputError
    from evaluation.fid import InceptionError
    from run.checkpoint import CheckpointFormatError
    from run.files import OutsideWorkdirError
    from run.lock import WorkdirLocked
    from run.preemption import EXIT_PREEMPTED, Preempted
    from run.stored_config import ConfigMismatch

    if isinstance(err, KeyboardInterrupt):
        return 130, "aborted by a second interrupt; the last checkpoint is intact"
    if isinstance(err, Preempted):
        return EXIT_PREEMPTED, f"stopped: {_one_line(err)}"
    if isinstance(err, (ConfigError, ConfigMismatch, WorkdirLocked, OutsideWorkdirError,
                        CheckpointFormatError, InceptionError, DataInputError)):
        return 2, f"error: {_one_line(err)}"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1, (f"error: no space left on the device ({_one_line(err)}); every file written "
                   f"before is intact; free space and rerun to continue")
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        field = BATCH_FIELD.get(mode)   # fid_stats: the Inception network's fixed batches
        advice = (f"lower {field} or use a smaller model" if field else
                  "free memory (other processes, a smaller data set) and rerun")
        return 1, f"error: out of memory ({_one_line(err)}); {advice}"
    return 1, f"error: {_one_line(err)}"


def _main(flag_values, config) -> None:
    """Validate, open the workdir and run the mode (raises what `_classify` reports)."""
    from cli.device import check_device
    from cli.validate import validate
    from run.distributed import barrier, init_distributed, shutdown
    from run.session import open_workdir

    mode, workdir = flag_values.mode, flag_values.workdir
    validate(config, mode, workdir)
    device = check_device(flag_values.device, int(os.environ.get("WORLD_SIZE", "1")), config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    info = init_distributed(device)  # world size 1 unless launched by torchrun
    try:
        with open_workdir(config, workdir, mode, info, flag_values.eval_folder) as session:
            _run_mode(mode, config, str(session.paths.root), session.paths.eval_folder, info,
                      session.stop)
            barrier(info)  # no rank tears the process group down while another still uses it
    finally:
        shutdown(info)


NO_CONFIG = ("--config is required (a configs/*.py file) unless --workdir names a workdir "
             "that has a config.json; see --help")
# What parsing the flags and loading the config may raise: a one-line error, exit 2.
FLAG_ERRORS = (flags.Error, ValueError, TypeError, AttributeError, KeyError, OSError, SyntaxError)


def run(argv: List[str]) -> int:
    """Parse `argv` (argv[0] is the program), validate, run the mode; returns the exit status."""
    from cli.config_source import config_file_failure, flag_value
    from cli.help import HELP_FLAGS, show_config, usage

    try:
        flag_values = _define_flags(argv)
    except FLAG_ERRORS as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(usage(flag_values))
        return 0
    try:
        flag_values(argv)
        config = flag_values.config
        if config is None:
            raise ValueError(NO_CONFIG)
        config.keys()  # the config file loads lazily: surface its errors here
        if flag_values.mode != "show_config" and not flag_values.workdir:
            raise ValueError("--workdir is required; see --help")
    except (Exception, SystemExit) as err:   # noqa: BLE001 — a flag, or the config file's code
        flag_error = isinstance(err, FLAG_ERRORS)
        print(f"error: {_one_line(err)}" if flag_error else
              config_file_failure(err, flag_value(argv, "config")), file=sys.stderr)
        if "--verbose" in argv or os.environ.get("SCORE_SDE_VERBOSE", "") not in ("", "0"):
            traceback.print_exc()
        return 2
    if flag_values.mode == "show_config":
        print(show_config(config))
        return 0
    from cli.threads import set_threads
    import torch

    threads_before = torch.get_num_threads()
    set_threads(flag_values.threads)
    try:
        _main(flag_values, config)
    except (Exception, KeyboardInterrupt) as err:   # noqa: BLE001 — every error is one line
        status, message = _classify(err, flag_values.mode)
        print(message, file=sys.stderr)
        if flag_values.verbose or os.environ.get("SCORE_SDE_VERBOSE", "") not in ("", "0"):
            traceback.print_exc()
        return status
    finally:
        torch.set_num_threads(threads_before)   # main.run in a test process leaves it as it was
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
