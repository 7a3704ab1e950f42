"""`build_sampler(config.sampling)`: a sampler chosen and configured by name.

The config stops here: the returned callable passes explicit, typed options to the method. Which
config field sets which option, its range and its default all come from the methods'
declarations (`samplers.options.SCHEMA`); nothing here lists them again.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from samplers.budget import steps_for_budget
from samplers.common import Generator, ScoreFn, check_choice
from samplers.options import SCHEMA, check_options, field_of, inapplicable_error, takers
from samplers.registry import SAMPLERS, SampleResult
from sde_lib import SDE

PREFIX = "config.sampling."
def is_chain(method: str) -> bool:
    """Whether `method`'s default step count is the SDE's N (pc & co.: a chain): those take
    `pc_num_steps`. Every other fixed-step method has a default of its own (dpm_solver 20, ddim
    50, heun 17, ...: its declared `num_steps` implies a number), which only `num_steps` > 0
    overrides, so that a config's PC steps never leak into them."""
    option = SCHEMA.get(method, {}).get("num_steps")
    return option is not None and option.implied is None


def keyword_options(fn: Callable) -> set:
    """Names of the keyword-only options that `fn` (`encode`, say) takes."""
    parameters = inspect.signature(fn).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def field_map(method: str) -> Dict[str, str]:
    """config.sampling field -> `method`'s option name, for every option `method` declares."""
    return {field_of(name, option): name for name, option in SCHEMA[method].items()}


def sampler_fields() -> set:
    """Every config field that sets an option of some sampling method."""
    return {field for method in SAMPLERS for field in field_map(method)}


# Configs stored before one tolerance naming carry `abstol` / `reltol` (the adaptive solvers') and
# rtol = atol = 1e-5 (read by ode and sdeint only): they keep meaning what they meant.
LEGACY_TOLERANCES = {"abstol": "atol", "reltol": "rtol"}
LEGACY_READERS = ("adaptive_sde", "dpm_adaptive")


def _legacy(sampling_config) -> bool:
    return any(name in sampling_config for name in LEGACY_TOLERANCES)


