"""The contract every registered method keeps (enforced by the registry): no autograd graph,
an NFE budget never exceeded, num_steps as intervals, the callback's arguments."""
import pytest
import torch

import samplers
import samplers.budget
from models import DDPM, MLP, ScoreModel
from models.analytic import GaussianMixture
from sde_lib import VPSDE

MIXTURE = GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], [0.05, 0.1])
FAST = {"pc": dict(num_steps=3), "reverse_diffusion": dict(num_steps=3),
        "euler_maruyama": dict(num_steps=3), "ancestral": dict(num_steps=3),
        "annealed_langevin": dict(num_steps=2, n_steps_each=1), "sdeint": dict(num_steps=3),
        "ddim": dict(num_steps=3), "heun": dict(num_steps=2), "dpm_solver": dict(num_steps=3),
        "dpm_solver_sde": dict(num_steps=3), "unipc": dict(num_steps=3),
        "ode": dict(rtol=1e-2, atol=1e-2), "dpm_adaptive": dict(rtol=0.5, atol=0.5),
        "adaptive_sde": dict(rtol=0.5, atol=0.5), "consistency": dict(num_steps=3)}


def test_every_method_is_covered():
    assert set(FAST) == set(samplers.SAMPLERS)


class SavedTensors:
    """Counts the tensors autograd saves for a backward pass (what a kept graph holds)."""

    def __init__(self):
        self.count = 0

    def __enter__(self):
        def pack(tensor):
            self.count += 1
            return tensor
        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


@pytest.mark.parametrize("method", sorted(FAST))
def test_an_nn_module_score_leaves_no_graph(method):
    sde = VPSDE(N=8)
    score = ScoreModel(MLP(dim=2, width=16, num_res_blocks=1, nf=8), sde)
    with SavedTensors() as saved:
        result = samplers.sample(score, sde, (3, 2), method,
                                 generator=torch.Generator().manual_seed(0), **FAST[method])
    assert not result.x.requires_grad and result.x.grad_fn is None
    assert saved.count == 0


def test_pc_memory_is_flat_in_the_number_of_steps():
    """pc at 1000 steps on a small U-Net keeps nothing per step: autograd saves no tensor (a kept
    graph holds every step's activations, which is what exhausts memory). The unwrapped method,
    called with grad enabled, would save tensors at every step."""
    sde = VPSDE(N=1000)
    net = DDPM(image_size=8, num_channels=1, nf=32, ch_mult=(1,), num_res_blocks=1,
               attn_resolutions=(), dropout=0.0)
    score = ScoreModel(net, sde)
    counts = {}
    for steps in (10, 1000):
        with SavedTensors() as saved:
            result = samplers.sample(score, sde, (1, 1, 8, 8), "pc", corrector="none",
                                     num_steps=steps, generator=torch.Generator().manual_seed(0))
        counts[steps] = saved.count
        assert result.nfe == steps + 1 and result.x.grad_fn is None
    assert counts == {10: 0, 1000: 0}
    with SavedTensors() as saved:
        samplers.SAMPLERS["pc"].__wrapped__(score, sde, (1, 1, 8, 8), corrector="none",
                                             num_steps=2)
    assert saved.count > 0          # the check can fail: without the registry, a graph is kept


@pytest.mark.parametrize("method", sorted(samplers.budget.COSTS))
def test_a_budget_of_nfe_is_never_exceeded(method):
    """`nfe=B` picks the most steps within B score evaluations, for every B = 5 … 50 (the
    consistency sampler offers at most 8 steps)."""
    sde = VPSDE(N=100)
    cap = {"consistency": 8}.get(method, 50)
    for budget in range(5, 51):
        result = samplers.sample(MIXTURE.score_fn(sde), sde, (2, 2), method, nfe=budget,
                                 generator=torch.Generator().manual_seed(0))
        assert min(budget, cap) - 4 <= result.nfe <= budget, (budget, result.nfe)


