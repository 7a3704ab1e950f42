"""SDEs by name, and the mapping from the `config.sde` section onto constructor arguments."""
from __future__ import annotations

import inspect

from sde_lib.base import SDE
from sde_lib.edm import EDMSDE
from sde_lib.subvp import subVPSDE
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE, "edmsde": EDMSDE}

# config.sde field -> constructor argument, per SDE (fields absent from the config keep defaults).
_CONFIG_FIELDS = {
    "vpsde": {"beta_min": "beta_min", "beta_max": "beta_max", "num_scales": "N",
              "schedule": "schedule"},
    "subvpsde": {"beta_min": "beta_min", "beta_max": "beta_max", "num_scales": "N",
                 "schedule": "schedule"},
    "vesde": {"sigma_min": "sigma_min", "sigma_max": "sigma_max", "num_scales": "N"},
    "edmsde": {"sigma_min": "sigma_min", "sigma_max": "sigma_max", "num_scales": "N"},
}


def get_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by its registry name ("vpsde", "subvpsde", "vesde", "edmsde")."""
    if name not in SDES:
        raise ValueError(f"Unknown SDE {name!r}; expected one of {sorted(SDES)}")
    return SDES[name](**kwargs)


def build_sde(sde_config) -> SDE:
    """Build the SDE described by a `config.sde` section (ml_collections.ConfigDict or dict)."""
    name = sde_config["name"]
    if name not in SDES:
        raise ValueError(f"Unknown config.sde.name {name!r}; expected one of {sorted(SDES)}")
    kwargs = {arg: sde_config[field] for field, arg in _CONFIG_FIELDS[name].items()
              if field in sde_config}
    try:
        return get_sde(name, **kwargs)
    except ValueError as err:   # name the config field, not the constructor's argument
        message = str(err)
        for field, arg in _CONFIG_FIELDS[name].items():
            if field != arg and message.startswith(f"{arg} "):
                raise ValueError(f"config.sde.{field}{message[len(arg):]}") from None
        raise


def sde_fields(sde_config) -> dict:
    """The fields of a `config.sde` section that its SDE reads, each with the value it is built
    with (the constructor's default where the section lacks the field), plus `name`: what
    defines the SDE, whatever else the section holds. Unknown names give only `name`."""
    name = sde_config.get("name") if hasattr(sde_config, "get") else None
    fields = {"name": name}
    if name not in SDES:
        return fields
    defaults = inspect.signature(SDES[name]).parameters
    for field, arg in sorted(_CONFIG_FIELDS[name].items()):
        fields[field] = sde_config[field] if field in sde_config else defaults[arg].default
    return fields
