"""training.edm_loss against Karras et al. 2022 (Table 1, eq. 8) and exact Gaussian laws."""
import math

import pytest
import torch
from scipy import stats

import sde_lib
from models.analytic import GaussianMixture
from models.mlp import MLP
from models.score_model import ScoreModel
from training.edm_loss import P_MEAN, P_STD, EDMLoss, edm_loss_weight

f64 = torch.float64


def test_weight_is_table_1_and_the_inverse_square_of_c_out():
    """λ(σ) = (σ² + σ_d²)/(σ·σ_d)² (Table 1) = 1/c_out(σ)² (eq. 8: unit weight on the network)."""
    for sigma_data in (0.5, 0.2):
        for sigma in (0.002, 0.1, 0.5, 3.0, 80.0):
            expected = (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data) ** 2
            got = edm_loss_weight(torch.tensor(sigma, dtype=f64), sigma_data).item()
            assert got == pytest.approx(expected, rel=1e-14)
            c_out = sigma * sigma_data / math.sqrt(sigma ** 2 + sigma_data ** 2)
            assert got * c_out ** 2 == pytest.approx(1.0, rel=1e-13)
    assert (P_MEAN, P_STD) == (-1.2, 1.2)


def test_noise_levels_are_log_normal():
    """On EDMSDE t = σ: ln t of the examples is N(P_mean, P_std²) (Kolmogorov–Smirnov, 1 %: 1.63/√n);
    on VP the example's σ̄(t) = std/a is the drawn σ."""
    n, seen = 20_000, {}

    def recorder(sde):
        def score_fn(x, t):
            seen["t"] = t
            return torch.zeros_like(x)
        return score_fn

    edm = sde_lib.EDMSDE()
    EDMLoss(edm)(recorder(edm), torch.zeros(n, 1, dtype=f64), torch.Generator().manual_seed(0))
    log_sigma = torch.log(seen["t"]).numpy()
    assert stats.kstest(log_sigma, stats.norm(P_MEAN, P_STD).cdf).statistic < 1.63 / math.sqrt(n)
    vp, loss = sde_lib.VPSDE(), EDMLoss(sde_lib.VPSDE(), p_mean=0.3, p_std=0.5)
    loss(recorder(vp), torch.zeros(64, 1, dtype=f64), torch.Generator().manual_seed(1))
    mean_coeff, std = vp.marginal_coeffs(seen["t"])
    drawn = loss.sample_sigma(64, torch.Generator().manual_seed(1))   # σ is drawn first
    torch.testing.assert_close(std / mean_coeff, drawn, rtol=1e-10, atol=0)


@pytest.mark.parametrize("sigma_data", [0.5, 0.3])
def test_exact_denoiser_leaves_a_chi_square_loss(any_sde, sigma_data):
    """Gaussian data N(μ, σ_d²I) in d dims: D − x_0 ~ N(0, σ²σ_d²/(σ² + σ_d²)·I) at every σ, so
    with the exact score λ(σ)·‖D − x_0‖² ~ χ²_d exactly (the weight's design). KS at 1 %."""
    d, n = 3, 20_000
    data = GaussianMixture([1.0], [[0.7, -0.4, 1.5]], [sigma_data ** 2])
    x0 = data.sample(n, torch.Generator().manual_seed(2))
    losses = EDMLoss(any_sde, sigma_data=sigma_data)(data.score_fn(any_sde), x0,
                                                     torch.Generator().manual_seed(3))
    assert stats.kstest(losses.numpy(), stats.chi2(d).cdf).statistic < 1.63 / math.sqrt(n)


def test_exact_score_minimises_the_loss(any_sde):
    data = GaussianMixture([0.4, 0.6], [[1.0, -1.0], [-1.0, 0.5]], [0.2, 0.05])
    x0 = data.sample(4000, torch.Generator().manual_seed(4))
    exact, loss = data.score_fn(any_sde), EDMLoss(any_sde)
    best = loss(exact, x0, torch.Generator().manual_seed(5)).mean()
    for wrong in (lambda x, t: 1.1 * exact(x, t), lambda x, t: exact(x, t) + 0.2):
        assert best < loss(wrong, x0, torch.Generator().manual_seed(5)).mean()


@pytest.mark.parametrize("reduce_mean", [False, True])
def test_is_edms_loss_on_a_preconditioned_network(reduce_mean):
    """On EDMSDE with the "edm" parametrisation the loss is EDM's λ(σ)·‖D(y + n; σ) − y‖², D being
    c_skip·x̂ + c_out·F(c_in·x̂; ¼ ln σ), with σ then n drawn from the generator in that order."""
    sde, sigma_data = sde_lib.EDMSDE(), 0.5
    torch.manual_seed(0)
    net = MLP(dim=4, width=32, nf=8, num_res_blocks=1, init_scale=1.0).double()
    model = ScoreModel(net, sde, parametrization="edm", sigma_data=sigma_data)
    y = torch.randn(16, 4, generator=torch.Generator().manual_seed(6), dtype=f64)
    losses = EDMLoss(sde, reduce_mean=reduce_mean)(model, y, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(16, generator=generator, dtype=f64))[:, None]
    noisy = y + sigma * torch.randn(y.shape, generator=generator, dtype=f64)
    total = sigma ** 2 + sigma_data ** 2
    denoised = (sigma_data ** 2 / total * noisy
                + sigma * sigma_data / total.sqrt() * net(noisy / total.sqrt(), sigma[:, 0].log() / 4))
    weight = total / (sigma * sigma_data) ** 2
    squared = (weight * (denoised - y) ** 2)
    expected = squared.mean(1) if reduce_mean else squared.sum(1)
    torch.testing.assert_close(losses, expected, rtol=1e-9, atol=1e-12)


def test_shards_reproduce_the_global_batch():
    sde = sde_lib.VPSDE()
    data = GaussianMixture([1.0], [[0.5, -0.5]], [0.25])
    x0, score_fn = data.sample(12, torch.Generator().manual_seed(8)), data.score_fn(sde)
    full = EDMLoss(sde)(score_fn, x0, torch.Generator().manual_seed(9))
    shards = [EDMLoss(sde)(score_fn, x0[r * 4:(r + 1) * 4], torch.Generator().manual_seed(9), (r, 3))
              for r in range(3)]
    torch.testing.assert_close(torch.cat(shards), full, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(sigma_data=0.0), "sigma_data"), (dict(sigma_data=-1.0), "sigma_data"),
    (dict(p_std=0.0), "p_std"), (dict(p_mean=float("nan")), "p_mean"),
])
def test_bad_options(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EDMLoss(sde_lib.EDMSDE(), **kwargs)