def test_budgets_of_every_sdeint_solver_and_pc_setting():
    sde = VPSDE(N=100)
    for options in (dict(sde_method="milstein"), dict(sde_method="srk"), dict(denoise=False)):
        result = samplers.sample(MIXTURE.score_fn(sde), sde, (2, 2), "sdeint", nfe=30, **options)
        assert 20 <= result.nfe <= 30
    for options in (dict(corrector="ald", n_steps=2), dict(predictor="none")):
        result = samplers.sample(MIXTURE.score_fn(sde), sde, (2, 2), "pc", nfe=17, **options)
        assert 14 <= result.nfe <= 17


@pytest.mark.parametrize("method, options, words", [
    ("ode", {}, "does not apply to method 'ode'"),
    ("dpm_solver", dict(num_steps=4), "give one of them"),
    ("heun", {}, "too small"),
    ("ddim", dict(schedule=[1.0, 0.5, 1e-3]), "schedule name"),
])
def test_a_budget_is_refused_up_front_where_it_cannot_apply(method, options, words):
    nfe = 2 if method == "heun" else 10
    with pytest.raises(ValueError, match=words):
        samplers.sample(MIXTURE.score_fn(VPSDE()), VPSDE(), (2, 2), method, nfe=nfe, **options)


def test_the_config_budget_reaches_the_sampler_and_its_settings():
    from configs.default import get_default_config
    config = get_default_config()
    config.sampling.method, config.sampling.nfe, config.sampling.pc_num_steps = "heun", 12, 500
    sampler = samplers.build_sampler(config.sampling)
    resolved = sampler.resolved(1000)
    assert resolved["nfe"] == 12 and resolved["num_steps"] == 5      # 2·5 + 1 = 11 ≤ 12
    result = sampler(MIXTURE.score_fn(VPSDE()), VPSDE(), (2, 2))
    assert result.nfe == 11
    config.sampling.method = "ode"
    with pytest.raises(ValueError, match=r"^config.sampling.nfe=12 does not apply"):
        samplers.build_sampler(config.sampling)


def test_num_steps_counts_intervals_for_every_fixed_step_method():
    sde = VPSDE(N=100)
    # consistency: one evaluation per interval, its last is the sample (no Tweedie step).
    expected = {"heun": 2 * 4 + 1, "annealed_langevin": 5 * 3 + 1, "pc": 2 * 4 + 1,
                "consistency": 4}
    for method in sorted(samplers.budget.COSTS):
        options = dict(n_steps_each=3) if method == "annealed_langevin" else {}
        result = samplers.sample(MIXTURE.score_fn(sde), sde, (2, 2), method, num_steps=4,
                                 **options)
        per_step = {"sdeint": 1}.get(method, 1)
        assert result.nfe == expected.get(method, 4 * per_step + 1), method


@pytest.mark.parametrize("method", sorted(FAST))
def test_the_callback_always_gets_the_denoised_estimate(method):
    """callback(i, t, x, denoised): denoised is E[x_0 | x_t] at every call, for every method,
    without changing the samples or the NFE."""
    sde, calls = VPSDE(N=8), []
    score = MIXTURE.score_fn(sde)

    def callback(i, t, x, denoised):
        calls.append((i, t, x, denoised))

    options = dict(dtype=torch.float64, **FAST[method])
    result = samplers.sample(score, sde, (3, 2), method, callback=callback,
                             generator=torch.Generator().manual_seed(0), **options)
    plain = samplers.sample(score, sde, (3, 2), method,
                            generator=torch.Generator().manual_seed(0), **options)
    assert torch.equal(result.x, plain.x) and result.nfe == plain.nfe
    assert calls
    for i, t, x, denoised in calls:
        assert isinstance(denoised, torch.Tensor) and denoised.shape == x.shape
        assert t.shape == x.shape[:1]
    # The estimate at the first call is Tweedie's formula at (x, t).
    i, t, x, denoised = calls[0]
    mean_coeff, std = sde.marginal_coeffs(t.double())
    expected = (x + std[:, None] ** 2 * score(x, t.to(x.dtype))) / mean_coeff[:, None]
    if method not in ("dpm_solver", "dpm_solver_sde", "unipc"):   # theirs: the data prediction
        torch.testing.assert_close(denoised, expected)


