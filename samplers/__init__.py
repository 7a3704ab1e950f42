"""Samplers, likelihoods and conditioning for any score function on any SDE.

Imports only `sde_lib`. Every sampling method registers itself in `SAMPLERS`, with the one
declaration of its options (`options.py`), when its module is imported (the imports below), so
`sample(score_fn, sde, shape, method)` and `build_sampler(config.sampling)` can run any of them by
name. Layout: `solvers/` (generation), `likelihood/`, `conditioning/`, and beside `registry.py`,
`options.py`, `budget.py` and `config.py` the shared numerics (`schedules.py` time grids,
`fitted_schedule.py`, `learned_steps.py` grids fitted to a model, `multistep.py`, `adaptive.py`
the adaptive row driver, `brownian.py`, `flow.py`, `common.py` with the data prediction). The public names below stay where users call
them.
"""
from samplers.registry import SAMPLERS, LikelihoodResult, SampleResult, register_sampler, sample

# Sampling methods (each module of samplers/solvers registers its names in SAMPLERS).
from samplers.solvers import pc  # noqa: E402,F401  pc, ancestral, reverse_diffusion, euler_maruyama
from samplers.solvers import langevin  # noqa: E402,F401  annealed_langevin (Song & Ermon 2019)
from samplers.solvers import ode  # noqa: E402,F401  ode: probability flow with scipy
from samplers.solvers import sdeint  # noqa: E402,F401  sdeint: torchsde solvers
from samplers.solvers import ddim  # noqa: E402,F401  ddim (Song, Meng & Ermon 2021)
from samplers.solvers import heun  # noqa: E402,F401  heun (Karras et al. 2022, Alg. 2)
from samplers.solvers import dpm_solver  # noqa: E402,F401  dpm_solver, dpm_solver_sde
from samplers.solvers import dpm_adaptive  # noqa: E402,F401  adaptive DPM-Solver (Lu et al. 2022)
from samplers.solvers import unipc  # noqa: E402,F401  unipc (Zhao et al. 2023)
from samplers.solvers import adaptive_sde  # noqa: E402,F401  (Jolicoeur-Martineau et al. 2021)
from samplers.solvers import consistency  # noqa: E402,F401  consistency (Song et al. 2023)

# Options and choosing a method from a config.
from samplers.config import build_sampler  # noqa: E402
from samplers.solvers.correctors import CORRECTORS  # noqa: E402
from samplers.solvers.ode import ODE_METHODS  # noqa: E402
from samplers.solvers.predictors import PREDICTORS  # noqa: E402
from samplers.schedules import TIME_SCHEDULES, get_time_steps  # noqa: E402
from samplers.solvers.sdeint import SDE_METHODS  # noqa: E402

# Likelihoods: the probability-flow ODE and DDPM's variational bound.
from samplers.likelihood.bpd import bits_per_dim  # noqa: E402
from samplers.likelihood.probability_flow import DIVERGENCES, log_likelihood  # noqa: E402
from samplers.likelihood.vlb import VARIANCES, VLBResult, vlb_bits_per_dim  # noqa: E402

# Controllable generation: guidance, conditioning on observations, latent codes.
from samplers.conditioning.condition import (CONDITION_METHODS, METHOD_OPTIONS,  # noqa: E402
                                             check_condition_options, condition,
                                             condition_options)
from samplers.conditioning.tasks import colorize, inpaint  # noqa: E402
from samplers.conditioning.operators import (AvgPool, ChannelMean, Dense,  # noqa: E402
                                             LinearOperator, Mask, MatrixFree)
from samplers.registry import ConditionResult  # noqa: E402
from samplers.likelihood.encode import EncodeResult, decode, encode, slerp  # noqa: E402
from samplers.conditioning.guidance import (classifier_free_guidance,  # noqa: E402
                                            classifier_guidance)

__all__ = [
    # sampling
    "SAMPLERS", "SampleResult", "register_sampler", "sample", "build_sampler",
    "PREDICTORS", "CORRECTORS", "ODE_METHODS", "SDE_METHODS", "TIME_SCHEDULES", "get_time_steps",
    # likelihoods
    "LikelihoodResult", "DIVERGENCES", "log_likelihood", "bits_per_dim",
    "VARIANCES", "VLBResult", "vlb_bits_per_dim",
    # controllable generation
    "classifier_free_guidance", "classifier_guidance", "inpaint", "colorize",
    "condition", "ConditionResult", "CONDITION_METHODS", "METHOD_OPTIONS",
    "condition_options", "check_condition_options",
    "LinearOperator", "Mask", "ChannelMean", "AvgPool", "Dense", "MatrixFree",
    "EncodeResult", "encode", "decode", "slerp",
]

# Fast-sampler frontier: a time schedule fitted to the model by a pilot run, and step times
# learned against the converged flow (LD3).
from samplers.fitted_schedule import FittedSchedule, fit_schedule  # noqa: E402
from samplers.learned_steps import LearnedSteps, fit_steps  # noqa: E402

__all__ += ["FittedSchedule", "fit_schedule", "LearnedSteps", "fit_steps"]
