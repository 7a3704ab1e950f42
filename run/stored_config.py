"""The workdir remembers its config: `config.json` (readable JSON) is written when a run first
starts, and every later run is compared with it field by field.

Fields that define the model and its meaning may not change: the SDE (its name and the fields
that SDE reads), the network (every constructor argument it is built with, the data's shape and
range included, as `models.registry.network_arguments` lists them), `training.continuous`,
the output parametrisation and, for EDM's, its σ_data. Everything
else (batch sizes, n_iters, eval and sampling settings, …) may. A mismatch raises
`ConfigMismatch` listing each differing field with both values, before any checkpoint reaches
`load_state_dict`. Checkpoints carry the same stored config, so a workdir without
`config.json` (older runs, converted checkpoints) is compared with its checkpoint's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import sde_lib
from models.registry import network_arguments

# Network arguments that do not change what the trained network computes.
NON_DEFINING_MODEL_FIELDS = {"dropout"}
# The fields of the data a guidance classifier depends on (carried in model.* by model_fields).
DATA_FIELDS = {"image_size", "num_channels", "centered", "dim"}


class ConfigMismatch(ValueError):
    """The config contradicts the workdir's stored config or its checkpoint (exit 2)."""


def read_stored(path: Path) -> Dict[str, Any]:
    """The stored config at `path`: a JSON object of sections (objects); `ConfigMismatch`
    naming the file otherwise."""
    path = Path(path)
    advice = "restore it, or remove it to adopt this run's config"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigMismatch(f"{path} is not readable JSON ({first}); {advice}") from None
    if not isinstance(stored, dict):
        raise ConfigMismatch(f"{path} must hold a JSON object of config sections, not "
                             f"{_json_type(stored)}; {advice}")
    for name, section in stored.items():
        if not isinstance(section, dict):
            raise ConfigMismatch(f"{path}: section {name!r} must be a JSON object of fields, "
                                 f"not {_json_type(section)}; {advice}")
    return stored


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
             str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), so stored and current configs compare alike."""
    return json.loads(json.dumps(value))


def _network(model_section: Mapping[str, Any]) -> Dict[str, Any]:
    """The network's full constructor arguments (`models.registry.network_arguments`), so that
    sections with other extra fields (a converted checkpoint's) compare by what they build; the
    raw section where it builds nothing."""
    try:
        return _plain(network_arguments(model_section))
    except (ValueError, TypeError):
        return dict(model_section)


def defining_fields(stored: Mapping[str, Any], *, model: bool = True) -> Dict[str, Any]:
    """The model-defining fields of a stored config (`run.builders.stored_config`'s layout or a
    converted checkpoint's), flattened to "section.field" → value. `model=False` keeps only
    what a guidance classifier depends on (the SDE and the data's shape and range)."""
    stored = _plain(dict(stored))
    fields: Dict[str, Any] = {f"sde.{name}": value
                              for name, value in sde_lib.sde_fields(stored.get("sde", {})).items()}
    for name, value in _network(stored.get("model", {})).items():
        if name in NON_DEFINING_MODEL_FIELDS or (not model and name not in DATA_FIELDS):
            continue
        fields[f"model.{name}"] = value
    if model:
        training = stored.get("training", {})
        fields["training.continuous"] = training.get("continuous")
        fields["training.parametrization"] = training.get("parametrization")
        if training.get("parametrization") == "edm":   # σ_data is part of the model's meaning
            fields["training.sigma_data"] = training.get("sigma_data", 0.5)
        distill = stored.get("distill", {})
        if distill.get("teacher"):   # a consistency student: its teacher's weights and σ_min
            fields["distill.teacher_digest"] = distill.get("teacher_digest")
            fields["distill.eps"] = distill.get("eps")
            fields["training.sigma_data"] = training.get("sigma_data", 0.5)
    return fields


def differences(current: Mapping[str, Any], stored: Mapping[str, Any],
                *, model: bool = True) -> List[str]:
    """"field: stored → current" for each model-defining field that differs."""
    now, then = defining_fields(current, model=model), defining_fields(stored, model=model)
    return [f"{key}={then.get(key)!r} (stored) vs {now.get(key)!r} (now)"
            for key in sorted(set(now) | set(then)) if now.get(key) != then.get(key)]


def check_matches(current: Mapping[str, Any], stored: Optional[Mapping[str, Any]], where: str,
                  *, model: bool = True) -> None:
    """Raise `ConfigMismatch` naming `where` and every differing field (nothing stored: ok)."""
    if stored is None:
        return
    try:
        diff = differences(current, stored, model=model)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ConfigMismatch(f"{where} holds a field of the wrong type ({err}); restore it or "
                             f"use another --workdir") from None
    if diff:
        raise ConfigMismatch(f"the config contradicts {where}, which defines the model: "
                             f"{'; '.join(diff)}; use the stored values or another --workdir")


def check_same_fields(current: Mapping[str, Any], stored: Mapping[str, Any], where: str,
                      section: str) -> None:
    """Raise `ConfigMismatch` for each field of `section` whose stored value differs (plain
    constructor fields, e.g. a guidance classifier's architecture)."""
    now, then = _plain(dict(current)), _plain(dict(stored))
    diff = [f"{section}.{key}={then.get(key)!r} (stored) vs {now.get(key)!r} (now)"
            for key in sorted(set(now) | set(then)) if now.get(key) != then.get(key)]
    if diff:
        raise ConfigMismatch(f"the config contradicts {where}: {'; '.join(diff)}; use the "
                             f"stored values or remove it to start afresh")
