"""The sampler frontier of one model: every fast sampler at each NFE budget, from one shared set
of prior draws x_T, measured against the converged probability flow from the same x_T and
against the data.

- The fast samplers are the fixed-step methods of the registry (those with a cost, which take a
  budget `nfe=`: `samplers.budget.COSTS`), the consistency sampler on a consistency student, and
  fitted schedules stored in the workdir (each at its own NFE). A method that cannot run at a
  budget (its cheapest step costs more, or the steps the budget buys are outside its declared
  range) is skipped with the reason, not an error.
- The converged flow is `ode` (the probability-flow ODE, Song et al. 2021, eq. 13) at tight
  `rtol` / `atol`, every method ending at the same `eps` with the same Tweedie step.
- `rms_to_flow` = sqrt(mean over samples and coordinates of (x − x_flow)²): the error of the
  sampler's map x_T → x_0 (for stochastic samplers it includes their own noise).
- The data metric is given by the caller (`quality(x) -> {name: value}`, lower is better).

Randomness: x_T `[n, ...]` from `prior_draw(sde, shape, n, seed)`; a stochastic sampler's noise
for sample i from a generator seeded by (seed + 1, i) (`evaluation.sampling.sample_generators`),
so every number is reproducible whatever the batch size.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from evaluation.sampling import sample_generators
from run.preemption import stop_checked
from samplers.budget import COSTS, steps_for_budget
from samplers.config import ConfiguredSampler
from samplers.options import SCHEMA, check_options, defaults
from samplers.registry import SAMPLERS

REFERENCE = "ode"
CONSISTENCY = "consistency"
# The `frontier` config section's defaults (configs/default.py holds the same values).
DEFAULTS = {"nfe": (2, 3, 5, 10, 20, 50), "num_samples": 1000, "seed": 0, "rtol": 1e-6,
            "atol": 1e-6}


@dataclass(frozen=True)
class Cell:
    """One sampler run: `label` (the method, "+fitted" for a fitted schedule), the method, its
    given options, the budget (`nfe`, None for explicit fitted times) and the NFE column."""
    label: str
    method: str
    options: dict
    nfe: Optional[int]
    budget: int
    schedule_file: str = ""

    def sampler(self) -> ConfiguredSampler:
        return ConfiguredSampler(self.method, self.options, self.nfe)


@dataclass(frozen=True)
class FittedSchedule:
    """A stored fitted schedule: `method`, `nfe`, `times` (T → eps), the model's digest, and the
    method's other options it was learned with (the times hold only for those)."""
    method: str
    nfe: int
    times: Tuple[float, ...]
    model_digest: str
    path: str
    options: dict = field(default_factory=dict)


@dataclass
class Plan:
    cells: List[Cell] = field(default_factory=list)
    skipped: List[dict] = field(default_factory=list)


def fast_methods(consistency: bool) -> List[str]:
    """The fixed-step methods of the registry (`COSTS`); the consistency sampler only for a
    consistency student (`consistency`), where it is registered."""
    methods = sorted(m for m in COSTS if m != CONSISTENCY and m in SAMPLERS)
    if consistency and CONSISTENCY in SAMPLERS:
        methods.append(CONSISTENCY)
    return methods


def budget_steps(method: str, nfe: int) -> str:
    """"" when `method` can run within `nfe` evaluations; else why not (one line)."""
    try:
        steps = steps_for_budget(method, nfe, {}) if method in COSTS else {"num_steps": nfe}
        check_options(method, steps)
    except ValueError as err:
        return str(err)
    return ""


def plan(methods: Sequence[str], budgets: Sequence[int], fitted: Sequence[FittedSchedule],
         model_digest: str) -> Plan:
    """The cells to run and the (label, budget, reason) of those that cannot run."""
    result = Plan()
    for method in methods:
        for nfe in budgets:
            reason = budget_steps(method, nfe)
            if reason:
                result.skipped.append({"label": method, "method": method, "budget": nfe,
                                       "reason": reason})
            elif method in COSTS:
                result.cells.append(Cell(method, method, {}, nfe, nfe))
            else:
                result.cells.append(Cell(method, method, {"num_steps": nfe}, None, nfe))
    for schedule in fitted:
        label = f"{schedule.method}+fitted"
        reason = fitted_refusal(schedule, budgets, model_digest)
        if reason:
            result.skipped.append({"label": label, "method": schedule.method,
                                   "budget": schedule.nfe, "reason": reason,
                                   "schedule_file": schedule.path})
        else:
            result.cells.append(Cell(label, schedule.method,
                                     {**schedule.options, "schedule": list(schedule.times)},
                                     None, schedule.nfe, schedule.path))
    return result


