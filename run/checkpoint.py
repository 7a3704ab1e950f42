"""Crash-safe checkpoints inside a workdir, and finding the one to resume from.

Every write goes through `run.files.atomic_write` (temporary file, fsync, rename), so a kill at
any moment leaves the old file or the new one. A checkpoint holds only tensors and plain Python
values, so it loads with `torch.load(weights_only=True)`; nothing in a checkpoint file is ever
executed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from models.checkpoint import FORMAT, safe_load
from run.files import atomic_write
from run.paths import WorkdirPaths

# Formats this version reads: its own score-model checkpoints (training and `models.convert`).
KNOWN_FORMATS = (FORMAT,)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (corrupt, truncated, or holding unsafe objects)."""


class CheckpointFormatError(ValueError):
    """A checkpoint of a format this version does not know (bad input: exit 2)."""


class NoReadableCheckpoint(CheckpointFormatError):
    """The workdir holds checkpoints but none of them is readable (bad input: exit 2); a run
    never starts afresh over them."""


def save_checkpoint(path, state: Dict[str, Any], root: Optional[Path] = None) -> None:
    """Write `state` to `path` atomically; with `root`, only inside that workdir."""
    atomic_write(path, lambda f: torch.save(state, f), root)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Load a checkpoint with `models.checkpoint.safe_load` (weights only); failures name the file."""
    path = Path(path)
    try:
        state = safe_load(path, map_location=map_location)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as err:   # noqa: BLE001 — torch.load fails in many ways on a bad file
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if not isinstance(err, ValueError):   # e.g. the unpickler's KeyError on a text file
            first_line = f"{type(err).__name__} {first_line}".strip()
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or unsafe to load: "
                              f"{first_line}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict of states")
    return state


def check_format(state: Dict[str, Any], path) -> None:
    """Refuse a score-model checkpoint of a format this version does not know."""
    found = state.get("format")
    if found not in KNOWN_FORMATS:
        raise CheckpointFormatError(f"checkpoint {path} has format {found!r}; this version reads "
                                    f"{list(KNOWN_FORMATS)} (a newer score-sde wrote it?)")


def load_latest(paths: WorkdirPaths, map_location="cpu") -> Optional[Tuple[Path, Dict[str, Any]]]:
    """(path, state) of the checkpoint to resume or evaluate, or None if the workdir has none.

    The preemption checkpoint, which training rewrites at every snapshot; without it (deleted,
    or unreadable) the newest readable numbered snapshot. Unreadable files are skipped with a
    warning, never deleted; when none is readable, `NoReadableCheckpoint` names each file and
    why (a run never restarts at step 0 over checkpoints it could not read).
    """
    candidates = [paths.preemption] if paths.preemption.exists() else []
    candidates += [path for _, path in paths.snapshot_steps()]
    reasons = []
    for path in candidates:
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as err:
            logging.warning("skipping %s", err)
            text = str(err)
            reasons.append(text if len(text) <= 200 else text[:197] + "...")
    if reasons:
        raise NoReadableCheckpoint(
            f"none of the {len(reasons)} checkpoints of {paths.root} is readable ("
            f"{'; '.join(reasons)}); restore one, or move them out of the workdir to start afresh")
    return None


def latest_checkpoint(paths: WorkdirPaths) -> Optional[Path]:
    """The preemption checkpoint if it exists, else the newest numbered snapshot, or None."""
    if paths.preemption.exists():
        return paths.preemption
    snapshots = paths.snapshot_steps()
    return snapshots[0][1] if snapshots else None
