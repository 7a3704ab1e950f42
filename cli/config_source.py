"""Where a run's config comes from: `--config FILE`, or a workdir's stored `config.json`.

A workdir remembers the resolved config of its first run (`run.stored_config`). Without
`--config`, every mode rebuilds that config (train resumes the run): the defaults of
`configs/default.py` with the stored values on top (types kept, tuples as tuples), so that
`--config.<section>.<field>=value` overrides work on it as on a config file.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import List, Optional

import ml_collections

from configs.default import get_default_config



def config_from_stored(stored: dict) -> ml_collections.ConfigDict:
    """A ConfigDict of the default config updated with a stored (JSON) config's values."""
    config = get_default_config()
    for section, values in stored.items():
        if not isinstance(values, dict):
            continue
        if section not in config:
            config[section] = ml_collections.ConfigDict()
        target = config[section]
        for name, value in values.items():
            current = target[name] if name in target else None
            if isinstance(value, list) and (current is None or isinstance(current, tuple)):
                value = tuple(value)
            if name in target and value is None:
                continue      # a placeholder keeps its type (and its None)
            target[name] = value
    return config


def flag_value(argv: List[str], name: str) -> Optional[str]:
    """The value of `--name=value` or `--name value` in `argv`, if present."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def stored_workdir_config(argv: List[str]) -> Optional[ml_collections.ConfigDict]:
    """The workdir's config when `argv` names no `--config` but a workdir that has one; else
    None."""
    if flag_value(argv, "config") is not None:
        return None
    workdir = flag_value(argv, "workdir")
    if workdir is None:
        return None
    path = Path(workdir).expanduser() / "config.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not readable JSON ({err}); pass --config") from None
    return config_from_stored(stored)


def check_config_path(value: Optional[str]) -> None:
    """Raise ValueError with one line (and the nearest config file's name) when `--config` names
    no file; `path:argument` (a config file with an argument) is checked by its path."""
    if not value or Path(value).expanduser().is_file():
        return
    path = Path(value.rsplit(":", 1)[0]).expanduser()
    if path.is_file():
        return
    folder = path.parent if path.parent.is_dir() else Path("configs")
    names = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    hint = (f"did you mean {folder / close[0]}?" if close else
            f"the config files in {folder}/ are {', '.join(names)}" if names else
            "pass a configs/*.py file")
    raise ValueError(f"--config {value}: no such file; {hint}")
