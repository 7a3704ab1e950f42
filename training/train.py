"""The training loop: DSM (or the DDPM losses) on the configured data, Adam with warm-up and
clipping, EMA, atomic checkpoints with automatic resume, TensorBoard scalars, and a snapshot
callback (sample grids, injected by the caller) at every numbered snapshot.

`train(config, workdir, ...)` is the builder: it turns the config into a `TrainState`,
`TrainSettings`, data and a `DataTransform`; everything below it takes explicit arguments.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from data import BatchOrder, Dataset, DataTransform, build_dataset, build_transform
from models import ExponentialMovingAverage, ScoreModel
from models.checkpoint import FORMAT
from run.builders import build_ema, build_optimizer, build_score_model, build_sde, stored_config
from run.checkpoint import (latest_checkpoint, load_checkpoint, remove_stale_temporaries,
                            save_checkpoint)
from run.distributed import DistInfo, all_reduce_mean, barrier, gather_cat, single_process
from run.paths import WorkdirPaths
from training.losses import Loss
from training.objective import build_training_loss
from training.schedule import warmup_learning_rate

# Called with the EMA model (eval mode) and the step at every numbered snapshot, on rank 0.
SnapshotFn = Callable[[ScoreModel, int], None]


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient stopped being finite (training.nan_policy="stop")."""


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

    @classmethod
    def from_config(cls, config) -> "TrainSettings":
        training, optim = config.training, config.optim
        return cls(n_iters=training.n_iters, snapshot_freq=training.snapshot_freq,
                   preemption_freq=training.snapshot_freq_for_preemption,
                   log_freq=training.log_freq, eval_freq=training.eval_freq, seed=training.seed,
                   lr=optim.lr, warmup=optim.warmup, grad_clip=optim.grad_clip,
                   nan_policy=training.get("nan_policy", "stop"))

    def is_snapshot(self, step: int) -> bool:
        """Whether `step` writes a numbered snapshot (and runs the snapshot callback)."""
        return step % self.snapshot_freq == 0 or step == self.n_iters

    def snapshot_index(self, step: int) -> int:
        return math.ceil(step / self.snapshot_freq)


