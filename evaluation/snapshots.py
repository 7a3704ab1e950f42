"""The sampler of training's snapshot grids: a fast one by default, so that a few grids cost
a fraction of a short run (DPM-Solver++ at 20 steps, 21 score evaluations with the final
Tweedie step, against the 500-1000 of predictor-corrector sampling).

`training.snapshot_sampler` names any `sampling.method`, run at that method's own defaults
(with `sampling.eps`, `sampling.noise_removal`, `sampling.pc_num_steps` and
`training.snapshot_num_steps` > 0 as its steps), or is "sampling": the `config.sampling`
section as it is. The result is a `config.sampling`-like mapping, so `samplers.build_sampler`
checks and builds it as it does the section itself.
"""
from __future__ import annotations

from typing import Mapping

SAME_AS_SAMPLING = "sampling"
DEFAULT_SNAPSHOT_SAMPLER = "dpm_solver"


def snapshot_sampling(config) -> Mapping:
    """The `config.sampling`-like section the snapshot grids are drawn with."""
    training, sampling = config.training, config.sampling
    method = training.get("snapshot_sampler", DEFAULT_SNAPSHOT_SAMPLER)
    if method == SAME_AS_SAMPLING:
        return sampling
    return {"method": method, "eps": sampling.eps, "noise_removal": sampling.noise_removal,
            "pc_num_steps": sampling.get("pc_num_steps", 0),
            "num_steps": training.get("snapshot_num_steps", 0)}
