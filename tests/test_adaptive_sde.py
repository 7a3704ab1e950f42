"""Adaptive reverse-SDE solver: distribution, samples leaving the batch, no host reads, options."""
import pytest
import torch

from samplers import adaptive_sde, sample
from samplers.solvers.adaptive_sde import select_generators
from samplers.brownian import empty_stack, reveal, settle
from samplers.common import sample_noise
from sde_lib import VESDE, VPSDE
from two_sample import MIXTURE_2D, MIXTURE_16D, assert_matches_exact

SMALL_SDES = {"vp": VPSDE, "ve": VESDE}   # structural tests: one SDE of each kind is enough


class RecordingScore:
    """The mixture's exact score, recording the batch size of every call."""

    def __init__(self, sde, mixture=MIXTURE_2D):
        self.score_fn, self.sizes = mixture.score_fn(sde), []

    def __call__(self, x, t):
        self.sizes.append(x.shape[0])
        return self.score_fn(x, t)


def test_matches_the_mixture(any_sde):
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (500, 16), "adaptive_sde",
                    generator=torch.Generator().manual_seed(0), denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


@pytest.mark.parametrize("sde_name", sorted(SMALL_SDES))
@pytest.mark.parametrize("check_every", [1, 5])
def test_finished_samples_leave_the_batch(sde_name, check_every):
    sde, batch = SMALL_SDES[sde_name](), 64
    score = RecordingScore(sde)
    result = sample(score, sde, (batch, 2), "adaptive_sde", check_every=check_every, rtol=0.05,
                    generator=torch.Generator().manual_seed(1), denoise=False)
    stats = result.info
    sizes, per_sample = torch.tensor(score.sizes), stats["nfe_per_sample"]
    assert result.nfe == len(sizes) == 2 * stats["tries"]
    assert bool((sizes[1:] <= sizes[:-1]).all()) and sizes[0] == batch and sizes[-1] < batch
    # Every evaluation of a sample is counted once, and they differ between samples.
    assert per_sample.sum().item() == sizes.sum().item()
    assert per_sample.max().item() == result.nfe and per_sample.min().item() < result.nfe
    assert stats["syncs"] * check_every == stats["tries"] and stats["rejected"] >= 0


def test_denoise_costs_one_evaluation_per_sample():
    sde = VPSDE()
    result = sample(MIXTURE_2D.score_fn(sde), sde, (16, 2), "adaptive_sde", rtol=0.05,
                    generator=torch.Generator().manual_seed(2), denoise=True)
    stats = result.info
    assert result.nfe == 2 * stats["tries"] + 1 and bool(torch.isfinite(result.x).all())
    assert bool((stats["nfe_per_sample"] % 2 == 1).all())


@pytest.mark.parametrize("sde_name", sorted(SMALL_SDES))
def test_tighter_tolerance_costs_more(sde_name):
    sde, nfe = SMALL_SDES[sde_name](), []
    for rtol in (0.5, 0.1, 0.02):
        stats = sample(MIXTURE_2D.score_fn(sde), sde, (32, 2), "adaptive_sde", rtol=rtol,
                       generator=torch.Generator().manual_seed(3), denoise=False).info
        nfe.append(stats["nfe_per_sample"].double().mean().item())
    assert nfe[0] < nfe[1] < nfe[2], nfe