class TrainState:
    """Everything a resumed run needs: model, EMA, optimizer, the loss's state, the step and the
    noise generator; `config` is the resolved config stored with every checkpoint."""

    def __init__(self, model: ScoreModel, ema: ExponentialMovingAverage,
                 optimizer: torch.optim.Optimizer, loss_fn: Loss, generator: torch.Generator,
                 config: dict):
        self.model, self.ema, self.optimizer, self.loss_fn = model, ema, optimizer, loss_fn
        self.generator, self.config = generator, config
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
                "loss": self.loss_fn.state_dict(), "config": self.config}

    def load_state_dict(self, state: dict) -> None:
        self.model.net.load_state_dict(state["model"], strict=True)
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if state.get("loss"):
            self.loss_fn.load_state_dict(state["loss"])  # e.g. the timestep sampler's history
        self.generator.set_state(state["rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())  # dropout draws from the global RNG
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def build_train_state(config, device) -> TrainState:
    """A fresh `TrainState` for `config` on `device` (initial weights from the global RNG)."""
    sde = build_sde(config)
    model = build_score_model(config, sde, device)
    generator = torch.Generator(device).manual_seed(config.training.seed)
    return TrainState(model, build_ema(config, model), build_optimizer(config, model.parameters()),
                      build_training_loss(config, sde), generator, stored_config(config, sde))


def train(config, workdir, dist_info: Optional[DistInfo] = None,
          on_snapshot: Optional[SnapshotFn] = None) -> TrainState:
    """Train from scratch or resume from `workdir`'s latest checkpoint; returns the final state.

    Under torchrun (`dist_info.world_size` > 1) the network is wrapped in
    DistributedDataParallel, each rank takes `batch_size / world_size` examples of the same
    global batch, and only rank 0 writes files and calls `on_snapshot`.
    """
    info = dist_info or single_process()
    batch_size = config.training.batch_size
    if batch_size % info.world_size:
        raise ValueError(f"config.training.batch_size={batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    paths = WorkdirPaths(workdir)
    settings = TrainSettings.from_config(config)
    torch.manual_seed(settings.seed)
    state = build_train_state(config, info.device)
    if info.is_main:
        remove_stale_temporaries([paths.checkpoints, paths.checkpoints_meta])
    barrier(info)
    resume = latest_checkpoint(paths)
    if resume is not None:
        state.load_state_dict(load_checkpoint(resume, map_location=info.device))
        logging.info("resumed from %s at step %d", resume, state.step)
    train_set = build_dataset(config.data, "train")
    test_set = build_dataset(config.data, "test")
    loop = TrainLoop(state, settings, build_transform(config.data), paths, info, on_snapshot)
    loop.run(train_set, test_set, batch_size)
    return state


def train_step(model: ScoreModel, loss_fn: Loss, optimizer: torch.optim.Optimizer,
               ema: ExponentialMovingAverage, batch: torch.Tensor, lr: float, grad_clip: float,
               *, generator: torch.Generator, info: DistInfo,
               labels: Optional[torch.Tensor] = None, forward_model=None):
    """One optimizer step; returns (loss, gradient norm before clipping) as floats.

    `forward_model` is what the loss calls (a DDP view of `model` under torchrun); the returned
    loss is averaged over all ranks, so every rank takes the same NaN decision. `labels`: the
    batch's class labels for class-conditional models. Parameters and EMA change only when the
    loss and the gradient norm are finite. `grad_clip` < 0: no clipping.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(forward_model or model, batch, generator, info.shard, labels).mean()
    loss.backward()
    loss_fn.after_backward(lambda x: gather_cat(info, x))
    loss = all_reduce_mean(info, loss)
    for group in optimizer.param_groups:
        group["lr"] = lr
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                               grad_clip if grad_clip >= 0 else float("inf"))
    loss_value, grad_value = loss.item(), grad_norm.item()
    if math.isfinite(loss_value) and math.isfinite(grad_value):  # never step on NaN / inf
        optimizer.step()
        ema.update(model.parameters())
    return loss_value, grad_value


def data_parallel(model: ScoreModel, info: DistInfo) -> ScoreModel:
    """The model the loss calls: `model` itself, or a DDP-wrapped view of its network."""
    if info.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = DistributedDataParallel(model.net, device_ids=device_ids)
    return ScoreModel(ddp, model.sde, continuous=model.continuous,
                      parametrization=model.parametrization)


class TrainLoop:
    """The loop over steps of one run: batches, steps, logging, checkpoints, snapshots."""

    def __init__(self, state: TrainState, settings: TrainSettings, transform: DataTransform,
                 paths: WorkdirPaths, info: DistInfo, on_snapshot: Optional[SnapshotFn] = None):
        self.state, self.settings, self.transform = state, settings, transform
        self.paths, self.info, self.on_snapshot = paths, info, on_snapshot

    def run(self, train_set: Dataset, test_set: Dataset, batch_size: int) -> None:
        """Train until `settings.n_iters` steps, from `state.step`."""
        state, settings, info = self.state, self.settings, self.info
        order = BatchOrder(len(train_set), batch_size, settings.seed)
        eval_order = BatchOrder(len(test_set), min(batch_size, len(test_set)), settings.seed + 1)
        forward_model = data_parallel(state.model, info)
        writer = SummaryWriter(str(self.paths.tensorboard)) if info.is_main else _NullWriter()
        progress = tqdm(total=settings.n_iters, initial=state.step, desc="train",
                        dynamic_ncols=True, disable=not info.is_main)
        tick, tick_step = time.perf_counter(), state.step
        try:
            while state.step < settings.n_iters:
                batch, labels = self._batch(train_set, order)
                lr = warmup_learning_rate(settings.lr, settings.warmup, state.step)
                loss, grad_norm = train_step(
                    state.model, state.loss_fn, state.optimizer, state.ema, batch, lr,
                    settings.grad_clip, generator=state.generator, info=info, labels=labels,
                    forward_model=forward_model)
                state.step += 1
                progress.update(1)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    self._non_finite(loss, grad_norm, writer)
                if state.step % settings.log_freq == 0:
                    rate = (state.step - tick_step) / (time.perf_counter() - tick)
                    tick, tick_step = time.perf_counter(), state.step
                    for name, value in (("loss", loss), ("grad_norm", grad_norm), ("lr", lr),
                                        ("steps_per_sec", rate)):
                        writer.add_scalar(f"train/{name}", value, state.step)
                    progress.set_postfix(loss=f"{loss:.4g}")
                if state.step % settings.eval_freq == 0 and info.is_main:
                    writer.add_scalar("eval/loss", self.eval_loss(test_set, eval_order),
                                      state.step)
                if state.step % settings.preemption_freq == 0 or settings.is_snapshot(state.step):
                    if info.is_main:
                        self.save()
                    barrier(info)
                if self.on_snapshot is not None and info.is_main \
                        and settings.is_snapshot(state.step):
                    self.snapshot()
        finally:
            progress.close()
            writer.close()

    def save(self) -> None:
        """Write the preemption checkpoint, and a numbered snapshot on snapshot steps."""
        state, settings = self.state, self.settings
        checkpoint = state.state_dict()
        if settings.is_snapshot(state.step):
            save_checkpoint(self.paths.snapshot(settings.snapshot_index(state.step)), checkpoint)
        save_checkpoint(self.paths.preemption, checkpoint)

    def _cpu_generator(self) -> torch.Generator:
        # Data augmentation runs on the CPU; seed it from (seed, step) so resuming reproduces it.
        return torch.Generator().manual_seed(self.settings.seed * 7919 + self.state.step)

    def _batch(self, dataset: Dataset, order: BatchOrder):
        """This rank's share of global batch `state.step`, augmented as the whole batch would be,
        and its class labels (None unless the model is class-conditional)."""
        indices = order.indices(self.state.step)
        batch = self.transform(dataset.data[indices], train=True, generator=self._cpu_generator())
        share = batch.shape[0] // self.info.world_size
        rows = slice(self.info.rank * share, (self.info.rank + 1) * share)
        labels = self._labels(dataset, indices)
        return batch[rows].to(self.state.device), None if labels is None else labels[rows]

    def _labels(self, dataset: Dataset, indices: torch.Tensor) -> Optional[torch.Tensor]:
        """The class labels of `indices` on the model's device, for class-conditional models."""
        num_classes = self.state.model.num_classes
        if not num_classes:
            return None
        if dataset.labels is None:
            raise ValueError(f"config.model.num_classes={num_classes} needs class labels; "
                             f"data set {dataset.name!r} has none")
        return dataset.labels[indices].to(self.state.device)

    @torch.no_grad()
    def eval_loss(self, test_set: Dataset, order: BatchOrder) -> float:
        """The loss on one test batch with the EMA weights (a fixed-seed generator for its
        noise)."""
        state = self.state
        with ema_weights(state):
            indices = order.indices(state.step)
            batch = self.transform(test_set.data[indices], train=False,
                                   generator=self._cpu_generator()).to(state.device)
            generator = torch.Generator(state.device).manual_seed(state.step)
            return state.loss_fn(state.model, batch, generator, (0, 1),
                                 self._labels(test_set, indices)).mean().item()

    def snapshot(self) -> None:
        """Run the snapshot callback with the EMA weights."""
        with ema_weights(self.state):
            self.on_snapshot(self.state.model, self.state.step)

    def _non_finite(self, loss: float, grad_norm: float, writer) -> None:
        """`nan_policy="stop"` raises (checkpoints untouched); "skip" logs and goes on."""
        message = (f"non-finite loss {loss} / gradient norm {grad_norm} at step "
                   f"{self.state.step}; the parameters were not updated")
        if self.settings.nan_policy == "stop":
            raise NonFiniteLossError(message + "; stopping (the last checkpoint is intact; set "
                                     "config.training.nan_policy=skip to skip such batches)")
        logging.warning("%s; skipping the batch", message)
        writer.add_scalar("train/skipped_non_finite", 1.0, self.state.step)


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


class _NullWriter:
    """Stands in for the SummaryWriter on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
