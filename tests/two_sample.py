"""Ground truth for the sampler tests: two Gaussian mixtures and a two-sample test against them.

`energy_test(x, y)` is a permutation test of the energy distance (Székely & Rizzo 2004)
E = 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ ≥ 0, zero iff the laws agree. Its null distribution is
that of E between two sets of exact samples of the same sizes; conditionally on the pooled
samples it is the distribution of E over random splits of the pool (exact under H0 for i.i.d.
sets), estimated with `num_permutations` splits. The p-value (1 + #{E_perm ≥ E})/(1 + M) is
uniform under H0, so a level is a false-alarm rate, not a tuned threshold.

`assert_matches_exact` applies it twice, each at level ALPHA/2 (Bonferroni, so ALPHA overall):
to the samples themselves (global structure: mode weights and locations), and to their exact
log-densities log p_t(x) (local structure: a blur or a 5-10% scale error, which E on x misses at
this sample size because the distances between modes dominate it).
"""
from __future__ import annotations

import torch

from models.analytic import GaussianMixture

ALPHA = 1e-3           # overall false-alarm rate of `assert_matches_exact`
NUM_PERMUTATIONS = 1999  # so that p = 1/2000 = ALPHA/2 is reachable
NUM_SAMPLES = 500      # per set
EPS = 1e-3             # the samplers' last time

f64 = torch.float64

MIXTURE_2D = GaussianMixture([0.3, 0.7], [[2.0, 2.0], [-1.0, -1.5]], [[0.05, 0.3], [0.3, 0.05]])


def _mixture_16d() -> GaussianMixture:
    """Three components in 16-D, means ~1.5 apart per coordinate, variances in [0.1, 0.6]."""
    generator = torch.Generator().manual_seed(5)
    means = 1.5 * torch.randn(3, 16, generator=generator, dtype=f64)
    variances = 0.1 + 0.5 * torch.rand(3, 16, generator=generator, dtype=f64)
    return GaussianMixture([0.2, 0.3, 0.5], means, variances)


MIXTURE_16D = _mixture_16d()
MIXTURES = {2: MIXTURE_2D, 16: MIXTURE_16D}


def run_sampler(sde, mixture: GaussianMixture, method: str, seed: int = 0, **options):
    """`method` on the mixture's exact score: NUM_SAMPLES float64 samples of p_EPS, no denoising."""
    import samplers
    return samplers.sample(mixture.score_fn(sde), sde, (NUM_SAMPLES, mixture.dim), method,
                           dtype=f64, denoise=False, generator=torch.Generator().manual_seed(seed),
                           **options)


def exact_samples(mixture: GaussianMixture, sde, t: float, n: int,
                  generator: torch.Generator) -> torch.Tensor:
    """`[n, d]` exact samples of p_t: x_0 from the mixture, then the SDE's kernel p_0t."""
    x0 = mixture.sample(n, generator)
    mean, std = sde.marginal_prob(x0, torch.full((n,), t, dtype=f64))
    return mean + std[:, None] * torch.randn(x0.shape, generator=generator, dtype=f64)


def energy_test(x: torch.Tensor, y: torch.Tensor, num_permutations: int = NUM_PERMUTATIONS,
                seed: int = 0):
    """(E, p-value) of the energy-distance permutation test of x `[n, ...]` against y `[m, ...]`."""
    x, y = x.flatten(1).to(f64), y.flatten(1).to(f64)
    n, m = len(x), len(y)
    pooled = torch.cat([x, y])
    distances = torch.cdist(pooled, pooled)                                  # [n + m, n + m]
    generator = torch.Generator().manual_seed(seed)
    # Column j marks the members of the first set in split j; split 0 is the observed one.
    membership = torch.zeros(n + m, num_permutations + 1, dtype=f64)
    membership[:n, 0] = 1
    for j in range(1, num_permutations + 1):
        membership[torch.randperm(n + m, generator=generator)[:n], j] = 1
    within_first = (membership * (distances @ membership)).sum(0)             # Σ_{X,X'} ‖·‖
    to_all = distances.sum(1) @ membership                                    # Σ_{X, pool} ‖·‖
    between = to_all - within_first                                           # Σ_{X,Y} ‖·‖
    within_second = distances.sum() - 2 * to_all + within_first               # Σ_{Y,Y'} ‖·‖
    energy = 2 * between / (n * m) - within_first / n ** 2 - within_second / m ** 2
    p_value = (1 + (energy[1:] >= energy[0]).sum().item()) / (1 + num_permutations)
    return energy[0].item(), p_value


def assert_matches_exact(samples: torch.Tensor, mixture: GaussianMixture, sde, t: float,
                         seed: int = 0) -> None:
    """Samples `[n, d]` of p_t pass both energy tests against as many exact ones (level ALPHA)."""
    assert torch.isfinite(samples).all()
    generator = torch.Generator().manual_seed(10_000 + seed)
    exact = exact_samples(mixture, sde, t, len(samples), generator)
    energy, p_value = energy_test(samples, exact, seed=seed)
    assert p_value > ALPHA / 2, f"energy distance {energy:.4g} of x beyond the null (p = {p_value})"
    log_density = [mixture.log_prob(z.to(f64), t, sde)[:, None] for z in (samples, exact)]
    energy, p_value = energy_test(*log_density, seed=seed)
    assert p_value > ALPHA / 2, \
        f"energy distance {energy:.4g} of log p_t(x) beyond the null (p = {p_value})"
