"""Restoring trained models from a workdir for evaluation and sampling."""
from __future__ import annotations

from typing import Tuple, Union

import sde_lib
from models import ExponentialMovingAverage, ScoreModel
from models.classifier import NoisyClassifier, classifier_from_fields
from run.builders import build_score_model, build_sde
from run.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from run.paths import PathLike, WorkdirPaths, workdir_paths

CLASSIFIER_FORMAT = "score-sde/classifier/v1"


def load_ema_model(config, workdir: Union[PathLike, WorkdirPaths], device
                   ) -> Tuple[ScoreModel, sde_lib.SDE, int]:
    """The score model with the EMA weights of the workdir's latest checkpoint (eval mode), its
    SDE and its training step."""
    paths = workdir_paths(workdir)
    path = latest_checkpoint(paths)
    if path is None:
        raise CheckpointError(f"no checkpoint in {paths.checkpoints_meta}; train first "
                              f"(--mode train) or convert one (python -m models.convert)")
    state = load_checkpoint(path, map_location=device)
    sde = build_sde(config)
    model = build_score_model(config, sde, device)
    try:
        model.net.load_state_dict(state["model"], strict=True)
        ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
        ema.load_state_dict(state["ema"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit config.model: "
                              f"{str(err).splitlines()[0]}") from None
    ema.copy_to(model.parameters())
    return model.eval(), sde, int(state["step"])


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
    if state["sde"] != config.sde.to_dict():
        raise CheckpointError(f"classifier checkpoint {path} was trained with config.sde="
                              f"{state['sde']}, not {config.sde.to_dict()}")
    try:
        net = classifier_from_fields(state["fields"])
        net.load_state_dict(state["model"], strict=True)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"classifier checkpoint {path} is inconsistent: "
                              f"{str(err).splitlines()[0]}") from None
    return NoisyClassifier(net.to(device), build_sde(config)).eval()