def _legacy_tolerances(sampling_config, method: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """`options` with an old config's tolerances as they applied then."""
    if not _legacy(sampling_config) or method not in LEGACY_READERS:
        return options
    options = {k: v for k, v in options.items() if k not in ("rtol", "atol")}
    for old, new in LEGACY_TOLERANCES.items():
        if _value(sampling_config, old) is not None:
            options[new] = _value(sampling_config, old)
    return options


def _value(sampling_config, field: str):
    value = sampling_config[field] if field in sampling_config else None
    return None if field == "num_steps" and value == 0 else value   # 0: the method's default


def config_options(sampling_config, accepted: set, method: str = "pc") -> Dict[str, Any]:
    """The options among the names `accepted` that a `config.sampling` section sets (fields that
    are absent or None are left out, so the defaults hold). Field names are the declared ones
    (`noise_removal` sets `denoise`, `n_steps_each` sets pc's `n_steps`, ...); the step count is
    `resolved_num_steps`'s."""
    names = {}
    for declared in SCHEMA.values():
        for name, option in declared.items():
            names.setdefault(field_of(name, option), set()).add(name)
    for name in accepted:
        names.setdefault(name, set()).add(name)
    options = {}
    for field, targets in names.items():
        value = resolved_num_steps(sampling_config, method) if field == "num_steps" \
            else _value(sampling_config, field)
        for target in targets & set(accepted):
            if value is not None:
                options[target] = value
    return options


def check_config(sampling_config, method: str, baseline: Optional[Mapping] = None) -> Dict:
    """The options a `config.sampling` section gives `method`, checked by its declaration: one
    line naming `config.sampling.<field>` for a value out of range, or for a field that `method`
    ignores set to other than None or `baseline`'s value (the default config's section; None:
    fields of other methods are not looked at)."""
    own = field_map(method)
    legacy = {"rtol", "atol"} if _legacy(sampling_config) else set()
    for field in sorted(sampler_fields() - set(own) - legacy) if baseline is not None else ():
        value = _value(sampling_config, field)
        default = _value(baseline, field)
        if value is not None and default != value:
            hint = ("" if default is None else
                    f"; for {method!r} set it to {default!r} (the default)")
            raise ValueError(PREFIX + inapplicable_error(field, value, method,
                                                         takers(field, method)) + hint)
    options = config_options(sampling_config, set(own.values()), method)
    options = _legacy_tolerances(sampling_config, method, options)
    check_options(method, options, PREFIX, by_field=True)
    return options


class ConfiguredSampler:
    """`sampler(score_fn, sde, shape, *, generator=None, device=None)`: `method` with `options`
    (and a budget of `nfe` score evaluations, which picks its steps)."""

    def __init__(self, method: str, options: Dict[str, Any], nfe: Optional[int] = None):
        self.method, self.options, self.nfe = method, dict(options), nfe

    def __call__(self, score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                 generator: Generator = None, device=None, dtype: torch.dtype = torch.float32,
                 x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
        """Run the method; `x_T` and `callback(i, t, x, denoised)` as every sampler takes them."""
        from samplers.registry import sample
        return sample(score_fn, sde, shape, self.method, generator=generator, device=device,
                      dtype=dtype, nfe=self.nfe, x_T=x_T, callback=callback, **self.options)

    def resolved(self, sde_steps: Optional[int] = None) -> Dict[str, Any]:
        """Every option that decides the result, defaults filled in (for a chain method's steps,
        from the SDE's N = `sde_steps`), for the settings written beside the samples."""
        options = dict(self.options)
        if self.nfe is not None:
            options.update(steps_for_budget(self.method, self.nfe, options))
        resolved = check_options(self.method, options)
        for name, option in SCHEMA[self.method].items():
            if resolved[name] is None and option.implied is not None \
                    and isinstance(resolved.get("schedule", ""), str):
                resolved[name] = option.implied
        if resolved.get("num_steps", 0) is None and sde_steps is not None \
                and is_chain(self.method):
            resolved["num_steps"] = sde_steps - (self.method == "annealed_langevin")
        if self.nfe is not None:
            resolved["nfe"] = self.nfe
        return {name: value if isinstance(value, (bool, int, float, str, type(None)))
                else repr(value) for name, value in resolved.items()}

    def __repr__(self) -> str:
        budget = "" if self.nfe is None else f", nfe={self.nfe}"
        return f"ConfiguredSampler({self.method!r}, {self.options}{budget})"


def build_sampler(sampling_config, baseline: Optional[Mapping] = None) -> ConfiguredSampler:
    """The sampler a `config.sampling` section (ml_collections.ConfigDict or dict) describes.

    Reads `method` (default "pc") and the fields the method declares (`samplers.options`); with
    a `baseline` (the default config's section: `main.py` passes it), a field of another method
    is refused unless None or at its baseline value. Steps: `num_steps`
    > 0 sets any method's; 0 keeps the method's own default, except for the chain methods
    (`is_chain`, default the SDE's N), which take `pc_num_steps` when it is > 0.
    `nfe` > 0 is a budget of score evaluations instead (`samplers.budget`).
    Raises ValueError with one line naming the field and the allowed values.
    """
    method = sampling_config["method"] if "method" in sampling_config else "pc"
    check_choice("config.sampling.method", method, SAMPLERS)
    options = check_config(sampling_config, method, baseline)
    nfe = _value(sampling_config, "nfe")
    if nfe is not None:
        if _value(sampling_config, "num_steps") is None:
            options.pop("num_steps", None)        # pc_num_steps yields to the budget
        steps_for_budget(method, nfe, options, PREFIX)
    return ConfiguredSampler(method, options, nfe)


def resolved_num_steps(sampling_config, method: Optional[str] = None) -> Optional[int]:
    """The step count a `config.sampling` section gives `method` (default: its own `method`):
    `num_steps` if > 0; else, for a chain method (`is_chain`), `pc_num_steps` if > 0;
    else None, the method's own default. (`num_steps` is checked by the method's declaration.)"""
    def field(name):
        return sampling_config[name] if name in sampling_config else None

    method = field("method") or "pc" if method is None else method
    for name, applies in (("num_steps", True), ("pc_num_steps", is_chain(method))):
        value = field(name)
        if applies and value is not None and value != 0:
            if name == "pc_num_steps" and (isinstance(value, bool) or not isinstance(value, int)
                                           or value < 0):
                raise ValueError(f"config.sampling.{name} must be an integer >= 0 (0: the "
                                 f"method's default), got {value!r}")
            return value
    return None