@pytest.mark.parametrize("noise", ["bridge", "redraw"])
def test_a_try_reads_nothing_back_to_the_host(any_sde, noise, monkeypatch):
    # Accept/reject, t, h and the Brownian stacks stay on the device: no item / tolist / bool / cpu.
    x = torch.randn(8, 16, dtype=torch.float64)
    t = torch.full((8,), any_sde.T, dtype=torch.float64)
    path = adaptive_sde.empty_stack(x, 4) if noise == "bridge" else None
    state = adaptive_sde.State(x, x.clone(), t, torch.full_like(t, 0.05), path)
    reverse = any_sde.reverse(MIXTURE_16D.score_fn(any_sde))
    noises = torch.randn(3, 8, 16, dtype=torch.float64)

    def host_read(*args, **kwargs):
        raise AssertionError("host synchronisation inside a try")
    for name in ("item", "tolist", "__bool__", "cpu", "numpy", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for noise_draw in noises:
        options = (0.0078, 0.01, "l2", 1e-3, 0.9, 0.9)
        state, _ = adaptive_sde._one_try(reverse, state, noise_draw, options)


def _adversarial_walk(rows: int, bridge: bool, seed: int = 0) -> torch.Tensor:
    """W(1) summed over accepted steps when steps whose |ΔW| > 0.8·√h are rejected and halved."""
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, 1)
    stack = empty_stack(torch.zeros(shape, dtype=torch.float64), max_depth=32)
    left = torch.ones(rows, dtype=torch.float64)
    h, total = torch.full_like(left, 0.3), torch.zeros(shape, dtype=torch.float64)
    while bool((left > 0).any()):
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        h = torch.minimum(h, left)
        if bridge:
            h, dw, full = reveal(stack, h, noise)
        else:
            dw = h.sqrt()[:, None] * noise
        accept = (dw[:, 0].abs() <= 0.8 * h.sqrt()) | (h < 1e-2) | (left <= 0)
        if bridge:
            stack = settle(stack, h, dw, full, accept)
        total += torch.where(accept[:, None], dw, torch.zeros_like(dw))
        left = torch.where(accept, torch.where(h >= left, torch.zeros_like(left), left - h), left)
        h = torch.where(accept, 2 * h, h / 2)
    assert not bool(stack.overflow.any())
    return total[:, 0]


def test_bridged_paths_stay_brownian_under_any_rejection_rule():
    # Whatever the accept/reject rule, W(1) over the accepted steps is N(0, 1) exactly; the
    # sample mean and variance of n draws have sd 1/√n and √(2/n): 5 sd bounds (false alarm < 1e-6).
    rows = 4000
    total = _adversarial_walk(rows, bridge=True)
    assert abs(total.mean().item()) < 5 / rows ** 0.5
    assert abs(total.var().item() - 1) < 5 * (2 / rows) ** 0.5
    # Redrawing the noise after each rejection keeps only small increments: far from N(0, 1).
    assert _adversarial_walk(rows, bridge=False).var().item() < 0.5


def test_max_steps_and_non_finite_scores(any_sde):
    with pytest.raises(RuntimeError, match="max_steps"):
        sample(MIXTURE_16D.score_fn(any_sde), any_sde, (4, 16), "adaptive_sde", max_steps=4,
               check_every=2)
    with pytest.raises(RuntimeError, match="non-finite"):
        sample(lambda x, t: torch.full_like(x, float("nan")), any_sde, (4, 16), "adaptive_sde")


def test_select_generators():
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    single = torch.Generator()
    assert select_generators(None, [0, 2]) is None
    assert select_generators(single, [0, 2]) is single
    assert select_generators(generators, [3, 1]) == [generators[3], generators[1]]


@pytest.mark.parametrize("noise", ["bridge", "redraw"])
def test_per_sample_generators_make_samples_independent_of_the_batch(noise):
    sde = VPSDE()
    try:
        sample_noise(torch.zeros(2, 3), [torch.Generator(), torch.Generator()])
    except TypeError:
        pytest.skip("samplers.common.sample_noise does not take per-sample generators yet")

    def run(seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sample(MIXTURE_2D.score_fn(sde), sde, (len(seeds), 2), "adaptive_sde", noise=noise,
                      generator=generators, check_every=3, rtol=0.1).x
    torch.testing.assert_close(run([10, 11, 12, 13])[[1, 3]], run([11, 13]), rtol=0, atol=0)


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the options were checked")


@pytest.mark.parametrize("options, match", [
    (dict(atol=0.0), "atol"), (dict(atol=-1.0), "atol"), (dict(rtol=0.0), "rtol"),
    (dict(safety=0.0), "safety"), (dict(exponent=-0.5), "exponent"), (dict(h_init=0.0), "h_init"),
    (dict(norm="l1"), "norm"), (dict(noise="fresh"), "noise"), (dict(check_every=0), "check_every"),
    (dict(max_steps=0), "max_steps"), (dict(max_depth=0), "max_depth"), (dict(eps=80.0), "eps"),
])
def test_bad_options(options, match):
    # Checked before any work, whatever the SDE (the eps cases lie beyond every T).
    with pytest.raises(ValueError, match=match):
        sample(_never_called, VPSDE(), (2, 16), "adaptive_sde", **options)
