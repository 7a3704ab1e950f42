"""The training loop: DSM (or the DDPM losses) on the configured data, Adam with warm-up and
clipping, EMA, atomic checkpoints with automatic resume, TensorBoard scalars, and a snapshot
callback (sample grids, injected by the caller) at every numbered snapshot.

`train(config, workdir, ...)` is the builder: it turns the config into a `TrainState`,
`TrainSettings`, data and a `DataTransform`; everything below it takes explicit arguments.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Optional, Protocol

import torch
from tqdm import tqdm

from data import BatchOrder, Dataset, DataTransform, build_dataset, build_transform
from models import ExponentialMovingAverage, ScoreModel
from run.checkpoint import check_format, load_latest, save_checkpoint
from run.distributed import DistInfo, all_reduce_mean, barrier, gather_cat, single_process
from run.paths import WorkdirPaths
from run.preemption import NoStop, Preempted
from run.stored_config import check_matches
from run.tensorboard import NullWriter, SafeWriter
from training.losses import Loss
from training.schedule import warmup_learning_rate
from training.state import TrainSettings, TrainState, build_train_state, ema_weights

class SnapshotFn(Protocol):
    """What training calls at every snapshot step, on rank 0, with the EMA model (eval mode):
    e.g. `evaluation.modes.snapshot_sampler`'s sample grids."""

    def __call__(self, model: ScoreModel, step: int):
        """Write the snapshot's outputs for `step`; returns a picture for TensorBoard (an HWC
        uint8 array) or None."""

    def done(self, step: int) -> bool:
        """Whether the outputs of `step` are complete (else a resumed run writes them)."""


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient stopped being finite (training.nan_policy="stop")."""


def train(config, workdir, dist_info: Optional[DistInfo] = None,
          on_snapshot: Optional[SnapshotFn] = None, stop=None) -> TrainState:
    """Train from scratch or resume from `workdir`'s latest checkpoint; returns the final state.

    Under torchrun (`dist_info.world_size` > 1) the network is wrapped in
    DistributedDataParallel, each rank takes `batch_size / world_size` examples of the same
    global batch, and only rank 0 writes files and calls `on_snapshot`. `stop` (a
    `run.preemption.StopRequest`) ends the run with a preemption checkpoint and `Preempted`.
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
    resume = load_latest(paths, map_location=info.device)
    if resume is not None:
        path, checkpoint = resume
        check_format(checkpoint, path)
        check_matches(state.config, checkpoint.get("config"), f"checkpoint {path}")
        state.load_state_dict(checkpoint, path)
        logging.info("resumed from %s at step %d", path, state.step)
    train_set = build_dataset(config.data, "train")
    test_set = build_dataset(config.data, "test")
    loop = TrainLoop(state, settings, build_transform(config.data), paths, info, on_snapshot,
                     stop or NoStop())
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
        if not parameters_finite(model):   # an overflowing step: nothing may keep these weights
            raise NonFiniteLossError(
                "the parameters became non-finite after the optimizer step (learning rate too "
                "high?); stopping without saving them (the last checkpoint is intact)")
        ema.update(model.parameters())
    return loss_value, grad_value


