"""training.hybrid_loss: the timestep sampler, the stop-gradient, the importance weights."""
import math

import pytest
import torch
import torch.nn as nn

import sde_lib
from models import ScoreModel
from samplers.likelihood.vlb import vlb_term
from training.hybrid_loss import LossSecondMomentSampler, VLBLoss

f64 = torch.float64


class _Stand(nn.Module):
    """A learned-variance "network" with separate parameters for ε (a scale) and for v."""
    num_classes, learn_variance = 0, True

    def __init__(self):
        super().__init__()
        self.eps_scale = nn.Parameter(torch.tensor(0.8, dtype=f64))
        self.v_raw = nn.Parameter(torch.tensor(0.1, dtype=f64))

    def forward(self, x, labels, y=None):
        return torch.cat([self.eps_scale * x, self.v_raw.expand_as(x)], dim=1)


def _model(N=50):
    sde = sde_lib.VPSDE(N=N)
    return ScoreModel(_Stand(), sde, continuous=False), sde


def _x0(n=64, d=3):
    gen = torch.Generator().manual_seed(3)
    return (torch.rand(n, d, generator=gen, dtype=f64) * 2 - 1).mul(127.5).round().div(127.5)


def test_sampler_is_uniform_until_every_step_has_a_full_history():
    sampler = LossSecondMomentSampler(4, history=2)
    sampler.update(torch.tensor([0, 1, 2, 3, 0, 1, 2]), torch.ones(7))
    torch.testing.assert_close(sampler.probabilities(), torch.full((4,), 0.25, dtype=f64))
    sampler.update(torch.tensor([3]), torch.ones(1))
    sampler.update(torch.tensor([0, 0]), torch.tensor([3.0, 4.0]))   # history keeps the last 2
    weights = torch.tensor([12.5, 1, 1, 1], dtype=f64).sqrt()          # √mean(L²)
    expected = weights / weights.sum() * 0.999 + 0.001 / 4
    torch.testing.assert_close(sampler.probabilities(), expected)


def test_sampler_draws_follow_its_probabilities_and_state_round_trips():
    sampler = LossSecondMomentSampler(3, history=1, uniform_prob=0.0)
    sampler.update(torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, 5.0]))
    draws = sampler.sample(40_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).double() / 40_000
    p = torch.tensor([1.0, 2.0, 5.0], dtype=f64) / 8
    # Each frequency within 5 binomial standard errors.
    assert ((freq - p).abs() < 5 * (p * (1 - p) / 40_000).sqrt()).all()
    clone = LossSecondMomentSampler(3, history=1, uniform_prob=0.0)
    clone.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(clone.probabilities(), sampler.probabilities())


@pytest.mark.parametrize("reduce_mean", [True, False])
def test_hybrid_loss_is_simple_plus_weighted_bound_term(reduce_mean):
    model, sde = _model()
    x0 = _x0()
    loss_fn = VLBLoss(sde, loss_type="hybrid", vlb_weight=0.001, reduce_mean=reduce_mean)
    loss = loss_fn(model, x0, torch.Generator().manual_seed(1))
    # Recompute with the same draws: index, then z.
    gen = torch.Generator().manual_seed(1)
    index = torch.randint(0, sde.N, (64,), generator=gen)
    z = torch.randn(x0.shape, generator=gen, dtype=f64)
    a, s = sde.discrete_marginal_coeffs(index)
    x_t = a[:, None] * x0 + s[:, None] * z
    score, v = model.forward_with_variance(x_t, index.double() / (sde.N - 1))
    simple = (-s[:, None] * score - z).pow(2)
    term = vlb_term(sde, x0, x_t, index, score, v, variance="learned") / math.log(2)
    if reduce_mean:
        expected = simple.mean(1) + 0.001 * sde.N * term / 3
    else:
        expected = simple.sum(1) + 0.001 * sde.N * term
    torch.testing.assert_close(loss, expected)


