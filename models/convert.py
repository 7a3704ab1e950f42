"""Load score_sde_pytorch checkpoints (Song et al. 2021's released models) as `ScoreModel`s.

    python -m models.convert SRC DST --reference-config CONFIG.json [--weights ema|model] [--force]

reads the reference checkpoint SRC (`{"model", "ema", "optimizer", "step"}` as written by its
`utils.save_checkpoint`) and writes this project's checkpoint (see `models.checkpoint`): DST
itself if it ends in `.pth`, else a workdir DST (checkpoint and `config.json`) that
`python main.py --workdir DST --mode eval|sample` uses without `--config`. The command line
(`cli.convert`) writes a workdir like every other entry point: through the workdir session
(resolved paths, the lock, no links followed), and only into a workdir that holds no model.
CONFIG.json is the reference config as a nested dict (`config.to_dict()`; tuples as lists).
Reference checkpoints are read with `torch.load(weights_only=True)` and an allowlist of
numpy scalar globals, never with unrestricted unpickling.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Set, Tuple, Union

import torch

import sde_lib
from models.checkpoint import atomic_save, safe_load, score_model_checkpoint
from models.ema import ExponentialMovingAverage
from models.embeddings import sigma_table
from models.reference_layout import convert_reference_state_dict, frozen_reference_keys
from models.registry import build_model
from models.score_model import ScoreModel, default_parametrization

ReferenceConfig = Union[str, Path, Mapping[str, Any]]
REFERENCE_MODELS = ("ncsnpp", "ddpm")


def load_reference_config(config: ReferenceConfig) -> Dict[str, Any]:
    """The reference config as a nested dict, from a dict, a ConfigDict or a JSON file path."""
    if isinstance(config, (str, Path)):
        try:
            return json.loads(Path(config).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read reference config {config}: {error}") from error
    return dict(config.to_dict()) if hasattr(config, "to_dict") else dict(config)


def project_config(ref: Mapping[str, Any]) -> Dict[str, Any]:
    """This project's config sections (model, sde, training) for a reference config."""
    model, data, training = ref["model"], ref["data"], ref["training"]
    if model.get("name") not in REFERENCE_MODELS:
        raise ValueError(f"Unsupported reference model {model.get('name')!r}; expected one of "
                         f"{list(REFERENCE_MODELS)}")
    sde_name = str(training["sde"]).lower()
    if sde_name not in sde_lib.SDES:
        raise ValueError(f"Unknown reference training.sde {training['sde']!r}; expected one of "
                         f"{sorted(sde_lib.SDES)}")
    model_cfg = dict(model, image_size=data["image_size"], num_channels=data["num_channels"],
                     centered=data["centered"])
    sde_cfg = {"name": sde_name, "num_scales": model["num_scales"]}
    sde_cfg.update({k: model[k] for k in ("beta_min", "beta_max", "sigma_min", "sigma_max")})
    # The reference always feeds sub-VP networks continuous labels (models/utils.get_score_fn).
    continuous = bool(training["continuous"]) or sde_name == "subvpsde"
    parametrization = default_parametrization(sde_lib.build_sde(sde_cfg))
    return {"model": model_cfg, "sde": sde_cfg,
            "training": {"continuous": continuous, "parametrization": parametrization}}


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the `module.` prefix of `nn.DataParallel`, if every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _check_sigmas(state: Dict[str, torch.Tensor], model_cfg: Mapping[str, Any], path) -> None:
    """The checkpoint's SMLD σ table must be the one the config describes."""
    sigmas = state.pop("sigmas", None)
    if sigmas is None:
        return
    expected = sigma_table(model_cfg["sigma_min"], model_cfg["sigma_max"], model_cfg["num_scales"])
    if sigmas.shape != expected.shape or not torch.allclose(sigmas.double(), expected, rtol=1e-5):
        raise ValueError(f"{path}: the checkpoint's sigmas do not match the reference config's "
                         f"sigma_min / sigma_max / num_scales; wrong config?")


def _with_ema(state: Dict[str, torch.Tensor], ema: Mapping[str, Any], frozen: Set[str],
              path) -> Dict[str, torch.Tensor]:
    """`state` with its trainable parameters, in order, replaced by the EMA shadow parameters."""
    trainable = [k for k in state if k not in frozen]
    shadow = list(ema["shadow_params"])
    if len(shadow) != len(trainable):
        raise ValueError(f"{path}: {len(shadow)} EMA shadow parameters for {len(trainable)} "
                         f"trainable parameters")
    out = dict(state)
    for key, value in zip(trainable, shadow):
        if value.shape != state[key].shape:
            raise ValueError(f"{path}: EMA shadow parameter for {key} has shape "
                             f"{tuple(value.shape)}, expected {tuple(state[key].shape)}")
        out[key] = value
    return out


