"""Reading checkpoints safely, and this project's checkpoint of a score model.

Every load goes through `safe_load`: `torch.load(weights_only=True)`, which unpickles only
tensors and plain containers, plus an explicit allowlist of the numpy scalar globals that
score_sde_pytorch checkpoints contain (its optimizer state holds a `numpy.float64`).
Nothing else is ever unpickled.

This project's score-model checkpoint (written by `save_score_model`, e.g. by
`python -m models.convert`) is a dict of tensors and plain values only:
    "format":  "score-sde/score-model/v1"
    "model":   the network's state_dict (keys as in `build_model(config["model"])`)
    "ema":     ExponentialMovingAverage state (`decay`, `num_updates`, `shadow_params`,
               a list in the order of the network's trainable parameters)
    "step":    training step (int)
    "config":  {"model": {...}, "sde": {...}, "training": {"continuous": bool}}
    "meta":    free-form strings (e.g. where the weights came from)
"""
from __future__ import annotations

import importlib
import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, List, Mapping, Optional, Union

import numpy as np
import torch

FORMAT = "score-sde/score-model/v1"
PathLike = Union[str, Path]


def numpy_safe_globals() -> List[Any]:
    """The numpy globals that checkpoints written with numpy 1.x or 2.x use for scalars.

    `numpy.core.multiarray.scalar` (numpy 1.x) and `numpy._core.multiarray.scalar` (2.x)
    rebuild a numpy scalar from its dtype and raw bytes; dtypes are pickled by class.
    """
    allowed: List[Any] = [np.dtype]
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        scalar = _import_attr(module_name, "scalar")
        if scalar is not None:
            allowed.append((scalar, f"{module_name}.scalar"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        for name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType",
                     "Int32DType", "Int64DType", "UInt8DType", "BoolDType"):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def _import_attr(module_name: str, attr: str) -> Optional[Any]:
    try:
        with warnings.catch_warnings():  # numpy 2 warns on the numpy.core alias
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(module_name)
        return getattr(module, attr, None)
    except ImportError:
        return None


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file atomically: `write(f)` fills a temporary file in `path`'s folder, which is
    fsynced and renamed over `path`, so a kill at any moment leaves the old file or the new
    (never a partial one), and a full disk leaves the old file. The rename replaces a symbolic
    link at `path` itself, never the file it points to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def atomic_save(obj: Any, path: PathLike) -> None:
    """`torch.save` to `path` atomically (`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path: PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)` with the numpy scalar allowlist.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for a
    corrupt one or one that needs globals outside the allowlist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refusing to load {path}: it needs objects outside the weights-only "
                         f"allowlist, or it is corrupt ({error})") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"cannot read checkpoint {path}: not a valid PyTorch file "
                         f"({error})") from error


def save_score_model(path: PathLike, net: torch.nn.Module, config: Mapping[str, Any], *,
                     ema_state: Optional[Mapping[str, Any]] = None, step: int = 0,
                     meta: Optional[Mapping[str, str]] = None) -> None:
    """Write this project's checkpoint (see the module docstring) of `net` with its `config`.

    `ema_state` defaults to an EMA whose shadow parameters are `net`'s own weights.
    """
    atomic_save(score_model_checkpoint(net, config, ema_state=ema_state, step=step, meta=meta),
                path)


def score_model_checkpoint(net: torch.nn.Module, config: Mapping[str, Any], *,
                           ema_state: Optional[Mapping[str, Any]] = None, step: int = 0,
                           meta: Optional[Mapping[str, str]] = None) -> dict:
    """The checkpoint dict `save_score_model` writes (tensors on the CPU, plain values)."""
    from models.ema import ExponentialMovingAverage

    if ema_state is None:
        decay = float(config["model"].get("ema_rate", 0.9999))
        ema_state = ExponentialMovingAverage(net.parameters(), decay).state_dict()
    return {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "ema": {"decay": float(ema_state["decay"]), "num_updates": ema_state["num_updates"],
                "shadow_params": [p.detach().cpu() for p in ema_state["shadow_params"]]},
        "step": int(step),
        "config": _plain(config),
        "meta": dict(meta or {}),
    }


def load_score_model(path: PathLike, map_location: Any = "cpu", use_ema: bool = False):
    """Rebuild the `ScoreModel` saved by `save_score_model` (eval mode).

    `use_ema=True` loads the EMA shadow weights instead of the "model" weights.
    """
    import sde_lib
    from models.ema import ExponentialMovingAverage
    from models.registry import build_model
    from models.score_model import ScoreModel

    checkpoint = safe_load(path, map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (convert score_sde_pytorch "
                         f"checkpoints with `python -m models.convert`)")
    config = checkpoint["config"]
    net = build_model(config["model"])
    net.load_state_dict(checkpoint["model"], strict=True)
    if use_ema:
        ema = ExponentialMovingAverage(net.parameters(), checkpoint["ema"]["decay"])
        ema.load_state_dict(checkpoint["ema"])
        ema.copy_to(net.parameters())
    sde = sde_lib.build_sde(config["sde"])
    model = ScoreModel(net, sde, continuous=config["training"]["continuous"],
                       parametrization=config["training"].get("parametrization"),
                       sigma_data=config["training"].get("sigma_data", 0.5))
    return model.eval()


def _plain(value: Any) -> Any:
    """Nested mappings / sequences of python scalars, as weights-only pickling allows."""
    if isinstance(value, Mapping) or hasattr(value, "to_dict"):
        items = value.to_dict().items() if hasattr(value, "to_dict") else value.items()
        return {str(k): _plain(v) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint config: {value!r}")
