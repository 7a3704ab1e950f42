"""Crash-safe checkpoint and results files inside a workdir.

Every write goes to a temporary file in the target's folder, is fsynced, then renamed over the
target (`models.checkpoint.atomic_save`), so a kill at any moment leaves the old file or the
new one. A checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`; nothing in a checkpoint file is ever executed.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from models.checkpoint import atomic_save, safe_load
from run.paths import WorkdirPaths


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


def latest_checkpoint(paths: WorkdirPaths) -> Optional[Path]:
    """The preemption checkpoint, which training rewrites with every snapshot, or None."""
    return paths.preemption if paths.preemption.exists() else None


def remove_stale_temporaries(folders: Iterable[Path]) -> None:
    """Delete the temporary files of checkpoint writes that a kill interrupted, in `folders`."""
    for folder in folders:
        for tmp in Path(folder).glob("*.pth.*.tmp"):
            tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: dict) -> None:
    """Atomically replace `path` with `payload` as JSON (metrics files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