def parameters_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter is finite (one host synchronisation)."""
    return bool(torch.stack([torch.isfinite(p.detach()).all() for p in model.parameters()]).all())


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
    """The loop over steps of one run: batches, steps, logging, checkpoints, snapshots, and
    stopping cleanly on a signal (`stop`)."""

    def __init__(self, state: TrainState, settings: TrainSettings, transform: DataTransform,
                 paths: WorkdirPaths, info: DistInfo, on_snapshot: Optional[SnapshotFn] = None,
                 stop=None):
        self.state, self.settings, self.transform = state, settings, transform
        self.paths, self.info, self.on_snapshot = paths, info, on_snapshot
        self.stop = stop or NoStop()
        self.skipped = self.consecutive_skips = 0

    def run(self, train_set: Dataset, test_set: Dataset, batch_size: int) -> None:
        """Train until `settings.n_iters` steps, from `state.step`."""
        state, settings, info = self.state, self.settings, self.info
        order = BatchOrder(len(train_set), batch_size, settings.seed)
        eval_order = BatchOrder(len(test_set), min(batch_size, len(test_set)), settings.seed + 1)
        forward_model = data_parallel(state.model, info)
        writer = SafeWriter(self.paths.tensorboard) if info.is_main else NullWriter()
        progress = tqdm(total=settings.n_iters, initial=state.step, desc="train",
                        dynamic_ncols=True, disable=not info.is_main)
        tick, tick_step = time.perf_counter(), state.step
        try:
            self._complete_snapshot(writer)
            while state.step < settings.n_iters:
                batch, labels = self._batch(train_set, order)
                lr = warmup_learning_rate(settings.lr, settings.warmup, state.step)
                loss, grad_norm = train_step(
                    state.model, state.loss_fn, state.optimizer, state.ema, batch, lr,
                    settings.grad_clip, generator=state.generator, info=info, labels=labels,
                    forward_model=forward_model)
                state.step += 1
                progress.update(1)
                self._count_non_finite(loss, grad_norm, writer)
                if state.step % settings.log_freq == 0:
                    rate = (state.step - tick_step) / (time.perf_counter() - tick)
                    tick, tick_step = time.perf_counter(), state.step
                    logged = {"loss": loss, "grad_norm": grad_norm, "lr": lr,
                              "steps_per_sec": rate, **state.loss_fn.parts()}
                    for name, value in logged.items():
                        writer.add_scalar(f"train/{name}", value, state.step)
                    progress.set_postfix(loss=f"{loss:.4g}")
                if state.step % settings.eval_freq == 0 and info.is_main:
                    writer.add_scalar("eval/loss", self.eval_loss(test_set, eval_order),
                                      state.step)
                saved = state.step % settings.preemption_freq == 0 or settings.is_snapshot(
                    state.step)
                if saved:
                    self.save()
                if self.on_snapshot is not None and info.is_main \
                        and settings.is_snapshot(state.step):
                    self.snapshot(writer)
                if self.stop.should_stop(info):
                    self._preempt(already_saved=saved)
        finally:
            progress.close()
            writer.close()
            if self.skipped:
                logging.warning("skipped %d non-finite batches in this run", self.skipped)

    def save(self) -> None:
        """Write the preemption checkpoint, and a snapshot on snapshot steps (never over an
        existing snapshot file: what another run wrote stays)."""
        state, settings, paths = self.state, self.settings, self.paths
        if self.info.is_main:
            checkpoint = state.state_dict()
            if settings.is_snapshot(state.step):
                snapshot = paths.snapshot(state.step)
                if snapshot.exists():
                    logging.warning("%s exists; kept as it is", snapshot)
                else:
                    save_checkpoint(snapshot, checkpoint, root=paths.root)
            save_checkpoint(paths.preemption, checkpoint, root=paths.root)
        barrier(self.info)

    def _preempt(self, already_saved: bool) -> None:
        """Save the preemption checkpoint (unless this step just did) and stop."""
        if not already_saved:
            self.save()
        raise Preempted(f"{self.stop.requested or 'a signal on another rank'} at step "
                        f"{self.state.step}; checkpoint saved in {self.paths.preemption}; rerun "
                        f"the same command to resume")

    def _complete_snapshot(self, writer) -> None:
        """After a resume at a snapshot step: write its samples if a kill lost them."""
        step = self.state.step
        if (step and self.on_snapshot is not None and self.info.is_main
                and self.settings.is_snapshot(step) and not self.on_snapshot.done(step)):
            logging.info("writing the samples of snapshot step %d, missing after the resume", step)
            self.snapshot(writer)

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

    def snapshot(self, writer=None) -> None:
        """Run the snapshot callback with the EMA weights; its picture goes to TensorBoard."""
        with ema_weights(self.state):
            picture = self.on_snapshot(self.state.model, self.state.step)
        if writer is not None and picture is not None:
            writer.add_image("samples", picture, self.state.step)

    def _count_non_finite(self, loss: float, grad_norm: float, writer) -> None:
        """`nan_policy="stop"` raises at a non-finite loss or gradient (checkpoints untouched);
        "skip" logs and goes on, up to `nan_skip_limit` such batches in a row."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.consecutive_skips = 0
            return
        message = (f"non-finite loss {loss} / gradient norm {grad_norm} at step "
                   f"{self.state.step}; the parameters were not updated")
        if self.settings.nan_policy == "stop":
            raise NonFiniteLossError(message + "; stopping (the last checkpoint is intact; set "
                                     "config.training.nan_policy=skip to skip such batches)")
        self.skipped += 1
        self.consecutive_skips += 1
        if self.consecutive_skips >= self.settings.nan_skip_limit:
            raise NonFiniteLossError(
                f"{self.consecutive_skips} non-finite batches in a row up to step "
                f"{self.state.step} ({self.skipped} skipped in this run); stopping (the last "
                f"checkpoint is intact; lower config.optim.lr)")
        logging.warning("%s; skipping the batch", message)
        writer.add_scalar("train/skipped_non_finite", float(self.skipped), self.state.step)
