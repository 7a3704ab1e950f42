"""Where a run's config comes from: `--config FILE`, or a workdir's stored `config.json`.

A workdir remembers the resolved config of its first run (`run.stored_config`). Without
`--config`, every mode rebuilds that config (train resumes the run): the defaults of
`configs/default.py` with the stored values on top (types kept, tuples as tuples), so that
`--config.<section>.<field>=value` overrides work on it as on a config file.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import List, Optional

import ml_collections

from configs.default import get_default_config
from run.stored_config import read_stored
from run.workdir import expand_workdir


def config_from_stored(stored: dict, where: str = "config.json") -> ml_collections.ConfigDict:
    """A ConfigDict of the default config updated with a stored (JSON) config's values; a value
    whose type the field does not take is a ValueError naming it."""
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
            try:
                target[name] = value
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: {section}.{name}={value!r} has the wrong type for "
                                 f"this field (it holds {type(current).__name__}): "
                                 f"{str(err).splitlines()[0]}") from None
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
    path = expand_workdir(workdir) / "config.json"
    if not path.is_file():
        return None
    return config_from_stored(read_stored(path), str(path))


def config_file_failure(err: BaseException, config_file: Optional[str]) -> str:
    """The one line for a config file whose own code failed while loading: it raised, imported
    a missing module, or called `sys.exit` (the run does nothing; exit status 2)."""
    where = f"the config file {config_file}" if config_file else "the config"
    if isinstance(err, SystemExit):
        return (f"error: {where} called sys.exit({err.code!r}) while loading; a config file "
                f"defines get_config() and nothing else runs")
    inner = err
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__
    text = " ".join(line.strip() for line in str(inner).splitlines() if line.strip())
    return (f"error: {where} failed to load: {type(inner).__name__}: {text} (--verbose shows "
            f"the traceback)")


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
