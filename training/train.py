"""The training loop: DSM on the configured data, Adam with warm-up and clipping, EMA,
atomic checkpoints with automatic resume, TensorBoard scalars and snapshot sample grids."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import sde_lib
from models.checkpoint import FORMAT
from training import setup
from training.checkpoint import (latest_checkpoint, load_checkpoint, preemption_path,
                                 remove_stale_temporaries, save_checkpoint, snapshot_path)
from training.datasets import build_dataset
from training.distributed import DistInfo, barrier
from training.pipeline import BatchOrder, prepare_batch


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient stopped being finite (training.nan_policy="stop")."""


class TrainState:
    """Everything a resumed run needs: model, EMA, optimizer, step and the noise generator."""

    def __init__(self, config, device):
        self.config, self.device = config, device
        self.sde = sde_lib.build_sde(config.sde)
        self.model = setup.build_score_model(config, self.sde, device)
        self.ema = setup.build_ema(config, self.model)
        self.optimizer = setup.build_optimizer(config, self.model.parameters())
        self.loss_fn = setup.build_training_loss(config, self.sde)
        self.step = 0
        self.generator = torch.Generator(device).manual_seed(config.training.seed)

    def state_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model.net.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "rng": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "loss": getattr(self.loss_fn, "state_dict", dict)(),
                "config": _plain_config(self.config)}

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

    def save(self, workdir) -> None:
        """Write the preemption checkpoint, and a numbered snapshot on `snapshot_freq` steps."""
        state = self.state_dict()
        training = self.config.training
        if self.step % training.snapshot_freq == 0 or self.step == training.n_iters:
            save_checkpoint(snapshot_path(workdir, math.ceil(self.step / training.snapshot_freq)), state)
        save_checkpoint(preemption_path(workdir), state)


def _plain_config(config) -> dict:
    """The config as nested dicts of plain values (loadable with weights_only=True)."""
    plain = config.to_dict()
    plain["model"] = setup.model_fields(config)
    plain["training"]["parametrization"] = setup.parametrization(config)
    return plain


