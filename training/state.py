"""What one training run is made of: its settings (`TrainSettings`, from the config) and its
resumable state (`TrainState`: model, EMA, optimizer, the loss's state, step, generator)."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from models import ExponentialMovingAverage, ScoreModel
from models.checkpoint import FORMAT
from run.builders import build_ema, build_optimizer, build_score_model, build_sde, stored_config
from training.losses import Loss
from training.objective import build_training_loss
from training.precision import grad_scaler


@dataclass(frozen=True)
class TrainSettings:
    """The numbers of a `config.training` / `config.optim` section the loop needs."""
    n_iters: int
    snapshot_freq: int
    preemption_freq: int
    log_freq: int
    eval_freq: int
    seed: int
    lr: float
    warmup: int
    grad_clip: float        # max gradient norm; negative: no clipping
    nan_policy: str = "stop"
    nan_skip_limit: int = 10   # nan_policy="skip": consecutive non-finite batches before stopping
    precision: str = "fp32"    # fp32 | bf16 | fp16 (training.precision)
    grad_accum_steps: int = 1  # micro-batches per step
    compile: bool = False      # torch.compile the network for the steps

    @classmethod
    def from_config(cls, config) -> "TrainSettings":
        training, optim = config.training, config.optim
        return cls(n_iters=training.n_iters, snapshot_freq=training.snapshot_freq,
                   preemption_freq=training.snapshot_freq_for_preemption,
                   log_freq=training.log_freq, eval_freq=training.eval_freq, seed=training.seed,
                   lr=optim.lr, warmup=optim.warmup, grad_clip=optim.grad_clip,
                   nan_policy=training.get("nan_policy", "stop"),
                   nan_skip_limit=training.get("nan_skip_limit", 10),
                   precision=training.get("precision", "fp32"),
                   grad_accum_steps=training.get("grad_accum_steps", 1),
                   compile=bool(training.get("compile", False)))

    def is_snapshot(self, step: int) -> bool:
        """Whether `step` writes a numbered snapshot (and runs the snapshot callback)."""
        return step % self.snapshot_freq == 0 or step == self.n_iters


class TrainState:
    """Everything a resumed run needs: model, EMA, optimizer, the loss's state, the step and the
    noise generator; `config` is the resolved config stored with every checkpoint."""

    def __init__(self, model: ScoreModel, ema: ExponentialMovingAverage,
                 optimizer: torch.optim.Optimizer, loss_fn: Loss, generator: torch.Generator,
                 config: dict, scaler: Optional[torch.amp.GradScaler] = None):
        self.model, self.ema, self.optimizer, self.loss_fn = model, ema, optimizer, loss_fn
        self.generator, self.config, self.scaler = generator, config, scaler
        self.step = 0

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def state_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model.net.state_dict(),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "rng": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "loss": self.loss_fn.state_dict(), "config": self.config,
                "scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict, path=None) -> None:
        """Restore a checkpoint of `state_dict()`'s layout. A converted checkpoint
        (`models.convert`: weights, EMA and step, no optimizer or generator state) continues
        with a fresh optimizer and fresh generators, said once in the log."""
        self.model.net.load_state_dict(state["model"], strict=True)
        self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        if "optimizer" not in state:
            logging.warning("%s holds no optimizer state (a converted checkpoint): training "
                            "continues from its weights with a fresh optimizer", path)
            return
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("loss"):
            self.loss_fn.load_state_dict(state["loss"])  # e.g. the timestep sampler's history
        if state.get("scaler") and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])  # fp16's loss scale
        self.generator.set_state(state["rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())  # dropout draws from the global RNG
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def build_train_state(config, device) -> TrainState:
    """A fresh `TrainState` for `config` on `device` (initial weights from the global RNG)."""
    sde = build_sde(config)
    model = build_score_model(config, sde, device)
    if config.training.get("channels_last", False) and config.model.name != "mlp":
        model = model.to(memory_format=torch.channels_last)   # NHWC convolutions
    generator = torch.Generator(device).manual_seed(config.training.seed)
    precision = config.training.get("precision", "fp32")
    return TrainState(model, build_ema(config, model), build_optimizer(config, model.parameters()),
                      build_training_loss(config, sde), generator, stored_config(config, sde),
                      grad_scaler(precision, device))


@contextlib.contextmanager
def ema_weights(state: TrainState) -> Iterator[ScoreModel]:
    """The model with the EMA weights (eval mode) inside the context, its own weights after."""
    state.ema.store(state.model.parameters())
    state.ema.copy_to(state.model.parameters())
    state.model.eval()
    try:
        yield state.model
    finally:
        state.ema.restore(state.model.parameters())
