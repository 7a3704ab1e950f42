"""Every file a run writes: atomically, and only inside its workdir.

`atomic_write` (temporary file in the same folder, fsync, `os.replace`) means a kill, a
SIGTERM or a full disk leaves either the previous file or the new one under the final name.
Paths are checked against the workdir's resolved root before anything is created: a folder
that is (or passes through) a symbolic link leading out of the workdir is refused, and a link
at the file's own name is replaced, not followed.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Optional

import numpy as np

from models.checkpoint import atomic_write as _atomic_write


class OutsideWorkdirError(ValueError):
    """An output path that would lead out of the workdir (bad input: exit 2)."""


def check_inside(folder: Path, root: Path) -> None:
    """`folder` must lie below `root` (no `..`, not elsewhere) and every part of it that exists,
    from `root` down, must resolve to a place inside `root`'s resolved path (a symbolic link on
    the way may point elsewhere inside the workdir, never out of it)."""
    folder, root = Path(folder), Path(root)
    base = root.resolve()
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        parts = None
    if parts is None or ".." in parts:
        raise OutsideWorkdirError(f"{folder} leads out of the workdir {root}")
    current = root
    for part in parts:
        current = current / part
        if not (current.is_symlink() or current.exists()):
            return
        resolved = current.resolve()
        if resolved != base and base not in resolved.parents:
            raise OutsideWorkdirError(f"{current} leads out of the workdir {root} (to "
                                      f"{resolved}) through a symbolic link; remove the link")


def atomic_write(path, write: Callable[[BinaryIO], None], root: Optional[Path] = None) -> Path:
    """Write `path` atomically with `write(f)`; with `root`, only inside that workdir."""
    path = Path(path)
    if root is not None:
        check_inside(path.parent, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        check_inside(path.parent, root)
    return _atomic_write(path, write)


def write_json(path, payload: Mapping, root: Optional[Path] = None) -> Path:
    """Atomically replace `path` with `payload` as indented JSON."""
    text = json.dumps(payload, indent=2).encode()
    return atomic_write(path, lambda f: f.write(text), root)


def save_npz(path, arrays: Mapping[str, np.ndarray], root: Optional[Path] = None) -> Path:
    """Atomically write a compressed `.npz` of `arrays`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()), root)


def readable_npz(path) -> bool:
    """Whether `path` is a complete, readable `.npz` file."""
    try:
        with np.load(path) as archive:
            for name in archive.files:
                archive[name]
        return True
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return False
