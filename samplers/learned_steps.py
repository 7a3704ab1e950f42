"""Learned step placement: the times of a fixed-step solver fitted to the model's own flow.

After LD3 (Tong et al. 2025, "Learning to Discretize Denoising Diffusion ODEs"): a few teacher
pairs (x_T, x_0) from the converged probability-flow ODE (`ode`, tight tolerances) fix the target;
the N intervals of the solver's grid are learned so that the solver run from x_T on that grid ends
near x_0. Conventions:

- Parametrisation: logits θ ∈ R^N of the intervals in the half log-SNR ℓ = `sde.log_snr`/2,
      ℓ_i = ℓ_T + (ℓ_eps − ℓ_T)·Σ_{j<i} softmax(θ)_j,   t_i = t(ℓ_i),
  so every θ gives times strictly decreasing from T to eps (end points exact); θ is kept in
  [−`LOGIT_BOUND`, `LOGIT_BOUND`] so that no interval falls below the SDE's time resolution.
- Loss: L(θ) = mean over pairs and coordinates of (Φ_θ(x_T) − x_0)², Φ_θ the registered solver on
  θ's grid (LD3's loss with the squared distance and without its relaxation, the slack ball
  around x_T). Stochastic solvers see the same noise in every evaluation (common random numbers).
- Gradient: the solvers compute their step coefficients in float64 closed forms and run under
  `no_grad` by the registry's contract; rather than a second, differentiable copy of each solver,
  ∂L/∂θ_j is taken by central differences through the very solver that will sample (2N solver
  runs per iteration; N is the few steps of a small budget). θ follows Adam (Kingma & Ba 2015)
  with a cosine-decayed rate, and the best θ seen on the training pairs is kept.
- Start: the better, on the training pairs, of the method's own schedule and the pilot-fitted
  grid of `fitted_schedule.fit_schedule` (equidistributed local error).
- The errors reported are root mean squares per coordinate on held-out pairs.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import torch

from samplers.budget import COSTS, steps_for_budget
from samplers.common import check_positive, prior_sample
from samplers.fitted_schedule import fit_schedule
from samplers.options import SCHEMA, check_options
from samplers.registry import SAMPLERS
from samplers.schedules import get_time_steps
from sde_lib import SDE
from sde_lib.utils import check_int

LOGIT_BOUND = 5.0
GRID_OPTIONS = ("schedule", "rho", "num_steps")    # fixed by the learned times


def fittable_methods() -> list:
    """The fixed-step methods whose grid can be learned: those with a `schedule` and a cost."""
    return sorted(m for m in SAMPLERS if "schedule" in SCHEMA.get(m, {}) and m in COSTS)


class LearnedSteps(NamedTuple):
    """`times` float64 `[N + 1]` from T to eps; held-out RMS errors against the teacher of the
    method's own schedule (`rms_default`), of the start (`rms_start`, from `start` "default" or
    "pilot") and of the learned times (`rms_learned`); training-pair losses; score evaluations
    spent (`nfe`, per sample of the batches, teacher included) and `iterations` run."""
    times: torch.Tensor
    rms_default: float
    rms_start: float
    rms_learned: float
    train_default: float
    train_learned: float
    start: str
    iterations: int
    nfe: int


def grid(sde: SDE, theta: torch.Tensor, eps: float) -> torch.Tensor:
    """The times `[N + 1]` of logits `theta` `[N]` (module docstring), float64."""
    ends = torch.tensor([sde.T, eps], dtype=torch.float64)
    ell_T, ell_eps = (0.5 * sde.log_snr(ends)).tolist()
    shares = torch.softmax(theta.double().clamp(-LOGIT_BOUND, LOGIT_BOUND), 0)
    ell = ell_T + (ell_eps - ell_T) * torch.cat([shares.new_zeros(1), shares.cumsum(0)])
    times = sde.t_from_log_snr(2 * ell)
    times[0], times[-1] = sde.T, eps
    return times


def logits(sde: SDE, times: torch.Tensor) -> torch.Tensor:
    """θ whose `grid` is `times` (the inverse of `grid`, up to a constant)."""
    ell = 0.5 * sde.log_snr(times.double())
    return torch.log(ell.diff()).clamp(-LOGIT_BOUND, LOGIT_BOUND)


class NamedTimes(NamedTuple):
    """Explicit times `[N + 1]` that a sampler takes as its `schedule`, shown (and recorded in a
    run's resolved settings) by `name`, e.g. "fitted:<digest of the stored schedule>"."""
    times: torch.Tensor
    name: str

    def __repr__(self) -> str:
        return self.name


class TeacherPairs(NamedTuple):
    """x_T `[B, ...]` and the converged flow's end point x_0 `[B, ...]` (float64) from it."""
    x_T: torch.Tensor
    x_0: torch.Tensor
    nfe: int


def teacher_pairs(score_fn, sde: SDE, shape: Sequence[int], *, eps: float, denoise: bool,
                  tolerance: float = 1e-5, generator=None, device=None,
                  dtype: torch.dtype = torch.float32) -> TeacherPairs:
    """`shape[0]` pairs from the prior: the probability-flow ODE solved by RK45 at rtol = atol =
    `tolerance` to `eps` (with Tweedie's step where the student has `denoise`)."""
    x_T = prior_sample(sde, tuple(shape), generator, device, dtype)
    result = SAMPLERS["ode"](score_fn, sde, tuple(shape), x_T=x_T, dtype=dtype, eps=eps,
                             denoise=denoise, rtol=tolerance, atol=tolerance)
    return TeacherPairs(x_T, result.x.double(), result.nfe)


class _Objective:
    """L(θ) on fixed pairs: one run of `method` on θ's grid (module docstring)."""

    def __init__(self, score_fn, sde, method, options, pairs, eps, dtype, seed):
        self.score_fn, self.sde, self.method, self.options = score_fn, sde, method, options
        self.pairs, self.eps, self.dtype, self.seed, self.nfe = pairs, eps, dtype, seed, 0

    def times_loss(self, times: torch.Tensor) -> float:
        x_T = self.pairs.x_T
        noise = torch.Generator(x_T.device).manual_seed(self.seed)
        result = SAMPLERS[self.method](self.score_fn, self.sde, tuple(x_T.shape), x_T=x_T,
                                       schedule=times, dtype=self.dtype, generator=noise,
                                       **self.options)
        self.nfe += result.nfe
        return (result.x.double() - self.pairs.x_0).pow(2).mean().item()

    def __call__(self, theta: torch.Tensor) -> float:
        return self.times_loss(grid(self.sde, theta, self.eps))

    def gradient(self, theta: torch.Tensor, delta: float) -> torch.Tensor:
        """Central differences of L at θ."""
        grad = torch.zeros_like(theta)
        for j in range(theta.numel()):
            step = torch.zeros_like(theta)
            step[j] = delta
            grad[j] = (self(theta + step) - self(theta - step)) / (2 * delta)
        return grad


def _adam(objective: _Objective, theta, loss, iterations, lr, delta, on_iteration):
    """(best θ, its loss, iterations run) of Adam on `objective` from θ (loss: L(θ))."""
    best, best_loss = theta.clone(), loss
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for k in range(1, iterations + 1):
        grad = objective.gradient(theta, delta)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        rate = lr * 0.5 * (1 + math.cos(math.pi * (k - 1) / iterations))
        theta = (theta - rate * (m / (1 - 0.9 ** k)) / ((v / (1 - 0.999 ** k)).sqrt() + 1e-12)
                 ).clamp(-LOGIT_BOUND, LOGIT_BOUND)
        loss = objective(theta)
        if loss < best_loss:
            best, best_loss = theta.clone(), loss
        if on_iteration is not None:
            on_iteration(k, math.sqrt(loss))
    return best, best_loss


def fit_steps(score_fn, sde: SDE, shape: Sequence[int], method: str, nfe: int, *,
              options: Optional[Dict] = None, num_holdout: int = 0, iterations: int = 40,
              lr: float = 0.05, delta: float = 1e-2, tolerance: float = 1e-5, seed: int = 0,
              device=None, dtype: torch.dtype = torch.float32,
              on_iteration: Optional[Callable[[int, float], None]] = None) -> LearnedSteps:
    """Learn the grid of `method` within `nfe` score evaluations for `score_fn` (module docstring).

    Args:
        shape: `[B, ...]`: B training pairs of the data's shape; `num_holdout` more pairs measure
            the errors reported (0: the training pairs do).
        options: the method's other options (`order`, `denoise`, `eps`, ...; its default
            `schedule` / `rho` is the baseline "default" grid); the grid options of `GRID_OPTIONS`
            are what is learned.
        iterations, lr, delta: Adam's iterations and peak rate on θ, the difference step in θ.
        tolerance: the teacher ODE's rtol = atol; seed: of the prior draws and any solver noise.
        on_iteration: `on_iteration(k, rms)` after each iteration (logging, stop requests).
    """
    if method not in fittable_methods():
        raise ValueError(f"method {method!r} has no learnable grid; expected one of "
                         f"{fittable_methods()}")
    options = check_options(method, {**(options or {}), "num_steps": None})
    num_steps = steps_for_budget(method, nfe, {k: v for k, v in options.items()
                                               if k != "num_steps"})["num_steps"]
    iterations, num_holdout = check_int("iterations", iterations), int(num_holdout)
    lr, delta = check_positive("lr", lr), check_positive("delta", delta)
    eps, denoise = options["eps"], bool(options.get("denoise", True))
    default = get_time_steps(sde, options["schedule"], num_steps, eps, rho=options["rho"])
    run_options = {k: v for k, v in options.items() if k not in GRID_OPTIONS}
    generator = torch.Generator(device or "cpu").manual_seed(seed)
    shape, spent = tuple(shape), 0

    def pairs(count):
        nonlocal spent
        made = teacher_pairs(score_fn, sde, (count,) + shape[1:], eps=eps, denoise=denoise,
                             tolerance=tolerance, generator=generator, device=device,
                             dtype=dtype)
        spent += made.nfe
        return made
    train = pairs(shape[0])
    test = pairs(num_holdout) if num_holdout else train
    objective = _Objective(score_fn, sde, method, run_options, train, eps, dtype, seed)
    pilot = fit_schedule(score_fn, sde, shape, num_steps, eps=eps, dtype=dtype, device=device,
                         order=min(3, int(options.get("order", 2))), x_T=train.x_T)
    starts = {"default": default, "pilot": pilot.times}
    losses = {name: objective.times_loss(times) for name, times in starts.items()}
    start = min(losses, key=losses.get)
    theta, loss = _adam(objective, logits(sde, starts[start]), losses[start], iterations, lr,
                        delta, on_iteration)
    times = grid(sde, theta, eps)
    held = _Objective(score_fn, sde, method, run_options, test, eps, dtype, seed)
    rms = {name: math.sqrt(held.times_loss(t)) for name, t in
           (("default", default), ("start", starts[start]), ("learned", times))}
    return LearnedSteps(times, rms["default"], rms["start"], rms["learned"],
                        math.sqrt(losses["default"]), math.sqrt(loss), start, iterations,
                        spent + pilot.nfe + objective.nfe + held.nfe)
