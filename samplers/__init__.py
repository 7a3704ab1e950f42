"""Samplers and exact likelihoods for any score function on any SDE.

`sample(score_fn, sde, shape, method, ...)` runs a method of `SAMPLERS` by name;
`build_sampler(config.sampling)` picks and configures one from a config;
`log_likelihood` and `bits_per_dim` evaluate a model. Each sampler module registers its
methods in `SAMPLERS` on import (one import line per module, below).
"""
from samplers.registry import SAMPLERS, LikelihoodResult, SampleResult, register_sampler, sample
from samplers import langevin, ode, pc, sdeint  # noqa: F401, E402  (each registers its methods)
from samplers import ddim  # noqa: F401, E402  (issue 8: "ddim")
from samplers import heun  # noqa: F401, E402  (issue 8: "heun")
from samplers import dpm_solver  # noqa: F401, E402  (issue 8: "dpm_solver")
from samplers import adaptive_sde  # noqa: F401, E402  (issue 8: "adaptive_sde")
from samplers.schedules import TIME_SCHEDULES, get_time_steps  # noqa: F401, E402  (issue 8)
from samplers.bpd import bits_per_dim
from samplers.config import build_sampler
from samplers.correctors import CORRECTORS
from samplers.likelihood import DIVERGENCES, log_likelihood
from samplers.ode import ODE_METHODS
from samplers.predictors import PREDICTORS
from samplers.sdeint import SDE_METHODS
from samplers.vlb import VARIANCES, VLBResult, vlb_bits_per_dim  # issue 9
from samplers.conditional import colorize, inpaint  # issue 10
from samplers.encode import EncodeResult, decode, encode, slerp  # issue 10
from samplers.guidance import classifier_free_guidance, classifier_guidance  # issue 10

__all__ = ["SAMPLERS", "PREDICTORS", "CORRECTORS", "ODE_METHODS", "SDE_METHODS", "DIVERGENCES",
           "SampleResult", "LikelihoodResult", "register_sampler", "sample", "build_sampler",
           "log_likelihood", "bits_per_dim"]
__all__ += ["inpaint", "colorize", "classifier_free_guidance", "classifier_guidance",  # issue 10
            "encode", "decode", "slerp", "EncodeResult"]
__all__ += ["vlb_bits_per_dim", "VLBResult", "VARIANCES"]  # issue 9

# Conditioning on linear observations (replacement, SMC, RePaint, DPS): one entry point.
from samplers.condition import CONDITION_METHODS, METHOD_OPTIONS, condition  # noqa: E402
from samplers.operators import (AvgPool, ChannelMean, Dense, LinearOperator, Mask,  # noqa: E402
                                MatrixFree)
from samplers.registry import ConditionResult  # noqa: E402
__all__ += ["condition", "ConditionResult", "CONDITION_METHODS", "METHOD_OPTIONS",
            "LinearOperator", "Mask", "ChannelMean", "AvgPool", "Dense", "MatrixFree"]