def fitted_refusal(schedule: FittedSchedule, budgets: Sequence[int], model_digest: str) -> str:
    if schedule.model_digest != model_digest:
        return (f"fitted for another model (digest {schedule.model_digest}, this model "
                f"{model_digest}); fit it again")
    if schedule.nfe not in budgets:
        return f"nfe={schedule.nfe} is not among the budgets {list(budgets)}"
    if schedule.method not in SAMPLERS or "schedule" not in SCHEMA[schedule.method]:
        return f"method {schedule.method!r} is not a registered method with a time schedule"
    if len(schedule.times) < 2 or schedule.method not in COSTS:
        return "its times do not make a fixed-step schedule"
    steps = len(schedule.times) - 1
    cost = COSTS[schedule.method](defaults(schedule.method), steps)
    if cost > schedule.nfe:
        return f"its {steps} steps cost {cost} evaluations, over nfe={schedule.nfe}"
    return ""


def prior_draw(sde, shape: Sequence[int], num_samples: int, seed: int) -> torch.Tensor:
    """The shared x_T `[num_samples, *shape]` (float32, CPU)."""
    return sde.prior_sampling((num_samples, *shape), generator=torch.Generator().manual_seed(seed))


ScoreFor = Callable[[range], Callable]


def run_sampler(sampler: ConfiguredSampler, score_for: ScoreFor, sde, x_T: torch.Tensor,
                batch_size: int, seed: int, device, stop=None) -> Tuple[torch.Tensor, int, float]:
    """(samples `[n, ...]` on the CPU, the most score evaluations of a batch, wall seconds) of
    `sampler` from `x_T`, in batches; `score_for(indices)` is the score function of those
    samples. `stop` ends it within one sampler step (`run.preemption.Preempted`)."""
    chunks, nfe, tick = [], 0, time.perf_counter()
    for start in range(0, len(x_T), batch_size):
        indices = range(start, min(start + batch_size, len(x_T)))
        result = sampler(stop_checked(score_for(indices), stop), sde,
                         (len(indices),) + tuple(x_T.shape[1:]),
                         generator=sample_generators(seed + 1, indices, device), device=device,
                         x_T=x_T[start:indices.stop].to(device))
        chunks.append(result.x.float().cpu())
        nfe = max(nfe, int(result.nfe))
    return torch.cat(chunks), nfe, time.perf_counter() - tick


def reference_sampler(rtol: float, atol: float) -> ConfiguredSampler:
    """The converged probability flow: `ode` at `rtol` / `atol`."""
    return ConfiguredSampler(REFERENCE, {"rtol": rtol, "atol": atol})


def rms(x: torch.Tensor, y: torch.Tensor) -> float:
    """sqrt(mean (x − y)²) over samples and coordinates (inf where x is not finite)."""
    value = (x.double() - y.double()).pow(2).mean().sqrt().item()
    return value if math.isfinite(value) else math.inf


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """E = 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo 2004; V-statistics), of sample
    sets `[n, d]` and `[m, d]`; 0 iff the laws agree (as n, m grow)."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    if not bool(torch.isfinite(x).all()):
        return math.inf
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean()
            - torch.cdist(y, y).mean()).item()


def measure(x: torch.Tensor, flow: torch.Tensor, quality: Callable[[torch.Tensor], Dict],
            metric: str) -> Dict[str, Optional[float]]:
    """The numbers of one cell: `rms_to_flow` and the caller's data metrics (`metric` first);
    samples that are not finite (a diverged sampler) get None for each, and `finite` False."""
    if not bool(torch.isfinite(x).all()):
        return {"finite": False, "rms_to_flow": None, metric: None}
    return {"finite": True, "rms_to_flow": rms(x, flow), **quality(x)}


def _worst_if_none(value: Optional[float]) -> float:
    return math.inf if value is None else value


def best_per_budget(cells: Sequence[dict], metric: str) -> Dict[int, dict]:
    """budget → {"by_data": label, "by_flow": label}: the cell of lowest `metric`, and of
    lowest `rms_to_flow`, at each budget (None counts as the worst; ties: the first in
    `cells`' order)."""
    best: Dict[int, dict] = {}
    for budget in sorted({cell["budget"] for cell in cells}):
        here = [c for c in cells if c["budget"] == budget]
        best[budget] = {
            "by_data": min(here, key=lambda c: _worst_if_none(c[metric]))["label"],
            "by_flow": min(here, key=lambda c: _worst_if_none(c["rms_to_flow"]))["label"]}
    return best
