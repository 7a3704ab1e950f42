"""Restoring trained models from a workdir for evaluation and sampling."""
from __future__ import annotations

from typing import Tuple, Union

import torch

import sde_lib
from models import ExponentialMovingAverage, ScoreModel
from models.classifier import NoisyClassifier, classifier_from_fields
from run.builders import build_score_model, build_sde, stored_config
from run.checkpoint import CheckpointError, check_format, load_checkpoint, load_latest
from run.paths import PathLike, WorkdirPaths, workdir_paths
from run.stored_config import check_matches

CLASSIFIER_FORMAT = "score-sde/classifier/v1"


def load_ema_model(config, workdir: Union[PathLike, WorkdirPaths], device
                   ) -> Tuple[ScoreModel, sde_lib.SDE, int]:
    """The score model with the EMA weights of the workdir's latest checkpoint (eval mode), its
    SDE and its training step."""
    paths = workdir_paths(workdir)
    latest = load_latest(paths, map_location=device)   # none readable: raises, naming the files
    if latest is None:
        raise CheckpointError(f"no checkpoint in {paths.checkpoints_meta} or {paths.checkpoints};"
                              f" train first (--mode train) or convert one "
                              f"(python -m models.convert)")
    path, state = latest
    check_format(state, path)
    sde = build_sde(config)
    check_matches(stored_config(config, sde), state.get("config"), f"checkpoint {path}")
    model = build_score_model(config, sde, device)
    try:
        model.net.load_state_dict(state["model"], strict=True)
        ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
        ema.load_state_dict(state["ema"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit config.model: "
                              f"{str(err).splitlines()[0]}") from None
    ema.copy_to(model.parameters())
    check_finite_weights(model, path)
    return model.eval(), sde, int(state["step"])


def check_finite_weights(model: torch.nn.Module, path) -> None:
    """Refuse weights holding NaN or ±inf: nothing computed from them would be a number."""
    bad = [name for name, p in model.state_dict().items()
           if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({len(bad)} tensors, "
                              f"e.g. {bad[0]}); it cannot be evaluated or sampled")


def load_classifier(config, workdir: Union[PathLike, WorkdirPaths],
                    device=None) -> NoisyClassifier:
    """The trained guidance classifier of the workdir (eval mode) for `config.sde`; its
    `log_prob` is the `log_prob_fn` of classifier guidance. CheckpointError when absent or not
    matching."""
    path = workdir_paths(workdir).classifier_checkpoint
    if not path.exists():
        raise CheckpointError(f"no classifier checkpoint at {path}; train one first with "
                              f"--mode train_classifier")
    state = load_checkpoint(path, map_location=device or "cpu")
    if state.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is not a {CLASSIFIER_FORMAT} checkpoint")
    check_matches({"sde": config.sde.to_dict()}, {"sde": state["sde"]},
                  f"classifier checkpoint {path}", model=False)
    try:
        net = classifier_from_fields(state["fields"])
        net.load_state_dict(state["model"], strict=True)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"classifier checkpoint {path} is inconsistent: "
                              f"{str(err).splitlines()[0]}") from None
    return NoisyClassifier(net.to(device), build_sde(config)).eval()
