"""Samplers and exact likelihoods for any score function on any SDE.

Each module below registers its methods in `SAMPLERS` on import (one import line per module).
"""
from samplers.registry import SAMPLERS, LikelihoodResult, SampleResult, register_sampler, sample

__all__ = ["SAMPLERS", "SampleResult", "LikelihoodResult", "register_sampler", "sample"]
