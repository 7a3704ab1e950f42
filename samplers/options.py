"""The one declaration of every method's options: name, type, range, default and a one-line doc.

`SCHEMA[method]` maps each keyword option of a sampling method (`samplers.sample`), of the
likelihood (`"likelihood:log_likelihood"`) and of each conditioning method (`"condition:<name>"`) to an
`Option`. Everything else derives from it: the checks of `samplers.sample` / `condition` /
`log_likelihood`, the config's up-front validation (`check_config`, with the same messages
prefixed `config.sampling.`), the defaults, the help text (`describe`) and the resolved settings
written beside samples (`resolved`). An option's config field is `Option.field` (the keyword
name unless it differs: `noise_removal` sets `denoise`, `time_schedule` sets `schedule`,
`n_steps_each` sets pc's `n_steps`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch

INF = float("inf")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: `kind` is "int", "float", "bool", "choice" or "schedule" (a name of
    `choices` or explicit times); numbers lie in [lo, hi] (open ends by `open_lo` / `open_hi`);
    `optional`: None is allowed (the method's own default)."""
    kind: str
    default: Any
    doc: str
    lo: float = -INF
    hi: float = INF
    open_lo: bool = False
    open_hi: bool = False
    choices: Tuple = ()
    optional: bool = False
    field: Optional[str] = None        # config.sampling.<field>; None: the keyword's name
    inf_ok: bool = False               # +inf allowed (where hi is inf)
    implied: Any = None                # what a None default stands for (a step count), if fixed

    def allowed(self) -> str:
        """The allowed values, in words."""
        if self.kind == "bool":
            text = "True or False"
        elif self.kind in ("choice", "schedule"):
            text = f"one of {sorted(self.choices)}" + (" or explicit decreasing times"
                                                     if self.kind == "schedule" else "")
        else:
            noun = "an integer" if self.kind == "int" else "a finite number"
            if self.lo > -INF and self.hi < INF:
                text = (f"{noun} in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}"
                        f"{')' if self.open_hi else ']'}")
            elif self.lo > -INF:
                text = f"{noun} {'>' if self.open_lo else '>='} {self.lo:g}"
            elif self.hi < INF:
                text = f"{noun} {'<' if self.open_hi else '<='} {self.hi:g}"
            else:
                text = noun
            if self.inf_ok:
                text += " (inf allowed)"
        return text + (" or None (the method's default)" if self.optional else "")

    def accepts(self, value) -> bool:
        """Whether `value` is allowed."""
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return not isinstance(value, bool) and value in self.choices
        if self.kind == "schedule":
            return (value in self.choices) if isinstance(value, str) else \
                isinstance(value, (torch.Tensor, list, tuple)) or hasattr(value, "times")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        if math.isnan(value) or (math.isinf(value) and not (value == INF and self.inf_ok)):
            return False
        above = value > self.lo if self.open_lo else value >= self.lo
        below = value < self.hi if self.open_hi else value <= self.hi
        return above and below


def number(kind: str, default, doc: str, lo=-INF, hi=INF, *, open_lo=False, open_hi=False,
           optional=False, field=None, inf_ok=False) -> Option:
    return Option(kind, default, doc, lo, hi, open_lo, open_hi, optional=optional, field=field,
                  inf_ok=inf_ok)


def choice(default, choices, doc: str, *, optional=False, field=None) -> Option:
    return Option("choice", default, doc, choices=tuple(choices), optional=optional, field=field)


def flag(default, doc: str, *, optional=False, field=None) -> Option:
    return Option("bool", default, doc, optional=optional, field=field)


def with_default(option: Option, default, **changes) -> Option:
    """`option` with another default (and other changes): one method's variant of it."""
    return dataclasses.replace(option, default=default, **changes)


def option_error(name: str, value, option: Option, method: str) -> str:
    """The one message for a value `option` refuses (the CLI prefixes `config.sampling.`)."""
    return f"{name}={value!r} is not allowed for method {method!r}; expected {option.allowed()}"


def inapplicable_error(name: str, value, method: str, takers) -> str:
    """The one message for an option that `method` does not take."""
    return (f"{name}={value!r} does not apply to method {method!r} (it would be ignored); it is "
            f"an option of {sorted(takers)}")


Checker = Callable[[Mapping[str, Any]], None]
SCHEMA: Dict[str, Dict[str, Option]] = {}
COMBINED_CHECKS: Dict[str, Checker] = {}


def declare(method: str, options: Dict[str, Option], check: Optional[Checker] = None) -> None:
    """Declare `method`'s options (and a check of their combination, given all resolved)."""
    if method in SCHEMA:
        raise ValueError(f"options of {method!r} are declared twice")
    SCHEMA[method] = dict(options)
    if check is not None:
        COMBINED_CHECKS[method] = check


