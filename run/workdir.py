"""Resolving a workdir and its output folders before anything is created, and sweeping the
stale temporaries of interrupted atomic writes after the lock is held.

`resolve_workdir` is pure: it expands `~` once (the same expansion for every entry point),
refuses an output folder name that is absolute or holds `..`, and refuses an output folder
that is, or passes through, a symbolic link leading out of the workdir. Nothing is created,
deleted or written until it has passed. `sweep_temporaries` never follows a link.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from pathlib import Path, PurePath
from typing import Iterable, List, Optional, Union

from run.files import OutsideWorkdirError, check_inside
from run.paths import WorkdirPaths

# The temporary files of `run.files.atomic_write`: `<name>.<random>.tmp` beside `<name>`.
TEMPORARY = "*.*.tmp"
# At the workdir's root only the stored config is written (a workdir may hold the user's files).
ROOT_TEMPORARY = "config.json.*.tmp"


def expand_workdir(workdir: Union[str, Path]) -> Path:
    """`--workdir` as a path: `~` expanded (a quoted `'~/x'` means the home folder too)."""
    return Path(os.path.expanduser(str(workdir)))


def check_folder_name(flag: str, name: str) -> None:
    """An output folder named by a flag must be a relative path below the workdir."""
    pure = PurePath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or pure == PurePath("."):
        raise OutsideWorkdirError(
            f"{flag}={name!r} must name a folder inside the workdir (a relative path without "
            f"'..', e.g. 'eval_ode')")


def resolve_workdir(workdir: Union[str, Path], eval_folder: str = "eval") -> WorkdirPaths:
    """The `WorkdirPaths` of a run, every output folder checked (see the module docstring);
    raises `OutsideWorkdirError` (bad input) and touches nothing."""
    check_folder_name("--eval_folder", eval_folder)
    paths = WorkdirPaths(expand_workdir(workdir), eval_folder)
    for folder in paths.output_folders():
        check_inside(folder, paths.root)
    return paths


def sweep_temporaries(paths: WorkdirPaths) -> None:
    """Delete the temporaries that a killed run left in the output folders (and the stored
    config's at the root). Only the lock's holder calls it, so no live run owns them. Links
    are neither followed nor deleted: only regular files below real folders of the workdir."""
    _remove_matching(paths.root, ROOT_TEMPORARY)
    for folder in paths.output_folders():
        if _real_folder(folder, paths.root):
            for parent, _, names in os.walk(folder, followlinks=False):
                _remove_matching(Path(parent), TEMPORARY, names)


def _real_folder(folder: Path, root: Path) -> bool:
    """A folder that is not a link and has no link on its way from the workdir's root."""
    parts = folder.relative_to(root).parts
    chain = [root.joinpath(*parts[:i + 1]) for i in range(len(parts))]
    try:
        return all(stat.S_ISDIR(os.lstat(p).st_mode) for p in chain)
    except OSError:
        return False


def _remove_matching(folder: Path, pattern: str, names: Optional[Iterable[str]] = None) -> None:
    """Unlink the regular files of `folder` (among `names`, else all) matching `pattern`."""
    if names is None:
        try:
            names = os.listdir(folder)
        except OSError:
            return
    for name in names:
        if fnmatch.fnmatchcase(name, pattern):
            path = folder / name
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    path.unlink()
            except FileNotFoundError:
                pass


def model_files(paths: WorkdirPaths) -> List[str]:
    """The names (relative to the workdir) of what defines a model there: the stored config and
    the checkpoints. Empty for a new or empty workdir."""
    found = [paths.config] if paths.config.exists() or paths.config.is_symlink() else []
    for folder in (paths.checkpoints_meta, paths.checkpoints):
        if folder.is_dir() and not folder.is_symlink():
            found += sorted(folder.glob("*.pth"))
    return [str(path.relative_to(paths.root)) for path in found]


def clear_outputs(paths: WorkdirPaths) -> List[str]:
    """Delete what the project wrote in the workdir (the stored config and every output folder:
    checkpoints, samples, eval results, TensorBoard logs, the classifier), never through a link
    (a link is removed, not followed); the user's other files stay. Only the lock's holder
    calls it. Returns the names removed."""
    removed = []
    for path in (paths.config, *paths.output_folders()):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)    # never follows a link below it
        else:
            path.unlink()
        removed.append(str(path.relative_to(paths.root)))
    return removed
