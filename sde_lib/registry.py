"""SDEs by name, and the mapping from the `config.sde` section onto constructor arguments."""
from __future__ import annotations

from sde_lib.base import SDE
from sde_lib.subvp import subVPSDE
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}

# config.sde field -> constructor argument, per SDE (fields absent from the config keep defaults).
_CONFIG_FIELDS = {
    "vpsde": {"beta_min": "beta_min", "beta_max": "beta_max", "num_scales": "N",
              "schedule": "schedule"},
    "subvpsde": {"beta_min": "beta_min", "beta_max": "beta_max", "num_scales": "N",
                 "schedule": "schedule"},
    "vesde": {"sigma_min": "sigma_min", "sigma_max": "sigma_max", "num_scales": "N"},
}


def get_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by its registry name ("vpsde", "subvpsde", "vesde")."""
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
    return get_sde(name, **kwargs)


def config_fields(name: str) -> list:
    """The `config.sde` fields that the SDE `name` reads (none for an unknown name)."""
    return sorted(_CONFIG_FIELDS.get(name, {}))
