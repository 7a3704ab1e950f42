"""Shared test fixtures: the SDEs under test, in float64 where precision matters."""
import pytest

import sde_lib

SDE_FACTORIES = {
    "vp": lambda: sde_lib.VPSDE(),
    "vp_cosine": lambda: sde_lib.VPSDE(schedule="cosine"),
    "subvp": lambda: sde_lib.subVPSDE(),
    "ve": lambda: sde_lib.VESDE(),
}


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
