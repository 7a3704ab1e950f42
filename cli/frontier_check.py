"""Checking the `frontier` section of a config (`--mode frontier`) before any work starts."""
from __future__ import annotations

import math

from cli.checks import ConfigError
from evaluation.frontier_mode import frontier_section


def validate_frontier(config) -> None:
    """`frontier.nfe`: a non-empty list of distinct integers >= 1; `num_samples` >= 2; `seed`
    an integer >= 0; `rtol`, `atol` finite and > 0. Raises ConfigError with one line."""
    section = frontier_section(config)
    budgets = section["nfe"]
    if isinstance(budgets, int) and not isinstance(budgets, bool):
        budgets = (budgets,)
    if (not isinstance(budgets, (tuple, list)) or not budgets
            or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in budgets)
            or len(set(budgets)) != len(budgets)):
        raise ConfigError(f"config.frontier.nfe={section['nfe']!r} is not allowed; expected a "
                          f"tuple of distinct integers >= 1 (budgets of score evaluations), "
                          f"e.g. (2, 3, 5, 10, 20, 50)")
    for field, least in (("num_samples", 2), ("seed", 0)):
        value = section[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"config.frontier.{field}={value!r} is not allowed; expected an "
                              f"integer >= {least}")
    for field in ("rtol", "atol"):
        value = section[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"config.frontier.{field}={value!r} is not allowed; expected a "
                              f"finite number > 0")
