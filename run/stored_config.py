"""The workdir remembers its config: `config.json` (readable JSON) is written when a run first
starts, and every later run is compared with it field by field.

Fields that define the model and its meaning may not change: the SDE (its name and the fields
that SDE reads), the network (`model.*` with the data's shape and range, which `model_fields`
adds; `ema_rate` excepted), `training.continuous` and the output parametrisation. Everything
else (batch sizes, n_iters, eval and sampling settings, …) may. A mismatch raises
`ConfigMismatch` listing each differing field with both values, before any checkpoint reaches
`load_state_dict`. Checkpoints carry the same stored config, so a workdir without
`config.json` (older runs, converted checkpoints) is compared with its checkpoint's.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

import sde_lib

# model.* fields that do not change what the network computes.
NON_DEFINING_MODEL_FIELDS = {"ema_rate"}
# The fields of the data a guidance classifier depends on (carried in model.* by model_fields).
DATA_FIELDS = {"image_size", "num_channels", "centered", "dim"}


class ConfigMismatch(ValueError):
    """The config contradicts the workdir's stored config or its checkpoint (exit 2)."""


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), so stored and current configs compare alike."""
    return json.loads(json.dumps(value))


def defining_fields(stored: Mapping[str, Any], *, model: bool = True) -> Dict[str, Any]:
    """The model-defining fields of a stored config (`run.builders.stored_config`'s layout or a
    converted checkpoint's), flattened to "section.field" → value. `model=False` keeps only
    what a guidance classifier depends on (the SDE and the data's shape and range)."""
    stored = _plain(dict(stored))
    sde = stored.get("sde", {})
    fields: Dict[str, Any] = {"sde.name": sde.get("name")}
    for name in sde_lib.config_fields(sde.get("name")):
        fields[f"sde.{name}"] = sde.get(name)
    for name, value in stored.get("model", {}).items():
        if name in NON_DEFINING_MODEL_FIELDS or (not model and name not in DATA_FIELDS):
            continue
        fields[f"model.{name}"] = value
    if model:
        training = stored.get("training", {})
        fields["training.continuous"] = training.get("continuous")
        fields["training.parametrization"] = training.get("parametrization")
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
    diff = differences(current, stored, model=model)
    if diff:
        raise ConfigMismatch(f"the config contradicts {where}, which defines the model: "
                             f"{'; '.join(diff)}; use the stored values or another --workdir")
