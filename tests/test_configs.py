"""Every config loads, validates and builds its SDE, network and loss."""
import importlib
from pathlib import Path

import pytest
import torch

import sde_lib
from run.builders import build_score_model
from training.objective import build_training_loss

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
    build_training_loss(config, sde)
    with torch.device("meta"):  # the CIFAR networks are large: count without allocating
        model = build_score_model(config, sde)
    count = sum(p.numel() for p in model.parameters())
    if name in PAPER_PARAMS:
        assert count == PAPER_PARAMS[name]
        assert config.training.batch_size == 128 and config.optim.lr == 2e-4
        assert config.optim.warmup == 5000 and config.optim.grad_clip == 1.0
        assert config.model.ema_rate == (0.999 if name.startswith("ve") else 0.9999)
    assert set(config) == {"sde", "model", "training", "optim", "sampling", "eval", "data",
                           "classifier", "distill", "fit_steps", "frontier"}


def test_edm_configs_follow_the_paper():
    """Karras et al. 2022 (and NVlabs/edm's `train.py --arch=ddpmpp --precond=edm`): σ ∈ [0.002,
    80], P_mean = −1.2, P_std = 1.2, σ_data = 0.5, batch 512 for 200 Mimg at lr 1e-3 ramped over
    10 Mimg, EMA half-life 0.5 Mimg, dropout 0.13, Heun with 18 levels (35 NFE), and the DDPM++
    network of 55,732,739 parameters (EDM's SongUNet of that configuration, counted)."""
    cifar = load("edm_cifar")
    sde = sde_lib.build_sde(cifar.sde)
    assert isinstance(sde, sde_lib.EDMSDE) and (sde.sigma_min, sde.T) == (0.002, 80.0)
    training = cifar.training
    assert (training.loss, training.parametrization, training.continuous) == ("edm", "edm", True)
    assert (training.sigma_data, training.p_mean, training.p_std) == (0.5, -1.2, 1.2)
    assert training.batch_size * training.n_iters == 200_000_000
    assert (cifar.optim.lr, cifar.optim.warmup * 512, cifar.optim.grad_clip) == (1e-3, 9_999_872, -1.0)
    assert cifar.model.ema_rate ** (500_000 / 512) == pytest.approx(0.5)
    assert cifar.model.dropout == 0.13 and cifar.data.centered
    with torch.device("meta"):
        model = build_score_model(cifar, sde)
    assert sum(p.numel() for p in model.parameters()) == 55_732_739
    assert model.parametrization == "edm" and model.sigma_data == 0.5
    digits, vp = load("edm_digits"), load("vp_digits")
    for config in (cifar, digits):
        sampling = config.sampling
        assert (sampling.method, sampling.num_steps, sampling.eps) == ("heun", 17, 0.002)
        assert (sampling.time_schedule, sampling.rho, sampling.s_churn) == ("edm", 7.0, 0.0)
    # edm_digits is vp_digits but for EDM's choices: the same network and training budget.
    assert digits.model == vp.model and digits.optim == vp.optim and digits.data == vp.data
    for field in ("batch_size", "n_iters", "reduce_mean", "seed"):
        assert digits.training[field] == vp.training[field]


def test_ddpm_configs_follow_the_papers():
    """Ho et al. 2020: linear β from 1e-4 to 0.02, T = 1000, L_simple, the 35.7M U-Net;
    Nichol & Dhariwal 2021: cosine schedule, T = 4000, learned variances, L_hybrid."""
    ddpm = load("ddpm_cifar")
    sde = sde_lib.build_sde(ddpm.sde)
    torch.testing.assert_close(sde.discrete_betas[[0, -1]],
                               torch.tensor([1e-4, 0.02], dtype=torch.float64))
    assert sde.N == 1000 and not ddpm.training.continuous and ddpm.training.loss == "dsm"
    with torch.device("meta"):
        model = build_score_model(ddpm, sde)
    assert sum(p.numel() for p in model.parameters()) == 35_218_947
    iddpm = load("iddpm_cifar")
    sde = sde_lib.build_sde(iddpm.sde)
    assert sde.N == 4000 and iddpm.sde.schedule == "cosine"
    assert iddpm.training.loss == "hybrid" and iddpm.training.vlb_weight == 0.001
    with torch.device("meta"):
        model = build_score_model(iddpm, sde)
    assert model.learn_variance and iddpm.sampling.variance == "learned"