def test_hybrid_bound_term_trains_only_the_variance():
    """Stop-gradient on the mean: ∂L_hybrid/∂(ε params) = ∂L_simple/∂(ε params)."""
    model, sde = _model()
    x0 = _x0()
    hybrid = VLBLoss(sde, loss_type="hybrid", vlb_weight=1.0)
    hybrid(model, x0, torch.Generator().manual_seed(2)).mean().backward()
    grad_eps, grad_v = model.net.eps_scale.grad.clone(), model.net.v_raw.grad.clone()
    model.zero_grad()
    simple = VLBLoss(sde, loss_type="hybrid", vlb_weight=0.0)
    simple(model, x0, torch.Generator().manual_seed(2)).mean().backward()
    torch.testing.assert_close(grad_eps, model.net.eps_scale.grad)
    assert model.net.v_raw.grad.abs() == 0 and grad_v.abs() > 0
    model.zero_grad()
    VLBLoss(sde, loss_type="vlb")(model, x0, torch.Generator().manual_seed(2)).mean().backward()
    assert model.net.eps_scale.grad.abs() > 0   # L_vlb alone trains the mean too


def test_importance_weights_keep_the_expected_loss():
    """With a full history, loss_i · 1/(N p_i) averages to the uniform-sampling mean over i."""
    model, sde = _model(N=50)
    x0 = _x0(n=1)
    loss_fn = VLBLoss(sde, loss_type="vlb", timestep_sampling="loss_second_moment")
    for i in range(50):   # fill every history with distinct values
        loss_fn.sampler.update(torch.full((10,), i), torch.full((10,), float(i + 1)))
    p = loss_fn.sampler.probabilities()
    # The same x0 and noise at every index: E_p[w·L] = Σ_i p_i·L_i/(N p_i) = mean_i L_i.
    z = torch.randn(1, 3, generator=torch.Generator().manual_seed(0), dtype=f64)
    per_index = []
    for i in range(50):
        index = torch.tensor([i])
        a, s = sde.discrete_marginal_coeffs(index)
        x_t = a[:, None] * x0 + s[:, None] * z
        score, v = model.forward_with_variance(x_t, index.double() / 49)
        per_index.append(sde.N * vlb_term(sde, x0, x_t, index, score, v, "learned") / math.log(2))
    uniform_mean = torch.cat(per_index).mean()
    weighted = sum(p[i] * per_index[i] / (50 * p[i]) for i in range(50))
    torch.testing.assert_close(weighted.squeeze(), uniform_mean.detach())
    assert not torch.allclose(p, torch.full_like(p, 0.02))
    # And the loss applies exactly these weights to the drawn indices.
    loss = loss_fn(model, _x0(n=16), torch.Generator().manual_seed(4))
    index, terms = loss_fn.last_terms
    torch.testing.assert_close(loss, sde.N * terms / (sde.N * p[index]))


def test_sampler_history_follows_training_steps():
    model, sde = _model(N=50)
    loss_fn = VLBLoss(sde, loss_type="hybrid", timestep_sampling="loss_second_moment")
    loss_fn(model, _x0(n=8), torch.Generator().manual_seed(0))
    loss_fn.update_sampler()
    assert int(loss_fn.sampler.counts.sum()) == 8
    state = loss_fn.state_dict()
    fresh = VLBLoss(sde, loss_type="hybrid", timestep_sampling="loss_second_moment")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.sampler.counts, loss_fn.sampler.counts)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="betas must lie in \\(0, 1\\)"):
        VLBLoss(sde_lib.VPSDE(N=5))   # β up to 20/5 = 4: not a chain
    sde = sde_lib.VPSDE(N=50)
    with pytest.raises(ValueError, match="expected one of \\['hybrid', 'vlb'\\]"):
        VLBLoss(sde, loss_type="mse")
    with pytest.raises(ValueError, match="timestep_sampling"):
        VLBLoss(sde, timestep_sampling="fancy")
    with pytest.raises(ValueError, match="discrete DDPM chain"):
        VLBLoss(sde_lib.VESDE())
    with pytest.raises(ValueError, match="model.learn_variance=True"):
        VLBLoss(sde)(lambda x, t, y, return_variance: (x, None), _x0(n=2))


def test_non_finite_terms_leave_the_sampler_history_alone():
    model, sde = _model(N=50)
    loss_fn = VLBLoss(sde, loss_type="hybrid", timestep_sampling="loss_second_moment")
    loss_fn(model, _x0(n=4), torch.Generator().manual_seed(0))
    index, terms = loss_fn.last_terms
    loss_fn.last_terms = (index, torch.full_like(terms, float("nan")))
    loss_fn.update_sampler()
    assert int(loss_fn.sampler.counts.sum()) == 0 and loss_fn.last_terms is None
