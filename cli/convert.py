"""`python -m models.convert`: a score_sde_pytorch checkpoint into this project's checkpoint
file, or into a workdir that `main.py --workdir DST --mode eval|sample` uses without --config.

A workdir destination is written like every other entry point writes one: through the workdir
session (`run.session`: paths resolved and refused when they lead out, the lock taken without
following links, stale temporaries swept), and only where no model is yet: a workdir holding a
config or checkpoints is refused (exit 2), so a converted model never mixes with a trained
one. `--force` first deletes what the project wrote there (config, checkpoints, samples, eval
results, logs, classifier) and converts as into an empty workdir; other files stay.
Exit status: 0 done; 1 a write failed; 2 bad input (one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from models.convert import convert, converted
from run.checkpoint import save_checkpoint
from run.distributed import single_process
from run.files import OutsideWorkdirError, write_json
from run.lock import WorkdirLocked
from run.session import open_workdir
from run.workdir import clear_outputs, model_files

BAD_INPUT = (ValueError, FileNotFoundError, KeyError, TypeError, WorkdirLocked,
             OutsideWorkdirError)


class WorkdirHoldsModel(ValueError):
    """The destination workdir already holds a config or checkpoints (bad input: exit 2)."""


def convert_workdir(src, workdir, reference_config, use_ema: bool = True,
                    force: bool = False) -> Path:
    """Convert `src` into `workdir` (its preemption checkpoint and `config.json`) under the
    workdir's lock; see the module docstring. Returns the checkpoint's path."""
    state, stored = converted(src, reference_config, use_ema)   # read and check all first
    with open_workdir(None, workdir, "convert", single_process("cpu")) as session:
        paths = session.paths
        held = model_files(paths)
        if held and not force:
            raise WorkdirHoldsModel(
                f"{paths.root} already holds a model ({', '.join(held[:4])}"
                f"{', ...' if len(held) > 4 else ''}); convert into a new or empty workdir, or "
                f"pass --force to delete its config, checkpoints and results first")
        if force:
            removed = clear_outputs(paths)
            if removed:
                print(f"--force: removed {', '.join(removed)} from {paths.root}")
        write_json(paths.config, stored, root=paths.root)
        save_checkpoint(paths.preemption, state, root=paths.root)
        return paths.preemption


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status."""
    from models import convert as library

    parser = argparse.ArgumentParser(prog="python -m models.convert",
                                     description=library.__doc__.split("\n\n")[0])
    parser.add_argument("src", help="score_sde_pytorch checkpoint (.pth)")
    parser.add_argument("dst", help="a workdir to create, or a .pth checkpoint file")
    parser.add_argument("--reference-config", required=True,
                        help="the reference config as JSON (config.to_dict())")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema",
                        help="EMA weights (default, what the paper evaluates) or raw weights")
    parser.add_argument("--force", action="store_true",
                        help="into a workdir that holds a model: delete its config, checkpoints "
                             "and results first, then convert as into an empty workdir")
    args = parser.parse_args(argv)
    use_ema = args.weights == "ema"
    try:
        if Path(args.dst).suffix == ".pth":
            path = convert(args.src, args.dst, args.reference_config, use_ema=use_ema)
        else:
            path = convert_workdir(args.src, args.dst, args.reference_config, use_ema=use_ema,
                                   force=args.force)
    except BAD_INPUT as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {args.dst}: {_one_line(error)}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({args.weights} weights of {args.src})")
    return 0


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__