def _load(checkpoint_path, reference_config: ReferenceConfig, use_ema: bool):
    """(net with the chosen weights, project config, raw reference checkpoint)."""
    config = project_config(load_reference_config(reference_config))
    net = build_model(config["model"])
    checkpoint = safe_load(checkpoint_path)
    needed = ("model", "ema") if use_ema else ("model",)
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in needed):
        raise ValueError(f"{checkpoint_path} is not a score_sde_pytorch checkpoint "
                         f"(expected a dict with 'model' and 'ema')")
    state = _strip_prefix(checkpoint["model"])
    _check_sigmas(state, config["model"], checkpoint_path)
    if use_ema:
        state = _with_ema(state, checkpoint["ema"], frozen_reference_keys(net), checkpoint_path)
    try:
        net.load_state_dict(convert_reference_state_dict(state, net), strict=True)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{checkpoint_path} does not match the reference config: "
                         f"{error}") from error
    return net, config, checkpoint


def from_score_sde(checkpoint_path: Union[str, Path], reference_config: ReferenceConfig,
                   use_ema: bool = True) -> ScoreModel:
    """A `ScoreModel` (eval mode) from a score_sde_pytorch checkpoint and its config.

    `use_ema` picks the EMA weights (what the paper evaluates) or the raw model weights.
    `.net(x, labels)` is the raw network; calling the model gives scores with the
    reference's label and scaling conventions.
    """
    net, config, _ = _load(checkpoint_path, reference_config, use_ema)
    sde = sde_lib.build_sde(config["sde"])
    return ScoreModel(net, sde, continuous=config["training"]["continuous"],
                      parametrization=config["training"]["parametrization"]).eval()


# Reference predictor names → this project's (score_sde_pytorch's sampling.predictor).
REFERENCE_PREDICTORS = {"reverse_diffusion": "reverse_diffusion",
                        "euler_maruyama": "euler_maruyama", "ancestral_sampling": "ancestral",
                        "none": "none"}


def workdir_config(ref: Mapping[str, Any]) -> Dict[str, Any]:
    """The stored config (`config.json`) of a workdir made from a reference checkpoint: its
    model, SDE, time convention, data and sampler; every other field keeps this project's
    default when a run rebuilds the config from it."""
    config = project_config(ref)
    data, sampling = ref.get("data", {}), ref.get("sampling", {})
    config["data"] = {key: data[key] for key in ("dataset", "image_size", "num_channels",
                                                 "centered", "random_flip",
                                                 "uniform_dequantization") if key in data}
    config["training"].update({key: ref["training"][key] for key in ("reduce_mean",
                                                                     "likelihood_weighting")
                               if key in ref["training"]})
    config["sampling"] = {key: sampling[key] for key in ("corrector", "snr", "n_steps_each",
                                                         "noise_removal", "probability_flow")
                          if key in sampling}
    if sampling.get("predictor") in REFERENCE_PREDICTORS:
        config["sampling"]["predictor"] = REFERENCE_PREDICTORS[sampling["predictor"]]
    if sampling.get("method") in ("pc", "ode"):
        config["sampling"]["method"] = sampling["method"]
    return config


def converted(src: Union[str, Path], reference_config: ReferenceConfig, use_ema: bool = True
              ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(this project's checkpoint dict, the workdir's stored config) of the reference checkpoint
    `src`: everything read and checked, nothing written."""
    net, config, checkpoint = _load(src, reference_config, use_ema)
    reference_ema = checkpoint.get("ema", {})
    decay = reference_ema.get("decay", config["model"].get("ema_rate", 0.9999))
    ema = ExponentialMovingAverage(net.parameters(), float(decay))  # holds the chosen weights
    ema.num_updates = int(reference_ema.get("num_updates", 0) or 0)
    meta = {"source": f"score_sde_pytorch:{Path(src).name}",
            "weights": "ema" if use_ema else "model"}
    state = score_model_checkpoint(net, config, ema_state=ema.state_dict(),
                                   step=int(checkpoint.get("step", 0)), meta=meta)
    return state, workdir_config(load_reference_config(reference_config))


def convert(src: Union[str, Path], dst: Union[str, Path], reference_config: ReferenceConfig,
            use_ema: bool = True) -> Path:
    """Convert the reference checkpoint `src` into this project's checkpoint file `dst` (a
    `.pth` path, written atomically). A workdir is written by the command line, which locks it
    (`python -m models.convert SRC WORKDIR ...`). Returns `dst`."""
    dst = Path(dst)
    if dst.suffix != ".pth":
        raise ValueError(f"convert() writes a .pth file, not {dst}; convert into a workdir with "
                         f"`python -m models.convert SRC WORKDIR --reference-config CONFIG.json`")
    state, _ = converted(src, reference_config, use_ema)
    atomic_save(state, dst)
    return dst


if __name__ == "__main__":
    # The command line is an entry point like main.py: it opens the workdir session (run/),
    # which this library module does not import.
    from cli.convert import main
    sys.exit(main())
