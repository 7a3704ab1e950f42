"""Builders: the one place where a config becomes objects (SDE, score model, EMA, optimizer,
guidance classifier). Everything below them takes explicit, typed arguments."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

import sde_lib
from data import describe
from models import ExponentialMovingAverage, ScoreModel, build_model
from models.consistency import ConsistencyModel
from models.classifier import (IMAGE_FIELDS, VECTOR_FIELDS, NoisyClassifier,
                               classifier_from_fields)
from models.score_model import default_parametrization, resolve_parametrization


def build_sde(config) -> sde_lib.SDE:
    """The forward SDE of `config.sde`."""
    return sde_lib.build_sde(config.sde)


def model_fields(config) -> Dict[str, Any]:
    """`config.model` plus what the network needs to know of the data (its shape and range)."""
    fields = dict(config.model.to_dict() if hasattr(config.model, "to_dict") else config.model)
    if fields["name"] == "mlp":
        fields["dim"] = config.data.dim
    else:
        fields.update(image_size=config.data.image_size, num_channels=config.data.num_channels,
                      centered=config.data.centered)
    return fields


def data_shape(config) -> tuple:
    """Shape of one example: `(dim,)` for vectors, `(C, H, W)` for images."""
    if config.model.name == "mlp":
        return (config.data.dim,)
    return (config.data.num_channels, config.data.image_size, config.data.image_size)


def parametrization(config, sde: sde_lib.SDE) -> str:
    """The output parametrisation: `config.training.parametrization` ("noise", "score" or
    "edm") where set, else the SDE's default (`models.score_model.resolve_parametrization`)."""
    return resolve_parametrization(sde, config.training.get("parametrization"))


def is_student(config) -> bool:
    """Whether `config` is a consistency student's (`config.distill.teacher` set)."""
    return bool(config.get("distill", {}).get("teacher"))


def build_score_model(config, sde: sde_lib.SDE, device=None) -> ScoreModel:
    """The `ScoreModel` of `config.model` on `sde`, in the parametrisation of `parametrization`
    (EDM's with `config.training.sigma_data`); a consistency student's (`is_student`) in the
    consistency parametrisation around it (`models.consistency`, smallest time
    `config.distill.eps`)."""
    net = build_model(model_fields(config))
    if device is not None:
        net = net.to(device)
    kwargs = dict(continuous=config.training.continuous,
                  parametrization=parametrization(config, sde),
                  sigma_data=config.training.get("sigma_data", 0.5))
    if is_student(config):
        return ConsistencyModel(net, sde, eps=config.distill.eps, **kwargs)
    return ScoreModel(net, sde, **kwargs)


def build_ema(config, model: ScoreModel) -> ExponentialMovingAverage:
    return ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)


def build_optimizer(config, params) -> torch.optim.Optimizer:
    optim = config.optim
    if optim.optimizer != "Adam":
        raise ValueError(f"Unknown config.optim.optimizer {optim.optimizer!r}; expected one of "
                         f"['Adam']")
    params = list(params)
    # The fused kernel (CPU and CUDA) is the fastest, and it can skip a non-finite step on the
    # device (`training.step`); float tensors only.
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                 for p in params)
    return torch.optim.Adam(params, lr=optim.lr, betas=(optim.beta1, 0.999), eps=optim.eps,
                            weight_decay=optim.weight_decay, fused=fused or None)


def stored_config(config, sde: sde_lib.SDE) -> dict:
    """The config as nested dicts of plain values (loadable with weights_only=True), with the
    network's full fields and the parametrisation, as checkpoints store it."""
    plain = config.to_dict()
    plain["model"] = model_fields(config)
    plain["training"]["parametrization"] = parametrization(config, sde)
    return plain


def classifier_fields(config, sde: sde_lib.SDE, num_classes: Optional[int] = None
                      ) -> Dict[str, Any]:
    """Constructor arguments of the guidance classifier from `config.classifier` and
    `config.data` (plain values: stored in its checkpoint). `num_classes` defaults to the data
    set's; the embedding follows the SDE's noise labels (positional of 999·t, or Fourier
    features of σ; `NoisyClassifier`)."""
    section, data = config.classifier, config.data
    info = describe(data)
    if num_classes is None:
        num_classes = info.num_classes
    sigma_labels = default_parametrization(sde) == "score"
    fields: Dict[str, Any] = {"num_classes": int(num_classes),
                              "embedding_type": "fourier" if sigma_labels else "positional"}
    if info.is_image:
        fields.update(kind="image", image_size=data.image_size, num_channels=data.num_channels,
                      centered=data.centered)
        names = IMAGE_FIELDS
    else:
        fields.update(kind="vector", dim=data.dim)
        names = VECTOR_FIELDS
    for name in names:
        value = section[name]
        fields[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return fields


def build_classifier(config, sde: sde_lib.SDE, num_classes: Optional[int] = None
                     ) -> NoisyClassifier:
    """`NoisyClassifier` for `config.data` (images: `EncoderClassifier`, vectors:
    `MLPClassifier`) with the architecture of `config.classifier`; ValueError for an
    inconsistent section."""
    fields = classifier_fields(config, sde, num_classes)
    if fields["num_classes"] < 2:
        raise ValueError(f"config.data.dataset={config.data.dataset!r} has no class labels")
    return NoisyClassifier(classifier_from_fields(fields), sde)
