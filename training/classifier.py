"""`--mode train_classifier`: the time-conditional classifier of classifier guidance, trained
on noisy data (Dhariwal & Nichol 2021, §4; Song et al. 2021, App. I.1).

Each step draws t ~ U(eps, T) per example and x_t ~ p_0t(x_t | x_0) (`sde.marginal_prob`),
and minimises the cross-entropy −log p_t(y | x_t). Adam with linear warm-up; flips and
dequantization as `config.data` says. Everything lives in `workdir/classifier/`:
`checkpoint.pth` (atomic; a rerun resumes from it), TensorBoard scalars in `tensorboard/`,
and `metrics.json`: test accuracy and cross-entropy (nats) at the times `classifier.eval_t`,
written every `eval_freq` steps and at the end. Under torchrun each rank takes its slice of
the same global batch (t and noise drawn for the whole batch) and rank 0 writes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

import sde_lib
from data import BatchOrder, Dataset, DataTransform, build_dataset, build_transform
from models.classifier import NoisyClassifier
from run.builders import build_classifier, build_sde, classifier_fields
from run.checkpoint import (CheckpointError, NoReadableCheckpoint, load_checkpoint,
                            save_checkpoint)
from run.files import write_json
from run.distributed import DistInfo, all_reduce_mean, barrier, single_process
from run.loading import CLASSIFIER_FORMAT
from run.paths import WorkdirPaths
from run.preemption import NoStop, Preempted
from run.stored_config import check_same_fields
from run.tensorboard import NullWriter, SafeWriter
from training.losses import Shard, draw_global, randn_global
from training.schedule import warmup_learning_rate


@dataclass(frozen=True)
class ClassifierSettings:
    """The training fields of a `config.classifier` section."""
    n_iters: int
    batch_size: int
    lr: float
    warmup: int
    eps: float
    seed: int
    log_freq: int
    eval_freq: int
    snapshot_freq: int
    eval_t: Tuple[float, ...]
    eval_num_examples: int

    @classmethod
    def from_config(cls, section) -> "ClassifierSettings":
        return cls(n_iters=section.n_iters, batch_size=section.batch_size, lr=section.lr,
                   warmup=section.warmup, eps=section.eps, seed=section.seed,
                   log_freq=section.log_freq, eval_freq=section.eval_freq,
                   snapshot_freq=section.snapshot_freq, eval_t=tuple(section.eval_t),
                   eval_num_examples=section.eval_num_examples)


class ClassifierState:
    """What a resumed run needs: the classifier, Adam, the step and the noise generator.
    `fields` (the network's constructor arguments) and `sde_config` are stored with it."""

    def __init__(self, model: NoisyClassifier, optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, fields: dict, sde_config: dict):
        self.model, self.optimizer, self.generator = model, optimizer, generator
        self.fields, self.sde_config = fields, sde_config
        self.step = 0
        self.metrics: Optional[Dict] = None  # the last evaluation (see `evaluate`)

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def state_dict(self) -> dict:
        return {"format": CLASSIFIER_FORMAT, "model": self.model.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "rng": self.generator.get_state(), "fields": dict(self.fields),
                "sde": self.sde_config}

    def load_state_dict(self, state: dict, path) -> None:
        check_same_fields(self.fields, state.get("fields", {}), f"classifier checkpoint {path}",
                          "classifier")
        try:
            self.model.net.load_state_dict(state["model"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"classifier checkpoint {path} does not fit config.classifier: "
                                  f"{str(err).splitlines()[0]}") from None
        self.step = int(state["step"])
        self.generator.set_state(state["rng"].cpu())


def build_classifier_state(config, device) -> ClassifierState:
    """A fresh `ClassifierState` (initial weights from `classifier.seed`)."""
    sde = build_sde(config)
    seed = config.classifier.seed
    torch.manual_seed(seed)  # initial weights (then dropout, per step)
    model = build_classifier(config, sde).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.classifier.lr)
    return ClassifierState(model, optimizer, torch.Generator(device).manual_seed(seed),
                           classifier_fields(config, sde), config.sde.to_dict())


def perturb(sde, x0: torch.Tensor, eps: float, generator: torch.Generator, shard: Shard = (0, 1)):
    """(x_t, t): t ~ U(eps, T) `[B]`, x_t = mean + std·z from `sde.marginal_prob`.

    t and z are drawn for the global batch (B × world size) and this rank's slice is kept,
    so example j sees the same noise whatever the number of processes.
    """
    t = draw_global(lambda n: torch.rand(n, generator=generator, device=generator.device),
                    x0, shard).to(x0.device)
    z = randn_global(x0, generator, shard)
    t = eps + (sde.T - eps) * t
    mean, std = sde.marginal_prob(x0, t)
    return mean + sde_lib.append_dims(std, x0.ndim).to(x0.dtype) * z, t


def train_step(state: ClassifierState, model: NoisyClassifier, x0: torch.Tensor,
               y: torch.Tensor, *, lr: float, eps: float, dropout_seed: int, info: DistInfo):
    """One Adam step on −log p_t(y | x_t); returns (loss, accuracy), averaged over ranks.

    `model` is what the step calls (a DDP view of `state.model` under torchrun). Dropout draws
    from the global RNG, seeded with `dropout_seed` (a function of seed, step and rank, so a
    resumed run repeats it and ranks draw different masks).
    """
    torch.manual_seed(dropout_seed)
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    x_t, t = perturb(state.model.sde, x0, eps, state.generator, info.shard)
    logits = model.logits(x_t, t)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    stats = all_reduce_mean(info, torch.stack([loss.detach(),
                                               (logits.argmax(1) == y).float().mean()]))
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    loss_value, accuracy = stats.tolist()
    if not math.isfinite(loss_value):
        raise ValueError(f"classifier loss is {loss_value} at step {state.step}; lower "
                         f"config.classifier.lr (the checkpoint is intact)")
    state.optimizer.step()
    return loss_value, accuracy


@torch.no_grad()
def evaluate(state: ClassifierState, test_set: Dataset, transform: DataTransform,
             settings: ClassifierSettings) -> Dict:
    """Test accuracy and cross-entropy (nats) at each t of `settings.eval_t`, with noise from a
    fixed generator (the same x_t at every evaluation)."""
    model, sde = state.model, state.model.sde
    count = min(settings.eval_num_examples or len(test_set), len(test_set))
    was_training = model.training
    model.eval()
    metrics = {"step": state.step, "num_examples": count, "accuracy": {}, "loss": {}}
    try:
        for t_value in settings.eval_t:
            generator = torch.Generator(state.device).manual_seed(settings.seed + 1)
            data_gen = torch.Generator().manual_seed(settings.seed + 2)
            correct, total_loss = 0, 0.0
            for start in range(0, count, settings.batch_size):
                rows = slice(start, min(start + settings.batch_size, count))
                x0 = transform(test_set.data[rows], train=False,
                               generator=data_gen).to(state.device)
                y = test_set.labels[rows].to(state.device)
                t = torch.full((len(y),), float(t_value), device=state.device)
                mean, std = sde.marginal_prob(x0, t)
                z = torch.randn(x0.shape, generator=generator, device=state.device)
                logits = model.logits(mean + sde_lib.append_dims(std, x0.ndim) * z, t_value)
                correct += int((logits.argmax(1) == y).sum())
                total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            metrics["accuracy"][f"{t_value:g}"] = correct / count
            metrics["loss"][f"{t_value:g}"] = total_loss / count
    finally:
        model.train(was_training)
    return metrics


def _data_parallel(state: ClassifierState, info: DistInfo) -> NoisyClassifier:
    """The classifier the step calls: `state.model`, or a DDP-wrapped view of its network."""
    if info.world_size == 1:
        return state.model
    from torch.nn.parallel import DistributedDataParallel
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return NoisyClassifier(DistributedDataParallel(state.model.net, device_ids=device_ids),
                           state.model.sde)


def train_classifier(config, workdir, dist_info: Optional[DistInfo] = None,
                     stop=None) -> ClassifierState:
    """Train from scratch or resume `workdir/classifier/checkpoint.pth`; returns the final state.

    The final metrics (see `evaluate`) are in `state.metrics` and `metrics.json`. `stop` (a
    `run.preemption.StopRequest`) ends the run with a checkpoint and `Preempted`.
    """
    info = dist_info or single_process()
    settings = ClassifierSettings.from_config(config.classifier)
    if settings.batch_size % info.world_size:
        raise ValueError(f"config.classifier.batch_size={settings.batch_size} is not divisible "
                         f"by the {info.world_size} processes")
    paths = WorkdirPaths(workdir)
    state = build_classifier_state(config, info.device)
    if paths.classifier_checkpoint.exists():
        path = paths.classifier_checkpoint
        try:
            stored = load_checkpoint(path, map_location=info.device)
        except CheckpointError as err:   # never a silent restart over a checkpoint
            raise NoReadableCheckpoint(f"{err}; restore it, or remove it to train the "
                                       f"classifier afresh") from None
        state.load_state_dict(stored, path)
        logging.info("resumed the classifier from %s at step %d", path, state.step)
    train_set, test_set = build_dataset(config.data, "train"), build_dataset(config.data, "test")
    loop = _ClassifierLoop(state, settings, build_transform(config.data), paths, info,
                           stop or NoStop())
    loop.run(train_set, test_set)
    barrier(info)
    return state


class _ClassifierLoop:
    """The steps of one classifier run: batches, steps, logging, checkpoints, evaluations."""

    def __init__(self, state: ClassifierState, settings: ClassifierSettings,
                 transform: DataTransform, paths: WorkdirPaths, info: DistInfo, stop):
        self.state, self.settings, self.transform = state, settings, transform
        self.paths, self.info, self.stop = paths, info, stop

    def _batch(self, dataset: Dataset, order: BatchOrder):
        """This rank's share of global batch `state.step`: (inputs, labels), augmented as a
        whole."""
        state, info = self.state, self.info
        index = order.indices(state.step)
        cpu_gen = torch.Generator().manual_seed(self.settings.seed * 7919 + state.step)
        x = self.transform(dataset.data[index], train=True, generator=cpu_gen)
        share = x.shape[0] // info.world_size
        rows = slice(info.rank * share, (info.rank + 1) * share)
        return x[rows].to(state.device), dataset.labels[index][rows].to(state.device)

    def save(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.paths.classifier_checkpoint, self.state.state_dict(),
                            root=self.paths.root)
        barrier(self.info)

    def _evaluate_and_log(self, test_set: Dataset, writer) -> Dict:
        metrics = evaluate(self.state, test_set, self.transform, self.settings)
        for key, value in metrics["accuracy"].items():
            writer.add_scalar(f"eval/accuracy_t{key}", value, self.state.step)
            writer.add_scalar(f"eval/loss_t{key}", metrics["loss"][key], self.state.step)
        write_json(self.paths.classifier_metrics, metrics, self.paths.root)
        return metrics

    def run(self, train_set: Dataset, test_set: Dataset) -> None:
        state, settings, info = self.state, self.settings, self.info
        order = BatchOrder(len(train_set), settings.batch_size, settings.seed)
        model = _data_parallel(state, info)
        writer = SafeWriter(self.paths.classifier_tensorboard) if info.is_main else NullWriter()
        progress = tqdm(total=settings.n_iters, initial=state.step, desc="classifier",
                        dynamic_ncols=True, disable=not info.is_main)
        try:
            while state.step < settings.n_iters:
                x0, y = self._batch(train_set, order)
                lr = warmup_learning_rate(settings.lr, settings.warmup, state.step)
                dropout_seed = settings.seed + 7919 * state.step + 104729 * info.rank
                loss, accuracy = train_step(state, model, x0, y, lr=lr, eps=settings.eps,
                                            dropout_seed=dropout_seed, info=info)
                state.step += 1
                progress.update(1)
                if state.step % settings.log_freq == 0:
                    for name, value in (("loss", loss), ("accuracy", accuracy), ("lr", lr)):
                        writer.add_scalar(f"train/{name}", value, state.step)
                    progress.set_postfix(loss=f"{loss:.4g}", acc=f"{accuracy:.3f}")
                saved = state.step % settings.snapshot_freq == 0 or state.step == settings.n_iters
                if saved:
                    self.save()
                if (state.step % settings.eval_freq == 0 and state.step < settings.n_iters
                        and info.is_main):
                    state.metrics = self._evaluate_and_log(test_set, writer)
                if self.stop.should_stop(info):
                    if not saved:
                        self.save()
                    raise Preempted(f"{self.stop.requested or 'a signal on another rank'} at "
                                    f"classifier step {state.step}; checkpoint saved in "
                                    f"{self.paths.classifier_checkpoint}; rerun the same command "
                                    f"to resume")
            if info.is_main:
                state.metrics = self._evaluate_and_log(test_set, writer)
        finally:
            progress.close()
            writer.close()
