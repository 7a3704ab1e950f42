"""Every config loads, validates and builds its SDE, network and loss."""
import importlib
from pathlib import Path

import pytest
import torch

import sde_lib
from training import setup

CONFIGS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.stem not in {"__init__", "default", "cifar", "toy"})
PAPER_PARAMS = {"vp_cifar": 61_804_419, "subvp_cifar": 61_804_419, "ve_cifar": 62_758_915,
                "vp_cifar_deep": 106_632_579, "subvp_cifar_deep": 106_632_579,
                "ve_cifar_deep": 107_587_075}


def load(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds(name):
    config = load(name)
    sde = sde_lib.build_sde(config.sde)
    setup.build_training_loss(config, sde)
    with torch.device("meta"):  # the CIFAR networks are large: count without allocating
        model = setup.build_score_model(config, sde)
    count = sum(p.numel() for p in model.parameters())
    if name in PAPER_PARAMS:
        assert count == PAPER_PARAMS[name]
        assert config.training.batch_size == 128 and config.optim.lr == 2e-4
        assert config.optim.warmup == 5000 and config.optim.grad_clip == 1.0
        assert config.model.ema_rate == (0.999 if name.startswith("ve") else 0.9999)
    assert set(config) == {"sde", "model", "training", "optim", "sampling", "eval", "data"}
