"""Crash-safe checkpoints: written to a temporary file, fsynced, then atomically renamed.

A checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`; nothing in a checkpoint file is ever executed.
Workdir layout: `checkpoints/checkpoint_<k>.pth` (every `snapshot_freq` steps, k = step /
snapshot_freq) and `checkpoints-meta/checkpoint.pth` (the preemption checkpoint).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from models.checkpoint import atomic_save, safe_load


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (corrupt, truncated, or holding unsafe objects)."""


def save_checkpoint(path, state: Dict[str, Any]) -> None:
    """Write `state` to `path` atomically (`models.checkpoint.atomic_save`)."""
    atomic_save(state, path)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Load a checkpoint with `models.checkpoint.safe_load` (weights only); failures name the file."""
    path = Path(path)
    try:
        state = safe_load(path, map_location=map_location)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (ValueError, AttributeError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or unsafe to load: "
                              f"{first_line}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict of states")
    return state


def snapshot_path(workdir, index: int) -> Path:
    return Path(workdir) / "checkpoints" / f"checkpoint_{index}.pth"


def preemption_path(workdir) -> Path:
    return Path(workdir) / "checkpoints-meta" / "checkpoint.pth"


def latest_checkpoint(workdir) -> Optional[Path]:
    """The preemption checkpoint, which training rewrites with every snapshot, or None."""
    meta = preemption_path(workdir)
    return meta if meta.exists() else None


def remove_stale_temporaries(workdir, folders=("checkpoints", "checkpoints-meta")) -> None:
    """Delete the temporary files of checkpoint writes that a kill interrupted (in `folders`
    of `workdir`)."""
    for folder in folders:
        for tmp in (Path(workdir) / folder).glob("*.pth.*.tmp"):
            tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: dict) -> None:
    """Atomically replace `path` with `payload` as JSON (metrics files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
