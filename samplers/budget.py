"""An NFE budget: the steps a fixed-step method takes for at most B score evaluations.

Each fixed-step method registers `cost(options, num_steps) -> NFE` (its exact count, with the
final Tweedie step); `steps_for_budget` picks the most steps whose cost is within the budget.
Adaptive methods have no such cost (their NFE follows rtol / atol) and refuse a budget.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

from samplers.options import defaults

Cost = Callable[[Mapping[str, Any], int], int]
COSTS: Dict[str, Cost] = {}


def check_budget(method: str, nfe, options: Mapping[str, Any], prefix: str = "") -> None:
    """Refuse a budget that is not an integer >= 1, one for an adaptive method, or one given with
    its own `num_steps` or explicit times."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"{prefix}nfe={nfe!r} is not allowed; expected an integer >= 1 "
                         f"(a budget of score evaluations)")
    if method not in COSTS:
        raise ValueError(f"{prefix}nfe={nfe!r} does not apply to method {method!r} (its steps are "
                         f"adaptive: rtol / atol set its cost); it applies to {sorted(COSTS)}")
    if options.get("num_steps") is not None:
        raise ValueError(f"{prefix}nfe={nfe!r} and num_steps={options['num_steps']!r} both set "
                         f"the steps of {method!r}; give one of them")
    if not isinstance(options.get("schedule", ""), str):
        raise ValueError(f"{prefix}nfe={nfe!r} picks the steps of {method!r}, but explicit "
                         f"schedule times fix them; give a schedule name")


def steps_for_budget(method: str, nfe: int, given: Mapping[str, Any],
                     prefix: str = "") -> Dict[str, Any]:
    """The options (`num_steps`, and for annealed Langevin `n_steps_each` unless given) with which
    `method` spends at most `nfe` evaluations, as many as it can; `given`: its other options."""
    check_budget(method, nfe, given, prefix)
    resolved = {**defaults(method), **given}
    chosen = dict(resolved)
    if method == "annealed_langevin" and "n_steps_each" not in given:
        # Fewer Langevin steps per level where the budget cannot pay the default at two levels.
        chosen["n_steps_each"] = max(1, min(resolved["n_steps_each"],
                                            (nfe - resolved["denoise"]) // 2))
    cost = COSTS[method]
    if cost(chosen, 1) > nfe:
        raise ValueError(f"{prefix}nfe={nfe} is too small for method {method!r}: one step costs "
                         f"{cost(chosen, 1)} evaluations")
    steps = 1
    while cost(chosen, steps + 1) <= nfe:
        steps += 1
    picked = {"num_steps": steps}
    if method == "annealed_langevin":
        picked["n_steps_each"] = chosen["n_steps_each"]
    return picked


def one_per_step(options: Mapping[str, Any], num_steps: int) -> int:
    """NFE of a method with one evaluation per step (+1 for the final Tweedie step)."""
    return num_steps + bool(options["denoise"])
