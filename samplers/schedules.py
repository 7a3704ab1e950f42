"""Time-step schedules for the fixed-step samplers: any schedule with any sampler, on any SDE.

A schedule is a function `(sde, num_steps, eps, **kw) -> times` returning `num_steps + 1`
decreasing float64 times from `sde.T` down to `eps`. Schedules that are uniform in something
other than t go through the SDE's own `log_snr` / `t_from_log_snr`, so they hold for VP,
sub-VP and VE alike (no branching on the SDE class). The noise-to-signal ratio used by EDM is
σ̄(t) = σ(t)/a(t) = exp(−λ(t)/2), with λ = `sde.log_snr`.

Names (`TIME_SCHEDULES`):
- "uniform":   t_i = T + i/N·(eps − T).
- "logsnr":    λ_i = λ(T) + i/N·(λ(eps) − λ(T))  (Lu et al. 2022, DPM-Solver "logSNR").
- "edm":       σ̄_i = (σ̄_max^{1/ρ} + i/N·(σ̄_min^{1/ρ} − σ̄_max^{1/ρ}))^ρ (Karras et al. 2022,
               eq. 5), with σ̄_max = σ̄(T), σ̄_min = σ̄(eps) and ρ = `rho` (default 7).
- "quadratic": √t_i = √T + i/N·(√eps − √T)  (Lu et al. 2022, "time_quadratic").
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Union

import torch

from samplers.common import check_choice, check_eps, check_positive
from sde_lib import SDE
from sde_lib.utils import check_int

Schedule = Callable[..., torch.Tensor]
TIME_SCHEDULES: Dict[str, Schedule] = {}


def register_schedule(name: str):
    """Decorator adding a schedule to `TIME_SCHEDULES` under `name`."""
    def decorator(fn: Schedule) -> Schedule:
        TIME_SCHEDULES[name] = fn
        return fn
    return decorator


def _end_times(sde: SDE, eps: float) -> torch.Tensor:
    return torch.tensor([sde.T, eps], dtype=torch.float64)


def _from_log_snr(sde: SDE, lam: torch.Tensor, eps: float) -> torch.Tensor:
    """Times for log-SNRs `lam` `[N + 1]`, end points set exactly (no inversion round-off)."""
    times = sde.t_from_log_snr(lam)
    times[0], times[-1] = sde.T, eps
    return times


@register_schedule("uniform")
def uniform(sde: SDE, num_steps: int, eps: float) -> torch.Tensor:
    """Uniform in t."""
    return torch.linspace(sde.T, eps, num_steps + 1, dtype=torch.float64)


@register_schedule("logsnr")
def logsnr(sde: SDE, num_steps: int, eps: float) -> torch.Tensor:
    """Uniform in λ = log(a²/σ²)."""
    lam_T, lam_eps = sde.log_snr(_end_times(sde, eps)).tolist()
    lam = torch.linspace(lam_T, lam_eps, num_steps + 1, dtype=torch.float64)
    return _from_log_snr(sde, lam, eps)


@register_schedule("edm")
def edm(sde: SDE, num_steps: int, eps: float, rho: float = 7.0) -> torch.Tensor:
    """Uniform in σ̄^{1/ρ}, σ̄ = σ/a (Karras et al. 2022, eq. 5); ρ → ∞ tends to "logsnr"."""
    sigma_max, sigma_min = torch.exp(-0.5 * sde.log_snr(_end_times(sde, eps))).tolist()
    ramp = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    root_max, root_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (root_max + ramp * (root_min - root_max)) ** rho
    return _from_log_snr(sde, -2 * torch.log(sigmas), eps)


@register_schedule("quadratic")
def quadratic(sde: SDE, num_steps: int, eps: float) -> torch.Tensor:
    """Uniform in √t (denser near the data)."""
    roots = torch.linspace(math.sqrt(sde.T), math.sqrt(eps), num_steps + 1, dtype=torch.float64)
    times = roots ** 2
    times[0], times[-1] = sde.T, eps
    return times


def check_schedule_options(name: str, rho: float = 7.0) -> float:
    """Validate a schedule name and ρ before any work; returns ρ as a float."""
    check_choice("schedule", name, TIME_SCHEDULES)
    return check_positive("rho", rho)


def get_time_steps(sde: SDE, name: str, num_steps: int, eps: float, *, rho: float = 7.0,
                   device=None) -> torch.Tensor:
    """`num_steps + 1` strictly decreasing float64 times from `sde.T` to `eps` by schedule `name`.

    Args:
        sde: any SDE; `name`: one of `TIME_SCHEDULES`; `num_steps` ≥ 1 intervals;
        eps: the last time, 0 < eps < T; rho: EDM's ρ > 0 (only for "edm").
        device: where the returned tensor lives (computed on the CPU).
    """
    rho = check_schedule_options(name, rho)
    eps, num_steps = check_eps(sde, eps), check_int("num_steps", num_steps)
    kwargs = {"rho": rho} if name == "edm" else {}
    times = TIME_SCHEDULES[name](sde, num_steps, eps, **kwargs)
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError(f"schedule {name!r} gave non-decreasing times for num_steps={num_steps}, "
                         f"eps={eps}: the steps are below the SDE's time resolution")
    return times.to(device)


Times = Union[str, torch.Tensor, Sequence[float]]


def check_times(sde: SDE, times) -> torch.Tensor:
    """An explicit grid: 1-D, ≥ 2 strictly decreasing finite times in (0, T]; float64 on the CPU."""
    grid = torch.as_tensor(getattr(times, "times", times), dtype=torch.float64).cpu()
    if grid.ndim != 1 or grid.numel() < 2 or not bool(torch.isfinite(grid).all()) \
            or not bool((grid[1:] < grid[:-1]).all()) or not 0 < grid[-1].item() \
            or grid[0].item() > sde.T:
        raise ValueError(f"schedule as times must be ≥ 2 strictly decreasing times in (0, T = "
                         f"{sde.T}], got {grid.tolist() if grid.numel() < 12 else grid.shape}")
    return grid


def resolve_times(sde: SDE, schedule: Times, num_steps: Optional[int], eps: float,
                  default_steps: int, rho: float = 7.0) -> torch.Tensor:
    """The grid of a fixed-step sampler: a schedule by name with `num_steps` steps (None: the
    method's `default_steps`) down to `eps`, or explicit times (e.g. `fit_steps`'s; or an object
    with a `times` attribute), which then fix the steps and the last time (`num_steps`, if
    given, must agree)."""
    if isinstance(schedule, str):
        if schedule == "fitted":
            raise ValueError("schedule='fitted' names a workdir's learned times (config.sampling."
                             "time_schedule with --mode sample / eval); here pass the times "
                             "themselves")
        check_schedule_options(schedule, rho)
        return get_time_steps(sde, schedule, default_steps if num_steps is None else num_steps,
                              eps, rho=rho)
    times = check_times(sde, schedule)
    if num_steps is not None and num_steps != times.numel() - 1:
        raise ValueError(f"num_steps={num_steps!r} disagrees with the {times.numel() - 1} steps "
                         f"of the given schedule times")
    return times
