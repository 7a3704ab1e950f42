"""The training loop: DSM (or the DDPM losses) on the configured data, Adam with warm-up and
clipping, EMA, atomic checkpoints with automatic resume, TensorBoard scalars, and a snapshot
callback (sample grids, injected by the caller) at every numbered snapshot.

`train(config, workdir, ...)` is the builder: it turns the config into a `TrainState`,
`TrainSettings`, data and a `DataTransform`; everything below it takes explicit arguments.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Protocol

import torch
from tqdm import tqdm

from data import BatchOrder, Dataset, DataTransform, build_dataset, build_transform
from data.loader import LoaderSettings, StepBatches, build_loader_settings, in_memory_batches
from models import ScoreModel
from models.score_model import compiled, with_network
from run.checkpoint import check_format, load_latest, save_checkpoint
from run.distributed import DistInfo, barrier, single_process
from run.paths import WorkdirPaths
from run.preemption import NoStop, Preempted
from run.stored_config import check_matches
from run.tensorboard import NullWriter, SafeWriter
from training.monitor import NonFiniteLossError, StepMonitor  # noqa: F401 (re-exported)
from training.schedule import warmup_learning_rate
from training.precision import set_tf32
from training.step import TrainStep
from training.state import TrainSettings, TrainState, build_train_state, ema_weights

class SnapshotFn(Protocol):
    """What training calls at every snapshot step, on rank 0, with the EMA model (eval mode):
    e.g. `evaluation.modes.snapshot_sampler`'s sample grids."""

    def __call__(self, model: ScoreModel, step: int):
        """Write the snapshot's outputs for `step`; returns a picture for TensorBoard (an HWC
        uint8 array) or None."""

    def done(self, step: int) -> bool:
        """Whether the outputs of `step` are complete (else a resumed run writes them)."""


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
    set_tf32(bool(config.training.get("tf32", True)))
    torch.manual_seed(settings.seed)
    state = build_train_state(config, info.device)
    resume = resume_latest(state, paths, info)
    train_set, test_set = load_datasets(config.data, paths.data_index, info)
    if resume is not None:
        check_order(resume[1].get("data_order"), len(train_set), resume[0])
    loader = build_loader_settings(config.data, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loop = TrainLoop(state, settings, build_transform(config.data), paths, info, on_snapshot,
                     stop or NoStop(), loader)
    loop.run(train_set, test_set, batch_size)
    return state


def resume_latest(state: TrainState, paths: WorkdirPaths, info: DistInfo):
    """Load the workdir's latest readable checkpoint into `state` (its format and stored config
    checked first); returns (path, checkpoint), or None for a fresh run."""
    resume = load_latest(paths, map_location=info.device)
    if resume is not None:
        path, checkpoint = resume
        check_format(checkpoint, path)
        check_matches(state.config, checkpoint.get("config"), f"checkpoint {path}")
        state.load_state_dict(checkpoint, path)
        logging.info("resumed from %s at step %d", path, state.step)
    return resume


def load_datasets(data_config, cache_dir, info: DistInfo):
    """(train, test) splits of `config.data`; rank 0 builds a folder's index (kept in
    `cache_dir`) before the other ranks read it."""
    def build():
        return (build_dataset(data_config, "train", cache_dir),
                build_dataset(data_config, "test", cache_dir))

    sets = build() if info.is_main else None
    barrier(info)
    return sets if info.is_main else build()


def check_order(stored, num_examples: int, path) -> None:
    """Warn when a resumed run's training set no longer has the size its batch order had."""
    if stored and stored.get("num_examples") != num_examples:
        logging.warning("the training set held %s examples when %s was written and holds %d "
                        "now: the batches from here on differ from an uninterrupted run's",
                        stored.get("num_examples"), path, num_examples)


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch on `device`: through pinned memory without waiting for the copy on CUDA."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def data_parallel(model: ScoreModel, info: DistInfo) -> ScoreModel:
    """The model the loss calls: `model` itself, or a DDP-wrapped view of its network."""
    if info.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = DistributedDataParallel(model.net, device_ids=device_ids)
    return with_network(model, ddp)


class TrainLoop:
    """The loop over steps of one run: batches, steps, logging, checkpoints, snapshots, and
    stopping cleanly on a signal (`stop`)."""

    def __init__(self, state: TrainState, settings: TrainSettings, transform: DataTransform,
                 paths: WorkdirPaths, info: DistInfo, on_snapshot: Optional[SnapshotFn] = None,
                 stop=None, loader: LoaderSettings = LoaderSettings()):
        self.state, self.settings, self.transform = state, settings, transform
        self.paths, self.info, self.on_snapshot = paths, info, on_snapshot
        self.stop, self.loader = stop or NoStop(), loader
        self.order: Optional[BatchOrder] = None

    def run(self, train_set: Dataset, test_set: Dataset, batch_size: int) -> None:
        """Train until `settings.n_iters` steps, from `state.step`."""
        state, settings, info = self.state, self.settings, self.info
        self.order = BatchOrder(len(train_set), batch_size, settings.seed, rank=info.rank,
                                world_size=info.world_size)
        batches = self._batches(train_set)
        eval_order = BatchOrder(len(test_set), min(batch_size, len(test_set)), settings.seed + 1)
        stepper = self._stepper()
        monitor = StepMonitor(info.device, settings.nan_policy, settings.nan_skip_limit)
        # The host looks at the steps' flags at every step on the CPU (free there), else only at
        # log_freq and before each checkpoint (no synchronisation in between).
        look_every = 1 if info.device.type == "cpu" else settings.log_freq
        writer = SafeWriter(self.paths.tensorboard) if info.is_main else NullWriter()
        progress = tqdm(total=settings.n_iters, initial=state.step, desc="train",
                        dynamic_ncols=True, disable=not info.is_main)
        tick, tick_step, first = time.perf_counter(), state.step, state.step
        try:
            self._complete_snapshot(writer)
            while state.step < settings.n_iters:
                batch, labels = self._batch(next(batches))
                lr = warmup_learning_rate(settings.lr, settings.warmup, state.step)
                result = stepper.step(batch, labels, lr, state.generator)
                monitor.observe(result, state.step)
                state.step += 1
                progress.update(1)
                if state.step == first + 1 and settings.compile:
                    logging.info("first (compiling) step: %.1f s", time.perf_counter() - tick)
                logged = state.step % settings.log_freq == 0
                saved = state.step % settings.preemption_freq == 0 or settings.is_snapshot(
                    state.step)
                if logged or saved or state.step % look_every == 0:
                    means = monitor.read()          # raises on a non-finite verdict
                if logged:
                    rate = (state.step - tick_step) / (time.perf_counter() - tick)
                    tick, tick_step = time.perf_counter(), state.step
                    values = {**means, "lr": lr, "steps_per_sec": rate,
                              **state.loss_fn.parts()}
                    for name, value in values.items():
                        writer.add_scalar(f"train/{name}", value, state.step)
                    progress.set_postfix(loss=f"{means['loss']:.4g}")
                if state.step % settings.eval_freq == 0 and info.is_main:
                    writer.add_scalar("eval/loss", self.eval_loss(test_set, eval_order),
                                      state.step)
                if saved:
                    self.save()
                if self.on_snapshot is not None and info.is_main \
                        and settings.is_snapshot(state.step):
                    self.snapshot(writer)
                if self.stop.should_stop(info):
                    if not saved:
                        monitor.read()
                    self._preempt(already_saved=saved)
        finally:
            if isinstance(batches, StepBatches):
                batches.close()
            progress.close()
            writer.close()
            skipped = int(monitor.skipped)
            if skipped:
                logging.warning("skipped %d non-finite batches in this run", skipped)

    def _stepper(self) -> TrainStep:
        """The step of this run: DDP or compiled views, precision, accumulation."""
        state, settings, info = self.state, self.settings, self.info
        forward_model = data_parallel(state.model, info)
        if settings.compile:
            forward_model = compiled(forward_model)
        return TrainStep(state.model, state.loss_fn, state.optimizer, state.ema, info,
                         grad_clip=settings.grad_clip, precision=settings.precision,
                         accum_steps=settings.grad_accum_steps, forward_model=forward_model,
                         scaler=state.scaler)

    def save(self) -> None:
        """Write the preemption checkpoint, and a snapshot on snapshot steps (never over an
        existing snapshot file: what another run wrote stays)."""
        state, settings, paths = self.state, self.settings, self.paths
        if self.info.is_main:
            checkpoint = state.state_dict()
            if self.order is not None:
                checkpoint["data_order"] = self.order.position(state.step)
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

    def _batches(self, dataset: Dataset):
        """This rank's (stored examples, labels or None) of steps `state.step` … `n_iters − 1`:
        read by DataLoader workers for a streamed set, indexed in memory otherwise."""
        labels = self._dataset_labels(dataset)
        start, stop = self.state.step, self.settings.n_iters
        if dataset.streamed:
            return StepBatches(dataset.data, labels, self.order, start, stop, self.loader)
        return in_memory_batches(dataset.data, labels, self.order, start, stop)

    def _batch(self, raw_labels):
        """This rank's share of global batch `state.step` as model inputs, augmented as the
        whole batch would be, and its class labels, on the model's device."""
        raw, labels = raw_labels
        share = None
        if self.info.world_size > 1:
            share = (self.info.rank * raw.shape[0], raw.shape[0] * self.info.world_size)
        batch = self.transform(raw, train=True, generator=self._cpu_generator(), share=share)
        device = self.state.device
        return to_device(batch, device), None if labels is None else labels.to(device)

    def _dataset_labels(self, dataset: Dataset) -> Optional[torch.Tensor]:
        """The data set's class labels if the model is class-conditional, else None."""
        num_classes = self.state.model.num_classes
        if not num_classes:
            return None
        if dataset.labels is None:
            raise ValueError(f"config.model.num_classes={num_classes} needs class labels; "
                             f"data set {dataset.name!r} has none")
        return dataset.labels

    def _labels(self, dataset: Dataset, indices: torch.Tensor) -> Optional[torch.Tensor]:
        """The class labels of `indices` on the model's device, for class-conditional models."""
        labels = self._dataset_labels(dataset)
        return None if labels is None else labels[indices].to(self.state.device)

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
