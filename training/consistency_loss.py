"""Consistency training objectives for a student `models.consistency.ConsistencyModel`.

Both compare the student at a noisier point with its own stop-gradient output at a less noisy
point of the same trajectory, θ⁻ = stopgrad(θ) (Song & Dhariwal 2023, sec. 3.2, which found the
EMA target of Song et al. 2023 unnecessary):
    L = λ(σ_hi, σ_lo)·d(f_θ(x_hi, t_hi), f_θ⁻(x_lo, t_lo)).
- "cd" (Song et al. 2023, Alg. 2): t_lo < t_hi adjacent points of a fixed grid (EDM's
  ρ-schedule of `num_scales` points from eps to T), x_hi = a·x_0 + std·z, and x_lo one step of
  the teacher's probability-flow ODE from x_hi by a fixed-step sampler of `samplers` (`solver`,
  default Heun); λ = 1.
- "ect" (Geng et al. 2024, easy consistency tuning): no teacher, x_lo = a(t_lo)·(x_0 + σ_lo·z)
  with the same z; σ_hi ~ lognormal(p_mean, p_std) and σ_lo = σ_hi·(1 − n(σ_hi)/2^k),
  n(σ) = 1 + 8·sigmoid(−σ), k = ⌊stage⌋ of `stages` over the run, clamped at σ_min (so Δt
  shrinks from the whole way down to σ_min, a denoising objective, towards 0); λ = 1/(σ_hi − σ_lo).
Metric d: "l2" (mean squared error) or "pseudo_huber" √(‖Δ‖² + c²) − c with c = 0.00054·√d
(Song & Dhariwal 2023, sec. 3.3).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from sde_lib import SDE, append_dims
from training.losses import Loss, conditioned, draw_global, randn_global

METHODS = ("cd", "ect")
METRICS = ("l2", "pseudo_huber")
# Deterministic fixed-step samplers with explicit time grids: the teacher's one step.
SOLVERS = ("heun", "ddim", "dpm_solver", "unipc")
HUBER_C = 0.00054
# Adam's learning rate of each method's paper: Song et al. 2023 (CD, CIFAR-10) and Geng et al.
# 2024 (ECT, CIFAR-10).
DEFAULT_LR = {"cd": 4e-4, "ect": 1e-4}

TeacherStep = Callable[[torch.Tensor, float, float, Optional[torch.Tensor]], torch.Tensor]


def metric(pred: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """Per-example distance `[B]` of `[B, ...]` tensors ("l2" or "pseudo_huber")."""
    diff = (pred - target).flatten(1)
    if name == "l2":
        return diff.pow(2).mean(1)
    c = HUBER_C * math.sqrt(diff.shape[1])
    return torch.sqrt(diff.pow(2).sum(1) + c ** 2) - c


def cd_grid(sde: SDE, num_scales: int, eps: float, rho: float = 7.0) -> torch.Tensor:
    """The increasing float64 times t_1 = eps < … < t_N = T of CD (EDM's ρ-schedule)."""
    from samplers.schedules import get_time_steps   # (training may use samplers)
    return get_time_steps(sde, "edm", num_scales - 1, eps, rho=rho).flip(0)


def teacher_step(teacher, sde: SDE, solver: str) -> TeacherStep:
    """`step(x, t_hi, t_lo, y)`: one step of `solver` on the teacher's probability flow from
    x at t_hi to t_lo (floats), through `samplers.sample` with the explicit grid [t_hi, t_lo]."""
    import samplers

    def step(x, t_hi, t_lo, y=None):
        return samplers.sample(conditioned(teacher, y), sde, x.shape, solver, x_T=x,
                               dtype=x.dtype, device=x.device, schedule=[t_hi, t_lo],
                               denoise=False).x
    return step


class ConsistencyLoss(Loss):
    """`loss(student, x0, generator, shard, y) -> [B]` for "cd" (`step` the teacher's) or
    "ect" (`step` None); `n_iters` paces ECT's stages. Its state is the step count."""

    def __init__(self, sde: SDE, method: str, *, eps: float, metric_name: str,
                 step: Optional[TeacherStep] = None, num_scales: int = 18, n_iters: int = 1,
                 stages: int = 8, p_mean: float = -1.1, p_std: float = 2.0):
        self.sde, self.method, self.eps, self.metric_name = sde, method, eps, metric_name
        self.teacher_step, self.n_iters, self.stages = step, n_iters, stages
        self.p_mean, self.p_std = p_mean, p_std
        self.grid = cd_grid(sde, num_scales, eps) if method == "cd" else None
        self.step = 0
        self._last = {}

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))

    def after_backward(self, gather) -> None:
        self.step += 1

    def parts(self) -> dict:
        return dict(self._last)

    def _cd_points(self, x0, z, generator, shard, y):
        n = draw_global(lambda m: torch.randint(0, self.grid.numel() - 1, (m,),
                                                generator=generator, device=generator.device),
                        x0, shard).cpu()
        t_hi, t_lo = self.grid[n + 1], self.grid[n]
        mean_coeff, std = self.sde.marginal_coeffs(t_hi)
        x_hi = append_dims(mean_coeff, x0.ndim).to(x0) * x0 + append_dims(std, x0.ndim).to(x0) * z
        x_lo = torch.empty_like(x_hi)
        for index in torch.unique(n).tolist():      # one teacher step per grid interval
            rows = (n == index).nonzero().squeeze(1).to(x0.device)
            x_lo[rows] = self.teacher_step(x_hi[rows], self.grid[index + 1].item(),
                                           self.grid[index].item(),
                                           None if y is None else y[rows])
        return t_hi, t_lo, x_hi, x_lo, torch.ones_like(t_hi)

    def _ect_points(self, x0, z, generator, shard):
        normal = draw_global(lambda m: torch.randn(m, generator=generator, device=generator.device,
                                                   dtype=torch.float64), x0, shard).cpu()
        sigma_min = self.sde.sigma_bar(torch.tensor([self.eps], dtype=torch.float64))
        sigma_max = self.sde.sigma_bar(torch.tensor([self.sde.T], dtype=torch.float64))
        sigma_hi = torch.exp(self.p_mean + self.p_std * normal).clamp(sigma_min * 1.001, sigma_max)
        stage = min(self.step * self.stages // max(self.n_iters, 1), self.stages)
        shrink = (1 + 8 * torch.sigmoid(-sigma_hi)) / 2.0 ** stage
        sigma_lo = torch.maximum(sigma_hi * (1 - shrink), sigma_min)
        t_hi, t_lo = (self.sde.t_from_log_snr(-2 * torch.log(s)) for s in (sigma_hi, sigma_lo))
        t_hi, t_lo = t_hi.clamp(max=self.sde.T), t_lo.clamp(min=self.eps)
        points = []
        for t in (t_hi, t_lo):
            mean_coeff, std = self.sde.marginal_coeffs(t)
            points.append(append_dims(mean_coeff, x0.ndim).to(x0) * x0
                          + append_dims(std, x0.ndim).to(x0) * z)
        return t_hi, t_lo, points[0], points[1], 1 / (sigma_hi - sigma_lo)

    def __call__(self, student, x0: torch.Tensor, generator=None, shard=(0, 1), y=None):
        z = randn_global(x0, generator, shard)
        if self.method == "cd":
            with torch.no_grad():
                t_hi, t_lo, x_hi, x_lo, weight = self._cd_points(x0, z, generator, shard, y)
        else:
            t_hi, t_lo, x_hi, x_lo, weight = self._ect_points(x0, z, generator, shard)
        device = x0.device
        with torch.no_grad():
            target = student.denoise(x_lo, t_lo.to(device, x0.dtype), y)
        pred = student.denoise(x_hi, t_hi.to(device, x0.dtype), y)
        loss = metric(pred, target, self.metric_name) * weight.to(device, x0.dtype)
        self._last = {"delta_t": float((t_hi - t_lo).mean())}
        return loss
