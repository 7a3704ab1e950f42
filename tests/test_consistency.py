"""The consistency parametrisation (models.consistency) and the consistency sampler
(samplers.solvers.consistency, Song et al. 2023, Alg. 1) against closed-form truth."""
import math

import pytest
import torch
import torch.nn as nn

import sde_lib
from models.consistency import ConsistencyModel, consistency_coefficients
from samplers import SAMPLERS, sample
from samplers.common import tweedie_denoise

EPS = 1e-3
SDES = {"vp": sde_lib.VPSDE, "ve": sde_lib.VESDE, "edm": sde_lib.EDMSDE}


class Wiggly(nn.Module):
    """A network with a large, input- and label-dependent output (so the boundary condition
    cannot hold by luck)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2).double()
        nn.init.normal_(self.lin.weight, std=3.0)

    def forward(self, x, labels):
        return torch.sin(self.lin(torch.cat([x, labels.to(x)[:, None]], 1))) * 7 + 2


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("parametrization", [None, "edm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_boundary_condition_holds_exactly(sde_name, parametrization, dtype):
    sde = SDES[sde_name]()
    model = ConsistencyModel(Wiggly().to(dtype), sde, parametrization=parametrization, eps=EPS)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=dtype) * 5
    t = torch.full((64,), EPS, dtype=dtype)
    mean_coeff = sde.marginal_coeffs(t)[0][:, None].to(dtype)
    assert torch.equal(model.consistency(x, t), x / mean_coeff)
    # Away from eps the network matters.
    assert not torch.allclose(model.consistency(x, torch.full_like(t, 0.5 * sde.T)), x / mean_coeff,
                              atol=1e-2)


def test_coefficients_at_sigma_min_are_one_and_zero():
    sigma_min = torch.tensor([0.002, 0.01, 0.3])
    c_skip, c_out = consistency_coefficients(sigma_min, sigma_min, 0.5)
    assert torch.equal(c_skip, torch.ones(3)) and torch.equal(c_out, torch.zeros(3))
    # EDM's preconditioning at large σ: c_skip -> 0, c_out -> σ_data.
    c_skip, c_out = consistency_coefficients(torch.tensor([80.0]), torch.tensor([0.002]), 0.5)
    assert c_skip.item() < 1e-4 and abs(c_out.item() - 0.5) < 1e-3


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_the_score_carries_the_consistency_function_to_every_sampler(sde_name):
    """Tweedie's data prediction of the student's score is f (the one data prediction)."""
    sde = SDES[sde_name]()
    model = ConsistencyModel(Wiggly(), sde, eps=EPS)
    x = torch.randn(16, 2, dtype=torch.float64) * 3
    t = torch.linspace(0.01, 0.9, 16, dtype=torch.float64) * sde.T
    assert torch.allclose(tweedie_denoise(model, sde, x, t), model.consistency(x, t),
                          rtol=1e-9, atol=1e-9)


def ideal_gaussian(sde, mean: float, var: float):
    """The score of a model whose consistency function is the exact probability-flow map of
    N(mean, var) data: f(x, t) = mean + (x̂ − mean)·√((var + σ_min²)/(var + σ̄(t)²))."""
    t_min = torch.tensor([EPS], dtype=torch.float64)
    a_min, s_min = sde.marginal_coeffs(t_min)
    sigma_min2 = (s_min / a_min).item() ** 2

    def score_fn(x, t):
        a, std = (c[:, None].to(x) for c in sde.marginal_coeffs(t.double()))
        sigma2 = (std / a) ** 2
        f = mean + (x / a - mean) * torch.sqrt((var + sigma_min2) / (var + sigma2))
        return (a * f - x) / std ** 2
    return score_fn, var + sigma_min2


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("num_steps", [1, 2, 4])
def test_multistep_sampling_keeps_the_law_of_the_ideal_consistency_function(sde_name, num_steps):
    """With the exact flow map of Gaussian data, every step of Alg. 1 lands in N(μ, s² + σ_min²):
    a wrong renoising level would shift the variance. (Mean 0: the prior's, so that the prior's
    own mismatch with p_T, visible for VE at μ ≠ 0, does not enter.)"""
    sde = SDES[sde_name]()
    score_fn, var = ideal_gaussian(sde, 0.0, 0.25)
    n = 40_000
    result = sample(score_fn, sde, (n, 1), "consistency", num_steps=num_steps, eps=EPS,
                    dtype=torch.float64, generator=torch.Generator().manual_seed(num_steps))
    assert result.nfe == num_steps
    x = result.x.squeeze(1)
    assert abs(x.mean().item()) < 5 * math.sqrt(var / n)
    assert abs(x.var().item() / var - 1) < 5 * math.sqrt(2 / n)


def test_budget_options_and_callback():
    sde = sde_lib.VPSDE()
    score_fn, _ = ideal_gaussian(sde, 0.0, 1.0)
    assert "consistency" in SAMPLERS
    assert sample(score_fn, sde, (8, 1), "consistency", nfe=3, dtype=torch.float64).nfe == 3
    seen = []
    sample(score_fn, sde, (8, 1), "consistency", num_steps=2, dtype=torch.float64,
           callback=lambda i, t, x, d: seen.append((i, float(t[0]))))
    assert [i for i, _ in seen] == [0, 1, 2] and seen[0][1] == sde.T and seen[2][1] == EPS
    with pytest.raises(ValueError, match="num_steps"):
        sample(score_fn, sde, (8, 1), "consistency", num_steps=9)
    assert sample(score_fn, sde, (8, 1), "consistency", nfe=50).nfe == 8   # at most 8 steps
    with pytest.raises(ValueError, match="at most 8"):
        sample(score_fn, sde, (8, 1), "consistency",
               schedule=torch.linspace(1, EPS, 11, dtype=torch.float64))
    # One step is deterministic given x_T: f(x_T, T).
    x_T = torch.randn(8, 1, dtype=torch.float64)
    one = sample(score_fn, sde, (8, 1), "consistency", x_T=x_T, dtype=torch.float64)
    t_max = torch.full((8,), sde.T, dtype=torch.float64)
    assert torch.allclose(one.x, tweedie_denoise(score_fn, sde, x_T, t_max), rtol=0, atol=0)
