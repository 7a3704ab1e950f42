"""`build_sampler(config.sampling)`: a sampler chosen and configured by name.

The config stops here: the returned callable passes explicit, typed options to the method.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from samplers.common import Generator, ScoreFn, check_choice
from samplers.ode import ODE_METHODS
from samplers.pc import check_pc_options
from samplers.predictors import PREDICTORS
from samplers.registry import SAMPLERS, SampleResult
from samplers.schedules import TIME_SCHEDULES
from samplers.sdeint import SDE_METHODS
from sde_lib import SDE

# config.sampling field -> the option name(s) it sets, for the methods that take that option.
CONFIG_FIELDS = {
    "predictor": ("predictor",),
    "corrector": ("corrector",),
    "snr": ("snr",),
    "n_steps_each": ("n_steps", "n_steps_each"),
    "noise_removal": ("denoise",),
    "probability_flow": ("probability_flow",),
    "rtol": ("rtol",),
    "atol": ("atol",),
    "eps": ("eps",),
    "num_steps": ("num_steps",),
    "ode_method": ("ode_method",),
    "sde_method": ("sde_method",),
    "step_lr": ("step_lr",),
    "adaptive": ("adaptive",),
    "variance": ("variance",),   # the ancestral predictor's reverse variance
    # "ddim", "heun", "dpm_solver", "adaptive_sde".
    "eta": ("eta",),
    "time_schedule": ("schedule",),
    "rho": ("rho",),
    "s_churn": ("s_churn",),
    "s_tmin": ("s_tmin",),
    "s_tmax": ("s_tmax",),
    "s_noise": ("s_noise",),
    "order": ("order",),
    "abstol": ("abstol",),
    "reltol": ("reltol",),
    "safety": ("safety",),
    # UniPC / DPM-Solver++.
    "variant": ("variant",),
    "unic": ("unic",),
    "lower_order_final": ("lower_order_final",),
    # Conditioning (`samplers.condition`, `--mode sample` tasks inpaint / colorize / superres).
    "num_particles": ("num_particles",),
    "ess_threshold": ("ess_threshold",),
    "lookahead": ("lookahead",),
    "data_std": ("data_std",),
    "jump_length": ("jump_length",),
    "jump_n_sample": ("jump_n_sample",),
    "dps_scale": ("dps_scale",),
}
# Methods whose default step count is the SDE's N (a chain): they take `pc_num_steps`. Every
# other fixed-step method has a default of its own (dpm_solver 20, ddim 50, heun 18 levels, ...),
# which only `num_steps` > 0 overrides, so that a config's PC steps never leak into them.
CHAIN_METHODS = ("pc", "ancestral", "reverse_diffusion", "euler_maruyama", "annealed_langevin",
                 "sdeint")


def keyword_options(fn: Callable) -> set:
    """Names of the keyword-only options that `fn` (a sampling method, `inpaint`, …) takes."""
    parameters = inspect.signature(fn).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def method_options(method: str) -> set:
    """Names of the keyword options that sampling method `method` takes."""
    return keyword_options(SAMPLERS[method])


def config_options(sampling_config, accepted: set, method: str = "pc") -> Dict[str, Any]:
    """The options a `config.sampling` section sets among the names `accepted`, by the table
    `CONFIG_FIELDS` (`noise_removal` sets `denoise`; `n_steps_each` sets "pc"'s `n_steps` and
    "annealed_langevin"'s `n_steps_each`), for sampling method `method`. Fields absent from the
    config, or None, are left out (the function's defaults hold); the step count is
    `resolved_num_steps`'s."""
    options = {}
    for name, targets in CONFIG_FIELDS.items():
        value = sampling_config[name] if name in sampling_config else None
        if name == "num_steps":
            value = resolved_num_steps(sampling_config, method)
        for target in targets:
            if value is not None and target in accepted:
                options[target] = value
    return options


def _check_names(method: str, options: Dict[str, Any]) -> None:
    """Check name-valued options (and the predictor / probability_flow pairing) before any work."""
    as_pc = "predictor" in options or "corrector" in options
    if as_pc or (method == "pc" and "variance" in options):
        check_pc_options(options.get("predictor", "reverse_diffusion"),
                         options.get("corrector", "langevin"),
                         options.get("probability_flow", False), options.get("variance"))
    elif method in PREDICTORS:  # a predictor run alone
        check_pc_options(method, "none", options.get("probability_flow", False),
                         options.get("variance"))
    if "ode_method" in options:
        check_choice("ode_method", options["ode_method"], ODE_METHODS)
    if "sde_method" in options:
        check_choice("sde_method", options["sde_method"], SDE_METHODS)
    if "schedule" in options:
        check_choice("time_schedule", options["schedule"], TIME_SCHEDULES)
    for name in ("unic", "lower_order_final"):
        if name in options and not isinstance(options[name], bool):
            raise ValueError(f"config.sampling.{name} must be True or False, got {options[name]!r}")


class ConfiguredSampler:
    """`sampler(score_fn, sde, shape, *, generator=None, device=None)`: `method` with `options`."""

    def __init__(self, method: str, options: Dict[str, Any]):
        self.method, self.options = method, dict(options)

    def __call__(self, score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                 generator: Generator = None, device=None, dtype: torch.dtype = torch.float32,
                 x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
        """Run the method; `x_T` and `callback(i, t, x, denoised)` as every sampler takes them."""
        return SAMPLERS[self.method](score_fn, sde, tuple(shape), generator=generator,
                                     device=device, dtype=dtype, x_T=x_T, callback=callback,
                                     **self.options)

    def __repr__(self) -> str:
        return f"ConfiguredSampler({self.method!r}, {self.options})"


# Fields that only some methods take and whose default (None) means "the method's own": set
# to a value for a method that ignores them, they are refused rather than silently dropped.
METHOD_SPECIFIC = ("step_lr", "adaptive", "eta", "time_schedule", "rho", "s_churn", "s_tmin",
                   "s_tmax", "s_noise", "order", "abstol", "reltol", "safety", "variance",
                   "variant", "unic", "lower_order_final")


def check_applicable(sampling_config, method: str) -> None:
    """Refuse a method-specific field (`METHOD_SPECIFIC`) set for a method that ignores it."""
    accepted = method_options(method)
    for name in METHOD_SPECIFIC:
        value = sampling_config[name] if name in sampling_config else None
        if value is not None and not any(t in accepted for t in CONFIG_FIELDS[name]):
            takers = sorted(m for m in SAMPLERS
                            if any(t in method_options(m) for t in CONFIG_FIELDS[name]))
            raise ValueError(f"config.sampling.{name}={value!r} does not apply to method "
                             f"{method!r}; it is an option of {takers}")


def build_sampler(sampling_config) -> ConfiguredSampler:
    """The sampler a `config.sampling` section (ml_collections.ConfigDict or dict) describes.

    Reads `method` (default "pc") and the options of `config_options` that the method takes;
    other fields are ignored. Steps: `num_steps` > 0 sets any method's; 0 keeps the method's
    own default, except for the chain methods (`CHAIN_METHODS`, default the SDE's N), which
    take `pc_num_steps` when it is > 0 (`resolved_num_steps`). Unknown method, predictor,
    corrector, ode_method, sde_method or schedule names raise ValueError listing the valid
    ones.
    """
    method = sampling_config["method"] if "method" in sampling_config else "pc"
    check_choice("config.sampling.method", method, SAMPLERS)
    check_applicable(sampling_config, method)
    options = config_options(sampling_config, method_options(method), method)
    _check_names(method, options)
    return ConfiguredSampler(method, options)


def resolved_num_steps(sampling_config, method: Optional[str] = None) -> Optional[int]:
    """The step count a `config.sampling` section gives `method` (default: its own `method`):
    `num_steps` if > 0; else, for a chain method (`CHAIN_METHODS`), `pc_num_steps` if > 0;
    else None, the method's own default. Callers that run PC themselves (inpainting, say) use
    `resolved_num_steps(config.sampling, "pc")`."""
    def field(name):
        return sampling_config[name] if name in sampling_config else None

    method = field("method") or "pc" if method is None else method
    for name, applies in (("num_steps", True), ("pc_num_steps", method in CHAIN_METHODS)):
        value = field(name)
        if applies and value is not None and value != 0:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"config.sampling.{name} must be an integer >= 0 (0: the "
                                 f"method's default), got {value!r}")
            return value
    return None
