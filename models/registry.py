"""Networks by name, and `build_model`, which maps a `config.model` section onto a constructor."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping

import torch.nn as nn

from models.ddpm import DDPM
from models.mlp import MLP
from models.ncsnpp import NCSNpp

MODELS: Dict[str, Callable[..., nn.Module]] = {"ncsnpp": NCSNpp, "ddpm": DDPM, "mlp": MLP}

# Reference config fields that no constructor takes: allowed values (case-insensitive).
_FIXED_FIELDS = {"normalization": ("groupnorm",), "attention_type": ("ddpm",), "conv_size": (3,)}
# Fields of config.model that are not architecture (used by training / the SDE).
_OTHER_FIELDS = {"name", "ema_rate", "beta_min", "beta_max"}


def _constructor_fields(cls: Callable[..., nn.Module]) -> Dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(cls).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


_KNOWN_FIELDS = set(_FIXED_FIELDS) | _OTHER_FIELDS | {
    field for cls in MODELS.values() for field in _constructor_fields(cls)}


def _as_dict(config: Any) -> Dict[str, Any]:
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config.model must be a mapping or ConfigDict, got {type(config).__name__}")


def network_arguments(model_config: Any, **overrides: Any) -> Dict[str, Any]:
    """The network's name and every constructor argument (defaults filled in) that
    `build_model` would use for `model_config`: what defines the network, whatever extra fields
    the section carries. ValueError as `build_model`."""
    fields = _as_dict(model_config)
    fields.update(overrides)
    name = fields.get("name")
    if name not in MODELS:
        raise ValueError(f"Unknown model name {name!r}; expected one of {sorted(MODELS)}")
    unknown = sorted(set(fields) - _KNOWN_FIELDS)
    if unknown:
        raise ValueError(f"Unknown config.model field(s) {unknown} for model {name!r}")
    for field, allowed in _FIXED_FIELDS.items():
        value = fields.get(field, allowed[0])
        if (value.lower() if isinstance(value, str) else value) not in allowed:
            raise ValueError(f"Unsupported {field} {value!r}; expected one of {list(allowed)}")
    params = _constructor_fields(MODELS[name])
    missing = [k for k, p in params.items()
               if p.default is inspect.Parameter.empty and k not in fields]
    if missing:
        raise ValueError(f"config.model for {name!r} lacks the required field(s) {missing}")
    kwargs = {k: fields.get(k, p.default) for k, p in params.items()}
    return {"name": name, **kwargs}


def build_model(model_config: Any, **overrides: Any) -> nn.Module:
    """Build the network named `model_config["name"]` from the section's fields.

    Each constructor argument is read from the field of the same name (see `NCSNpp`,
    `DDPM`, `MLP`); `overrides` take precedence, e.g.
    `build_model(cfg.model, image_size=cfg.data.image_size, num_channels=cfg.data.num_channels,
    centered=cfg.data.centered)`. Fields meant for other models are ignored, so one config
    schema serves all networks; an unknown field, an unknown name or a missing required
    field raises ValueError.
    """
    kwargs = network_arguments(model_config, **overrides)
    return MODELS[kwargs.pop("name")](**kwargs)
