"""`--mode distill`: train a consistency student from a trained teacher workdir (Song et al.
2023; Geng et al. 2024) with the training loop's own machinery (`training.train.TrainLoop`:
batches, steps, EMA, atomic checkpoints, resume, stop signals).

The student's config is the teacher's with a `distill` section (`cli.distill_source`); its
network starts from the teacher's EMA weights. The run's optimisation settings come from that
section: `n_iters`, `lr` (no warm-up) and `ema_rate` (the sampled weights' EMA).
"""
from __future__ import annotations

import copy
import os
from typing import Optional

import torch

from data import build_transform
from data.loader import build_loader_settings
from run.builders import build_ema
from run.distributed import DistInfo, single_process
from run.loading import load_ema_model
from run.paths import WorkdirPaths
from run.preemption import NoStop
from run.progress import weights_digest
from run.stored_config import ConfigMismatch
from training.consistency_loss import DEFAULT_LR, ConsistencyLoss, teacher_step
from training.precision import set_tf32
from training.state import TrainSettings, TrainState, build_train_state
from training.train import TrainLoop, check_order, load_datasets, resume_latest


def learning_rate(distill) -> float:
    """`distill.lr`, else the method's paper value (`DEFAULT_LR`)."""
    return distill.lr if distill.lr is not None else DEFAULT_LR[distill.method]


def run_config(config):
    """The config the loop runs: the student's, with the distill section's steps, learning rate
    and EMA rate in the training / optim / model fields the loop reads."""
    view = copy.deepcopy(config)
    with view.unlocked():
        view.training.n_iters = config.distill.n_iters
        view.optim.lr = learning_rate(config.distill)
        view.optim.warmup = 0
        view.model.ema_rate = config.distill.ema_rate
    return view


def load_teacher(config, teacher_config, device):
    """The teacher's score model (EMA weights, frozen, eval mode) from its workdir and stored
    config; ConfigMismatch when its weights are not those the student was started from
    (`distill.teacher_digest`)."""
    teacher_dir = config.distill.teacher
    teacher, _, _ = load_ema_model(teacher_config, teacher_dir, device)
    digest = weights_digest(teacher.net)
    if config.distill.teacher_digest and digest != config.distill.teacher_digest:
        raise ConfigMismatch(f"config.distill.teacher={teacher_dir}: its weights changed since "
                             f"this student began (digest {config.distill.teacher_digest} "
                             f"stored, {digest} now); use that teacher or another --workdir")
    return teacher.requires_grad_(False)


def build_loss(config, sde, teacher) -> ConsistencyLoss:
    distill = config.distill
    step = teacher_step(teacher, sde, distill.solver) if distill.method == "cd" else None
    return ConsistencyLoss(sde, distill.method, eps=distill.eps, metric_name=distill.loss,
                           step=step, num_scales=distill.num_scales, n_iters=distill.n_iters,
                           stages=distill.ect_stages, p_mean=distill.p_mean,
                           p_std=distill.p_std)


def distill(config, workdir, teacher_config, dist_info: Optional[DistInfo] = None,
            stop=None) -> TrainState:
    """Train the student of `config` in `workdir` (resuming its latest checkpoint) from the
    teacher workdir `config.distill.teacher` of config `teacher_config`; returns the state."""
    info = dist_info or single_process()
    view = run_config(config)
    paths = WorkdirPaths(workdir)
    settings = TrainSettings.from_config(view)
    set_tf32(bool(view.training.get("tf32", True)))
    torch.manual_seed(settings.seed)
    teacher = load_teacher(config, teacher_config, info.device)
    state = build_train_state(view, info.device)
    state.loss_fn = build_loss(config, state.model.sde, teacher)
    resume = resume_latest(state, paths, info)
    if resume is None:   # the student starts from the teacher's EMA weights (Song et al. 2023)
        state.model.net.load_state_dict(teacher.net.state_dict(), strict=True)
        state.ema = build_ema(view, state.model)
    train_set, test_set = load_datasets(view.data, paths.data_index, info)
    if resume is not None:
        check_order(resume[1].get("data_order"), len(train_set), resume[0])
    loader = build_loader_settings(view.data, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loop = TrainLoop(state, settings, build_transform(view.data), paths, info, None,
                     stop or NoStop(), loader)
    loop.run(train_set, test_set, view.training.batch_size)
    return state