def field_of(name: str, option: Option) -> str:
    return option.field or name


def _kin(method: str, other: str) -> bool:
    """Whether `other` is of `method`'s kind: sampling methods (plain names), "condition:..." or
    "likelihood:..." declarations."""
    return method.partition(":")[1] and method.partition(":")[0] == other.partition(":")[0] \
        or ":" not in method and ":" not in other


def takers(field: str, method: str = "") -> list:
    """The methods of `method`'s kind that take config field `field`."""
    return sorted(m for m, opts in SCHEMA.items()
                  if _kin(method, m) and any(field_of(n, o) == field for n, o in opts.items()))


def defaults(method: str) -> Dict[str, Any]:
    """`method`'s options with their defaults."""
    return {name: option.default for name, option in SCHEMA[method].items()}


def check_options(method: str, options: Mapping[str, Any], prefix: str = "",
                  by_field: bool = False) -> Dict[str, Any]:
    """Refuse an option `method` does not take or a value out of its range, with one line; returns
    every option of `method` resolved (the given ones over the defaults). `by_field`: name the
    options by their config fields (`prefix` "config.sampling.")."""
    schema = SCHEMA[method]
    for name, value in options.items():
        if name not in schema:
            others = [m for m, opts in SCHEMA.items() if name in opts and _kin(method, m)]
            raise ValueError(prefix + inapplicable_error(name, value, method, others))
        option = schema[name]
        if not option.accepts(value):
            shown = field_of(name, option) if by_field else name
            raise ValueError(prefix + option_error(shown, value, option, method))
    resolved = {**defaults(method), **options}
    if method in COMBINED_CHECKS:
        try:
            COMBINED_CHECKS[method](resolved)
        except ValueError as err:
            raise ValueError(f"{prefix}{err}") from None
    return resolved


def describe(method: str) -> str:
    """One line per option of `method`: field, default, allowed values and doc (for --help)."""
    lines = [f"{method}:"]
    for name, option in SCHEMA[method].items():
        lines.append(f"  {field_of(name, option)} = {option.default!r}: {option.doc} "
                     f"({option.allowed()})")
    return "\n".join(lines)


# Options shared by many methods (a method takes `with_default(...)` where its default differs).
EPS = number("float", 1e-3, "the last time of sampling (t runs T -> eps); must be < T", 0,
             open_lo=True)
DENOISE = flag(True, "end with Tweedie's E[x_0 | x_eps] (one more evaluation)",
               field="noise_removal")


def steps(default, doc: str = "time intervals (None: the method's default)", minimum: int = 1):
    """`num_steps`: intervals of the time grid (None: `default`, a number or in words)."""
    return dataclasses.replace(number("int", None, f"{doc}; default {default}", minimum,
                                      optional=True),
                               implied=default if isinstance(default, int) else None)


def rtol(default):
    return number("float", default, "relative tolerance of the adaptive steps", 0, open_lo=True)


def atol(default):
    return number("float", default, "absolute tolerance of the adaptive steps", 0, open_lo=True)


FITTED = "fitted"    # the workdir's learned times for (method, nfe): `--mode fit_steps`


def schedule(default, choices):
    return Option("schedule", default, "time schedule of the steps", choices=tuple(choices)
                  + (FITTED,), field="time_schedule")


RHO = number("float", 7.0, "the rho of EDM's schedule (Karras et al. 2022, eq. 5)", 0,
             open_lo=True)
ORDER = Option("choice", 2, "order of the multistep method", choices=(1, 2, 3))
LOWER_ORDER_FINAL = flag(None, "lower the order of the last steps (None: only without "
                         "noise_removal)", optional=True)
SAFETY = number("float", 0.9, "step-size safety factor of the adaptive steps", 0, 1,
                open_lo=True)
MAX_NFE = number("int", 20000, "stop with an error beyond this many evaluations", 1)


def field_summaries() -> Dict[str, str]:
    """config.sampling field -> the methods that take it, their defaults and the allowed values
    (for `--mode show_config`)."""
    by_field: Dict[str, list] = {}
    for method, options in SCHEMA.items():
        for name, option in options.items():
            by_field.setdefault(field_of(name, option), []).append((method, option))
    summaries = {}
    for field, uses in by_field.items():
        defaults_by_method = ", ".join(f"{m} {o.default!r}" for m, o in uses)
        summaries[field] = f"{uses[0][1].doc}; {uses[0][1].allowed()}; default: {defaults_by_method}"
    return summaries
