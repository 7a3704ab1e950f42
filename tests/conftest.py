"""Shared test fixtures: the SDEs under test, in float64 where precision matters."""
import pytest

import sde_lib

SDE_FACTORIES = {
    "vp": lambda: sde_lib.VPSDE(),
    "vp_cosine": lambda: sde_lib.VPSDE(schedule="cosine"),
    "subvp": lambda: sde_lib.subVPSDE(),
    "ve": lambda: sde_lib.VESDE(),
    "edm": lambda: sde_lib.EDMSDE(),
}

# On EDMSDE time is the noise level, σ(t) = t, so a grid uniform in t (pc and its predictors,
# the Langevin correctors' levels, ddim's "uniform" schedule) is uniform in σ. At the default
# N = 1000 its steps Δσ = σ_max/N = 0.08 are coarse against the test mixtures near the data
# (component stds 0.22-0.77, and the last step goes from σ = 0.08 to eps): the first-order samplers'
# error shows in the two-sample test (`tests/test_samplers_pc.py` keeps one such failure as a
# strict xfail). They converge with the steps; at 4000 (Δσ = 0.02) every one of them passes.
# VE's uniform grid is geometric in σ, which is why it needs no such care; samplers with a
# `schedule` option (ddim, heun, dpm_solver) take "edm" or "logsnr" on EDMSDE instead.
UNIFORM_GRID_STEPS_ON_EDM = 4000


def uniform_grid_steps(sde):
    """`num_steps` for a sampler stepping uniformly in t: None (the SDE's own N) except on
    EDMSDE, where it is `UNIFORM_GRID_STEPS_ON_EDM` (see above)."""
    return UNIFORM_GRID_STEPS_ON_EDM if isinstance(sde, sde_lib.EDMSDE) else None


@pytest.fixture(params=sorted(SDE_FACTORIES))
def any_sde(request):
    """Each SDE of the library with its default parameters."""
    return SDE_FACTORIES[request.param]()


def pytest_configure(config):
    # The tests use small tensors, for which one thread is faster than two on these machines;
    # the processes they start (torchrun, preemption chains) inherit one thread each too, so
    # that two test workers on two cores never oversubscribe them.
    import os

    import torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # The slow tests first: with two workers (pytest -n 2) the long ones then overlap instead of
    # leaving one worker alone with the last of them.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