def train(config, workdir, dist_info: Optional[DistInfo] = None) -> TrainState:
    """Train from scratch or resume from `workdir`'s latest checkpoint; returns the final state.

    Under torchrun (`dist_info.world_size` > 1) the network is wrapped in
    DistributedDataParallel, each rank takes `batch_size / world_size` examples of the same
    global batch, and only rank 0 writes files.
    """
    info = dist_info or DistInfo(device=setup.default_device())
    training = config.training
    if training.batch_size % info.world_size:
        raise ValueError(f"config.training.batch_size={training.batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    workdir = Path(workdir)
    torch.manual_seed(training.seed)
    state = TrainState(config, info.device)
    if info.is_main:
        remove_stale_temporaries(workdir)
    barrier(info)
    resume = latest_checkpoint(workdir)
    if resume is not None:
        state.load_state_dict(load_checkpoint(resume, map_location=info.device))
        logging.info("resumed from %s at step %d", resume, state.step)
    train_set = build_dataset(config.data, "train")
    test_set = build_dataset(config.data, "test")
    order = BatchOrder(len(train_set), training.batch_size, training.seed)
    eval_order = BatchOrder(len(test_set), min(training.batch_size, len(test_set)), training.seed + 1)
    loss_fn = state.loss_fn
    forward_model = _data_parallel(state, info)
    writer = SummaryWriter(str(workdir / "tensorboard")) if info.is_main else _NullWriter()
    progress = tqdm(total=training.n_iters, initial=state.step, desc="train", dynamic_ncols=True,
                    disable=not info.is_main)
    tick, tick_step = time.perf_counter(), state.step
    try:
        while state.step < training.n_iters:
            batch, labels = _batch(train_set, order, state, config, info)
            loss, grad_norm, lr = train_step(state, loss_fn, batch, forward_model, info.shard,
                                             labels)
            state.step += 1
            progress.update(1)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                _handle_non_finite(state, loss, grad_norm, writer)
            if state.step % training.log_freq == 0:
                rate = (state.step - tick_step) / (time.perf_counter() - tick)
                tick, tick_step = time.perf_counter(), state.step
                for name, value in (("loss", loss), ("grad_norm", grad_norm), ("lr", lr),
                                    ("steps_per_sec", rate)):
                    writer.add_scalar(f"train/{name}", value, state.step)
                progress.set_postfix(loss=f"{loss:.4g}")
            if state.step % training.eval_freq == 0 and info.is_main:
                writer.add_scalar("eval/loss", eval_loss(state, loss_fn, test_set, eval_order), state.step)
            if (state.step % training.snapshot_freq_for_preemption == 0
                    or state.step % training.snapshot_freq == 0 or state.step == training.n_iters):
                if info.is_main:
                    state.save(workdir)
                barrier(info)
            if training.snapshot_sampling and info.is_main and (state.step % training.snapshot_freq == 0
                                                                or state.step == training.n_iters):
                _snapshot_samples(state, workdir)
    finally:
        progress.close()
        writer.close()
    return state


def _handle_non_finite(state: TrainState, loss: float, grad_norm: float, writer) -> None:
    """`nan_policy="stop"` raises (checkpoints untouched); "skip" logs and goes on."""
    message = (f"non-finite loss {loss} / gradient norm {grad_norm} at step {state.step}; "
               f"the parameters were not updated")
    if state.config.training.get("nan_policy", "stop") == "stop":
        raise NonFiniteLossError(message + "; stopping (the last checkpoint is intact; set "
                                 "config.training.nan_policy=skip to skip such batches)")
    logging.warning("%s; skipping the batch", message)
    writer.add_scalar("train/skipped_non_finite", 1.0, state.step)


class _NullWriter:
    """Stands in for the SummaryWriter on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _data_parallel(state: TrainState, info: DistInfo):
    """The model the loss calls: `state.model` itself, or a DDP-wrapped view of its network."""
    if info.world_size == 1:
        return state.model
    from torch.nn.parallel import DistributedDataParallel

    from models import ScoreModel
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = DistributedDataParallel(state.model.net, device_ids=device_ids)
    return ScoreModel(ddp, state.sde, continuous=state.model.continuous,
                      parametrization=state.model.parametrization)


def _batch(dataset, order: BatchOrder, state: TrainState, config, info: DistInfo):
    """This rank's share of global batch `state.step`, augmented as the whole batch would be,
    and its class labels (None unless the model is class-conditional)."""
    indices = order.indices(state.step)
    batch = prepare_batch(dataset.data[indices], config.data, train=True,
                          generator=_cpu_generator(state))
    share = batch.shape[0] // info.world_size
    rows = slice(info.rank * share, (info.rank + 1) * share)
    labels = _labels(dataset, indices, state)
    return batch[rows].to(state.device), None if labels is None else labels[rows]


def _labels(dataset, indices: torch.Tensor, state: TrainState) -> Optional[torch.Tensor]:
    """The class labels of `indices` on the model's device, for class-conditional models."""
    if not state.model.num_classes:
        return None
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(f"config.model.num_classes={state.model.num_classes} needs class labels; "
                         f"data set {dataset.name!r} has none")
    return labels[indices].to(state.device)


def _cpu_generator(state: TrainState) -> torch.Generator:
    # Data augmentation runs on the CPU; seed it from (seed, step) so resuming reproduces it.
    return torch.Generator().manual_seed(state.config.training.seed * 7919 + state.step)


def train_step(state: TrainState, loss_fn, batch: torch.Tensor, model=None, shard=(0, 1),
               labels: Optional[torch.Tensor] = None):
    """One optimizer step; returns (loss, gradient norm before clipping, learning rate).

    `model` is what the loss calls (a DDP view of `state.model` under torchrun); the returned
    loss is averaged over all ranks, so every rank takes the same NaN decision. `labels`: the
    batch's class labels for class-conditional models.
    """
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model or state.model, batch, state.generator, shard, labels).mean()
    loss.backward()
    if hasattr(loss_fn, "update_sampler"):   # the hybrid loss's timestep sampler learns L_t
        loss_fn.update_sampler(_gather_fn(shard))
    if shard[1] > 1:
        import torch.distributed as dist
        loss = loss.detach().clone()
        dist.all_reduce(loss)
        loss /= shard[1]
    lr = setup.learning_rate(state.config, state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    clip = state.config.optim.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(),
                                               clip if clip >= 0 else float("inf"))
    loss_value, grad_value = loss.item(), grad_norm.item()
    if math.isfinite(loss_value) and math.isfinite(grad_value):  # never step on NaN / inf
        state.optimizer.step()
        state.ema.update(state.model.parameters())
    return loss_value, grad_value, lr


def _gather_fn(shard):
    """Concatenation over ranks in rank order (the identity for one process)."""
    if shard[1] == 1:
        return lambda x: x

    def gather(x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        parts = [torch.empty_like(x) for _ in range(shard[1])]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return gather


@torch.no_grad()
def eval_loss(state: TrainState, loss_fn, test_set, order: BatchOrder) -> float:
    """The loss on one test batch with the EMA weights (a fixed-seed generator for its noise)."""
    state.ema.store(state.model.parameters())
    state.ema.copy_to(state.model.parameters())
    state.model.eval()
    try:
        indices = order.indices(state.step)
        batch = prepare_batch(test_set.data[indices], state.config.data, train=False,
                              generator=_cpu_generator(state)).to(state.device)
        generator = torch.Generator(state.device).manual_seed(state.step)
        return loss_fn(state.model, batch, generator, (0, 1),
                       _labels(test_set, indices, state)).mean().item()
    finally:
        state.ema.restore(state.model.parameters())


def _snapshot_samples(state: TrainState, workdir: Path) -> None:
    from evaluation.sampling import generate_samples, save_samples

    state.ema.store(state.model.parameters())
    state.ema.copy_to(state.model.parameters())
    try:
        samples = generate_samples(state.config, state.model, state.sde,
                                   state.config.training.num_snapshot_samples, state.device,
                                   seed=state.config.training.seed)
        save_samples(state.config, samples, workdir / "samples" / f"iter_{state.step}",
                     nrow=state.model.num_classes)   # class-conditional: one class per column
    finally:
        state.ema.restore(state.model.parameters())
