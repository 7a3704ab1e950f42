"""The training loss a config asks for: denoising score matching (continuous or on the SDE's
discrete chain), EDM's loss, or DDPM's hybrid / variational losses; label dropout for
class-conditional models."""
from __future__ import annotations

from sde_lib import SDE
from training.edm_loss import P_MEAN, P_STD, EDMLoss
from training.hybrid_loss import VLBLoss
from training.losses import LabelDropout, Loss, build_loss


def build_training_loss(config, sde: SDE) -> Loss:
    """`config.training.loss`: "dsm" (continuous or discrete DSM), "edm" (Karras et al. 2022,
    `training.edm_loss`: `training.sigma_data`, `p_mean`, `p_std`), or "hybrid" / "vlb" (DDPM
    with learned variances, `training.hybrid_loss`); wrapped in label dropout for
    class-conditional models (`config.model.num_classes` > 0)."""
    training = config.training
    loss_type = training.get("loss", "dsm")
    if loss_type == "dsm":
        loss = build_loss(sde, continuous=training.continuous, reduce_mean=training.reduce_mean,
                          likelihood_weighting=training.likelihood_weighting,
                          importance_sampling=training.get("importance_sampling", False),
                          discrete_weight=0.5 if config.sde.name == "vesde" else 1.0)
    elif loss_type == "edm":
        loss = EDMLoss(sde, sigma_data=training.get("sigma_data", 0.5),
                       p_mean=training.get("p_mean", P_MEAN), p_std=training.get("p_std", P_STD),
                       reduce_mean=training.reduce_mean)
    else:
        loss = VLBLoss(sde, loss_type=loss_type, vlb_weight=training.get("vlb_weight", 0.001),
                       reduce_mean=training.reduce_mean,
                       timestep_sampling=training.get("timestep_sampling", "uniform"))
    num_classes = config.model.get("num_classes", 0)
    if num_classes:
        loss = LabelDropout(loss, training.get("label_dropout", 0.0), null_label=num_classes)
    return loss

