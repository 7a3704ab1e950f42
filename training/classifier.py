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
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import sde_lib
from models.classifier import CLASSIFIERS, NoisyClassifier, build_classifier, classifier_fields
from training.checkpoint import (CheckpointError, load_checkpoint, remove_stale_temporaries,
                                 save_checkpoint, write_json)
from training.datasets import Dataset, build_dataset
from training.distributed import DistInfo, barrier
from training.losses import draw_global, randn_global
from training.setup import default_device, warmup_learning_rate
from training.pipeline import BatchOrder, prepare_batch

FORMAT = "score-sde/classifier/v1"


def classifier_dir(workdir) -> Path:
    return Path(workdir) / "classifier"


def checkpoint_path(workdir) -> Path:
    return classifier_dir(workdir) / "checkpoint.pth"


class ClassifierState:
    """What a resumed run needs: the classifier, Adam, the step and the noise generator."""

    def __init__(self, config, device):
        self.config, self.device = config, device
        self.sde = sde_lib.build_sde(config.sde)
        torch.manual_seed(config.classifier.seed)  # initial weights (then dropout, per step)
        self.model = build_classifier(config, self.sde).to(device)
        self.fields = classifier_fields(config, self.sde)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.classifier.lr)
        self.step = 0
        self.generator = torch.Generator(device).manual_seed(config.classifier.seed)
        self.metrics: Optional[Dict] = None  # the last evaluation (see `evaluate`)

    def state_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "rng": self.generator.get_state(), "fields": dict(self.fields),
                "sde": self.config.sde.to_dict()}

    def load_state_dict(self, state: dict, path) -> None:
        try:
            self.model.net.load_state_dict(state["model"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"classifier checkpoint {path} does not fit config.classifier: "
                                  f"{str(err).splitlines()[0]}") from None
        self.step = int(state["step"])
        self.generator.set_state(state["rng"].cpu())


def perturb(sde, x0: torch.Tensor, eps: float, generator: torch.Generator, shard=(0, 1)):
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


def _batch(dataset: Dataset, order: BatchOrder, state: ClassifierState, info: DistInfo):
    """This rank's share of global batch `state.step`: (inputs, labels), augmented as a whole."""
    index = order.indices(state.step)
    cpu_gen = torch.Generator().manual_seed(state.config.classifier.seed * 7919 + state.step)
    x = prepare_batch(dataset.data[index], state.config.data, train=True, generator=cpu_gen)
    share = x.shape[0] // info.world_size
    rows = slice(info.rank * share, (info.rank + 1) * share)
    return x[rows].to(state.device), dataset.labels[index][rows].to(state.device)


def train_step(state: ClassifierState, model: NoisyClassifier, x0, y, shard=(0, 1)):
    """One Adam step on −log p_t(y | x_t); returns (loss, accuracy, lr), averaged over ranks."""
    section = state.config.classifier
    # Dropout draws from the global RNG: seeded from (seed, step, rank), so a resumed run
    # repeats it and ranks draw different masks (hence DDP matches one process only without it).
    torch.manual_seed(section.seed + 7919 * state.step + 104729 * shard[0])
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    x_t, t = perturb(state.sde, x0, section.eps, state.generator, shard)
    logits = model.logits(x_t, t)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    stats = torch.stack([loss.detach(), (logits.argmax(1) == y).float().mean()])
    if shard[1] > 1:
        import torch.distributed as dist
        dist.all_reduce(stats)
        stats /= shard[1]
    lr = warmup_learning_rate(section.lr, section.warmup, state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    loss_value, accuracy = stats.tolist()
    if not math.isfinite(loss_value):
        raise ValueError(f"classifier loss is {loss_value} at step {state.step}; lower "
                         f"config.classifier.lr (the checkpoint is intact)")
    state.optimizer.step()
    return loss_value, accuracy, lr


@torch.no_grad()
def evaluate(state: ClassifierState, test_set: Dataset) -> Dict:
    """Test accuracy and cross-entropy (nats) at each t of `classifier.eval_t`, with noise
    from a fixed generator (the same x_t at every evaluation)."""
    section, model = state.config.classifier, state.model
    count = min(section.eval_num_examples or len(test_set), len(test_set))
    was_training = model.training
    model.eval()
    metrics = {"step": state.step, "num_examples": count, "accuracy": {}, "loss": {}}
    try:
        for t_value in section.eval_t:
            generator = torch.Generator(state.device).manual_seed(section.seed + 1)
            data_gen = torch.Generator().manual_seed(section.seed + 2)
            correct, total_loss = 0, 0.0
            for start in range(0, count, section.batch_size):
                rows = slice(start, min(start + section.batch_size, count))
                x0 = prepare_batch(test_set.data[rows], state.config.data, train=False,
                                   generator=data_gen).to(state.device)
                y = test_set.labels[rows].to(state.device)
                mean, std = state.sde.marginal_prob(x0, torch.full((len(y),), float(t_value),
                                                                   device=state.device))
                z = torch.randn(x0.shape, generator=generator, device=state.device)
                logits = model.logits(mean + sde_lib.append_dims(std, x0.ndim) * z, t_value)
                correct += int((logits.argmax(1) == y).sum())
                total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            metrics["accuracy"][f"{t_value:g}"] = correct / count
            metrics["loss"][f"{t_value:g}"] = total_loss / count
    finally:
        model.train(was_training)
    return metrics


def _evaluate_and_log(state, test_set, writer, workdir) -> Dict:
    metrics = evaluate(state, test_set)
    for key, value in metrics["accuracy"].items():
        writer.add_scalar(f"eval/accuracy_t{key}", value, state.step)
        writer.add_scalar(f"eval/loss_t{key}", metrics["loss"][key], state.step)
    write_json(classifier_dir(workdir) / "metrics.json", metrics)
    return metrics


def _data_parallel(state: ClassifierState, info: DistInfo) -> NoisyClassifier:
    """The classifier the step calls: `state.model`, or a DDP-wrapped view of its network."""
    if info.world_size == 1:
        return state.model
    from torch.nn.parallel import DistributedDataParallel
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return NoisyClassifier(DistributedDataParallel(state.model.net, device_ids=device_ids),
                           state.sde)


def train_classifier(config, workdir, dist_info: Optional[DistInfo] = None) -> ClassifierState:
    """Train from scratch or resume `workdir/classifier/checkpoint.pth`; returns the final state.

    The final metrics (see `evaluate`) are in `state.metrics` and `metrics.json`.
    """
    info = dist_info or DistInfo(device=default_device())
    section = config.classifier
    if section.batch_size % info.world_size:
        raise ValueError(f"config.classifier.batch_size={section.batch_size} is not divisible by "
                         f"the {info.world_size} processes")
    folder = classifier_dir(workdir)
    state = ClassifierState(config, info.device)
    if info.is_main:
        remove_stale_temporaries(workdir, folders=("classifier",))
    barrier(info)
    if checkpoint_path(workdir).exists():
        path = checkpoint_path(workdir)
        state.load_state_dict(load_checkpoint(path, map_location=info.device), path)
        logging.info("resumed the classifier from %s at step %d", path, state.step)
    train_set, test_set = build_dataset(config.data, "train"), build_dataset(config.data, "test")
    order = BatchOrder(len(train_set), section.batch_size, section.seed)
    model = _data_parallel(state, info)
    writer = SummaryWriter(str(folder / "tensorboard")) if info.is_main else None
    progress = tqdm(total=section.n_iters, initial=state.step, desc="classifier",
                    dynamic_ncols=True, disable=not info.is_main)
    try:
        while state.step < section.n_iters:
            x0, y = _batch(train_set, order, state, info)
            loss, accuracy, lr = train_step(state, model, x0, y, info.shard)
            state.step += 1
            progress.update(1)
            if state.step % section.log_freq == 0 and writer is not None:
                for name, value in (("loss", loss), ("accuracy", accuracy), ("lr", lr)):
                    writer.add_scalar(f"train/{name}", value, state.step)
                progress.set_postfix(loss=f"{loss:.4g}", acc=f"{accuracy:.3f}")
            if state.step % section.snapshot_freq == 0 or state.step == section.n_iters:
                if info.is_main:
                    save_checkpoint(checkpoint_path(workdir), state.state_dict())
                barrier(info)
            if (state.step % section.eval_freq == 0 and state.step < section.n_iters
                    and info.is_main):
                state.metrics = _evaluate_and_log(state, test_set, writer, workdir)
        if writer is not None:
            state.metrics = _evaluate_and_log(state, test_set, writer, workdir)
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    barrier(info)
    return state


def load_classifier(config, workdir, device=None) -> NoisyClassifier:
    """The trained classifier of `workdir` (eval mode) for `config.sde`; `log_prob` is the
    `log_prob_fn` of classifier guidance. CheckpointError when absent or not matching."""
    path = checkpoint_path(workdir)
    if not path.exists():
        raise CheckpointError(f"no classifier checkpoint at {path}; train one first with "
                              f"--mode train_classifier")
    state = load_checkpoint(path, map_location=device or "cpu")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    if state["sde"] != config.sde.to_dict():
        raise CheckpointError(f"classifier checkpoint {path} was trained with config.sde="
                              f"{state['sde']}, not {config.sde.to_dict()}")
    fields = dict(state["fields"])
    kind = fields.pop("kind")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    net = CLASSIFIERS[kind](**fields)
    try:
        net.load_state_dict(state["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"classifier checkpoint {path} is inconsistent: "
                              f"{str(err).splitlines()[0]}") from None
    return NoisyClassifier(net.to(device), sde_lib.build_sde(config.sde)).eval()
