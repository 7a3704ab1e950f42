"""Building the pieces of a run from a config: device, SDE, score model, EMA, optimizer, loss."""
from __future__ import annotations

from typing import Any, Dict

import torch

import sde_lib
from models import ExponentialMovingAverage, ScoreModel, build_model
from training.losses import LabelDropout, build_loss


def default_device() -> torch.device:
    """CUDA when available, else the CPU (never stored in a config)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parametrization(config) -> str:
    """Network output convention: the score itself for VE (as the reference), else the noise."""
    return "score" if config.sde.name == "vesde" else "noise"


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


def build_score_model(config, sde: sde_lib.SDE, device=None) -> ScoreModel:
    net = build_model(model_fields(config))
    if device is not None:
        net = net.to(device)
    return ScoreModel(net, sde, continuous=config.training.continuous,
                      parametrization=parametrization(config))


def build_optimizer(config, params) -> torch.optim.Optimizer:
    optim = config.optim
    if optim.optimizer != "Adam":
        raise ValueError(f"Unknown config.optim.optimizer {optim.optimizer!r}; expected one of ['Adam']")
    return torch.optim.Adam(params, lr=optim.lr, betas=(optim.beta1, 0.999), eps=optim.eps,
                            weight_decay=optim.weight_decay)


def learning_rate(config, step: int) -> float:
    """Linear warm-up over `optim.warmup` steps to `optim.lr`, then constant."""
    return warmup_learning_rate(config.optim.lr, config.optim.warmup, step)


def warmup_learning_rate(lr: float, warmup: int, step: int) -> float:
    """`lr`·min(1, (step + 1)/warmup): linear warm-up over `warmup` steps (0: none)."""
    return lr * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)


def build_training_loss(config, sde: sde_lib.SDE):
    """`training.loss`: "dsm" (continuous or discrete DSM), or "hybrid" / "vlb" (DDPM with
    learned variances, `training.hybrid_loss`); wrapped in label dropout for class-conditional
    models (`model.num_classes` > 0)."""
    training = config.training
    loss_type = training.get("loss", "dsm")
    if loss_type == "dsm":
        loss = build_loss(sde, continuous=training.continuous, reduce_mean=training.reduce_mean,
                          likelihood_weighting=training.likelihood_weighting,
                          importance_sampling=training.get("importance_sampling", False),
                          discrete_weight=0.5 if config.sde.name == "vesde" else 1.0)
    else:
        from training.hybrid_loss import VLBLoss
        loss = VLBLoss(sde, loss_type=loss_type, vlb_weight=training.get("vlb_weight", 0.001),
                       reduce_mean=training.reduce_mean,
                       timestep_sampling=training.get("timestep_sampling", "uniform"))
    num_classes = config.model.get("num_classes", 0)
    if num_classes:
        loss = LabelDropout(loss, training.get("label_dropout", 0.0), null_label=num_classes)
    return loss


def build_ema(config, model: ScoreModel) -> ExponentialMovingAverage:
    return ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
