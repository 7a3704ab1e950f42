"""Samplers and exact likelihoods for any score function on any SDE.

Each module below registers its methods in `SAMPLERS` on import (one import line per module).
"""
from samplers.registry import SAMPLERS, LikelihoodResult, SampleResult, register_sampler, sample
from samplers import langevin, pc  # noqa: F401  (each module registers its methods)
from samplers.correctors import CORRECTORS
from samplers.predictors import PREDICTORS

__all__ = ["SAMPLERS", "PREDICTORS", "CORRECTORS", "SampleResult", "LikelihoodResult",
           "register_sampler", "sample"]
