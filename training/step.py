"""One optimizer step of the score model: micro-batches, mixed precision, clipping, and skipping
non-finite steps on the device, so the loop never waits on the host per step.

A step whose loss or gradient norm is not finite leaves the parameters, Adam's moments and the
EMA as they were. With a fused Adam (`torch.optim.Adam(fused=True)`, CPU and CUDA) the decision
stays on the device: the optimizer reads `found_inf` and skips its update inside the kernel,
the EMA update is weighted by the same flag, and the loop reads the flags only at `log_freq`
and before every checkpoint. Another optimizer falls back to reading them at each step.

Micro-batches (`grad_accum_steps` = A): the rank's share of the global batch is split into A
equal parts whose gradients add up (each loss weighted by its part of the batch); every part
replays the step's random draws from the same generator state and keeps its own rows
(`shard` over W·A virtual ranks), so the noise, and the gradient up to summation order, are
those of one large batch.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from models import ExponentialMovingAverage, ScoreModel
from run.distributed import DistInfo, all_reduce_mean, gather_cat
from training.losses import Loss
from training.precision import autocast


@dataclass
class StepResult:
    """Device tensors of one step: the loss (mean over the global batch), the gradient norm
    before clipping, whether the step was applied, whether the parameters are finite after it,
    and whether it counts as a non-finite batch for `training.nan_policy` (a non-finite loss or
    gradient; under fp16 only a non-finite loss, since gradient overflow is the scaler's)."""
    loss: torch.Tensor
    grad_norm: torch.Tensor
    applied: torch.Tensor
    params_finite: torch.Tensor
    non_finite: torch.Tensor


def parameters_finite(parameters) -> torch.Tensor:
    """Whether every parameter is finite, as a device bool: one fused norm per group of
    tensors (`torch._foreach_norm`) rather than a kernel per parameter."""
    tensors = [p.detach() for p in parameters]
    return torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all()


def supports_device_skip(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer skips a step itself when given `found_inf` (fused Adam does)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


class TrainStep:
    """`step(batch, labels, lr, generator) -> StepResult` for a model, loss, optimizer and EMA.

    `forward_model` is what the loss calls (a DDP view of `model` under torchrun, or a compiled
    one); `precision` "fp32" | "bf16" | "fp16" (`training.precision`), with `scaler` for fp16;
    `grad_clip` < 0: no clipping.
    """

    def __init__(self, model: ScoreModel, loss_fn: Loss, optimizer: torch.optim.Optimizer,
                 ema: ExponentialMovingAverage, info: DistInfo, *, grad_clip: float,
                 precision: str = "fp32", accum_steps: int = 1, forward_model=None,
                 scaler: Optional[torch.amp.GradScaler] = None):
        self.model, self.loss_fn, self.optimizer, self.ema = model, loss_fn, optimizer, ema
        self.info, self.grad_clip, self.precision = info, grad_clip, precision
        self.accum_steps, self.scaler = accum_steps, scaler
        self.forward_model = forward_model or model
        self.device_skip = supports_device_skip(optimizer)

    def _backward(self, batch: torch.Tensor, labels, generator: torch.Generator) -> torch.Tensor:
        """Forward and backward over the micro-batches; returns the rank's mean loss."""
        accum, info = self.accum_steps, self.info
        share = batch.shape[0]
        if share % accum:
            raise ValueError(f"the batch of {share} per process does not split into "
                             f"training.grad_accum_steps={accum} equal parts")
        micro = share // accum
        start_state = generator.get_state() if accum > 1 else None
        total = torch.zeros((), device=batch.device)
        for k in range(accum):
            if start_state is not None:
                generator.set_state(start_state)     # the step's draws, replayed per part
            rows = slice(k * micro, (k + 1) * micro)
            shard = (info.rank * accum + k, info.world_size * accum)
            sync = contextlib.nullcontext() if k == accum - 1 or not hasattr(
                self.forward_model.net, "no_sync") else self.forward_model.net.no_sync()
            with sync:
                with autocast(self.precision, batch.device):
                    loss = self.loss_fn(self.forward_model, batch[rows], generator, shard,
                                        None if labels is None else labels[rows])
                    loss = loss.float().mean() * (micro / share)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total = total + loss.detach()
        return total

    def step(self, batch: torch.Tensor, labels: Optional[torch.Tensor], lr: float,
             generator: torch.Generator) -> StepResult:
        model, optimizer = self.model, self.optimizer
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = self._backward(batch, labels, generator)
        self.loss_fn.after_backward(lambda x: gather_cat(self.info, x))
        loss = all_reduce_mean(self.info, loss)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)        # true gradients; overflow is recorded
        limit = self.grad_clip if self.grad_clip >= 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        if self.device_skip:
            self._device_step(finite)
        elif self.scaler is not None:               # the scaler decides (it synchronises)
            self.scaler.step(optimizer)
            self.scaler.update()
        elif bool(finite):                          # the host decides (one synchronisation)
            optimizer.step()
        params_finite = parameters_finite(model.parameters())
        self.ema.update(model.parameters(), keep=finite & params_finite)
        non_finite = ~torch.isfinite(loss) if self.scaler is not None else ~finite
        return StepResult(loss.detach(), grad_norm.detach(), finite, params_finite, non_finite)

    def _device_step(self, finite: torch.Tensor) -> None:
        """The optimizer's step, skipped inside the kernel where `finite` is False."""
        optimizer = self.optimizer
        if self.scaler is not None:
            self.scaler.step(optimizer)          # passes its overflow flag as found_inf
            self.scaler.update()
            return
        optimizer.found_inf = (~finite).to(torch.float32)
        optimizer.grad_scale = None
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale
