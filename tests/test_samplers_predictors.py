"""Predictors: the papers' step formulas, exact Gaussian laws, probability-flow variants."""
import pytest
import torch

import samplers
import sde_lib
from gaussian_law import GAUSSIAN, marginal, prior_variance, propagate
from samplers.solvers.predictors import PREDICTORS
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURE_2D, assert_matches_exact, run_sampler

f64 = torch.float64


def test_ancestral_step_is_smld_for_ve_and_ddpm_for_vp_and_subvp():
    times = torch.linspace(1.0, EPS, 11, dtype=f64)
    ve = SDE_FACTORIES["ve"]()
    sigma = ve.sigma(times)
    steps = PREDICTORS["ancestral"](ve, times)
    # SMLD (Song et al. 2021, App. F): x + (σᵢ² − σᵢ₋₁²)s + √(σᵢ₋₁²(σᵢ² − σᵢ₋₁²)/σᵢ²) z.
    jump = sigma[:-1] ** 2 - sigma[1:] ** 2
    torch.testing.assert_close(steps.x_coeff, torch.ones(10, dtype=f64))
    torch.testing.assert_close(steps.score_coeff, jump)
    torch.testing.assert_close(steps.noise_coeff, (sigma[1:] ** 2 * jump / sigma[:-1] ** 2).sqrt())
    # DDPM (Ho et al. 2020, Alg. 2 with σ² = β; Song et al. eq. 47): (x + βs)/√(1 − β) + √β z,
    # 1 − β = ᾱᵢ/ᾱᵢ₋₁; sub-VP, with VP's drift, has the same steps.
    for vp in (SDE_FACTORIES["vp"](), SDE_FACTORIES["subvp"]()):
        alpha_bar = vp.marginal_coeffs(times)[0] ** 2
        beta = 1 - alpha_bar[:-1] / alpha_bar[1:]
        steps = PREDICTORS["ancestral"](vp, times)
        _, std = vp.marginal_coeffs(times)
        v = std[:-1] ** 2 - (1 - beta) * std[1:] ** 2                   # VP: v = β
        torch.testing.assert_close(steps.x_coeff, 1 / (1 - beta).sqrt())
        torch.testing.assert_close(steps.score_coeff, v / (1 - beta).sqrt())
        torch.testing.assert_close(steps.noise_coeff, v.sqrt())
        if isinstance(vp, sde_lib.VPSDE):
            torch.testing.assert_close(v, beta)


def test_reverse_diffusion_is_the_reverse_of_the_smld_chain():
    """On VE's own chain grid tᵢ = i/(N − 1), the step is `sde.reverse(...).discretize` (eq. 46)."""
    ve = sde_lib.VESDE(N=50)
    # tᵢ = i/(N − 1) nudged up by 1e-9 so that the chain's truncating index of tᵢ is exactly i.
    times = (torch.arange(ve.N - 1, -1, -1, dtype=f64) + 1e-9) / (ve.N - 1)    # t_{N-1} .. t_0
    steps = PREDICTORS["reverse_diffusion"](ve, times)
    x, score = torch.randn(len(times) - 1, 3, dtype=f64), torch.randn(len(times) - 1, 3, dtype=f64)
    f, G = ve.reverse(lambda x_, t_: score).discretize(x, times[:-1])
    step_mean = steps.x_coeff[:, None] * x + steps.score_coeff[:, None] * score
    torch.testing.assert_close(step_mean, x - f)
    torch.testing.assert_close(steps.noise_coeff, G)


COSINE_RD_ODE = ("the cosine schedule's clipped β makes its last steps span β·Δt ≈ 1, where "
                 "the first-order reverse-diffusion ODE step misscales x by ~7% per step (Euler "
                 "is exact there: the flow of p_t ≈ N(0, I) is at rest); use 'ode' or more steps")


def _xfail_cosine_rd_ode(request, predictor, probability_flow=True):
    if (predictor, probability_flow) == ("reverse_diffusion", True) and \
            request.node.callspec.params["any_sde"] == "vp_cosine":
        request.applymarker(pytest.mark.xfail(strict=True, reason=COSINE_RD_ODE))


@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
def test_probability_flow_predictors(any_sde, predictor, request):
    _xfail_cosine_rd_ode(request, predictor)
    result = run_sampler(any_sde, MIXTURE_2D, "pc", predictor=predictor, corrector="none",
                         probability_flow=True)
    assert_matches_exact(result.x, MIXTURE_2D, any_sde, EPS)

# --- exact laws on Gaussian data -------------------------------------------------------------


def _law_error(sde, predictor, num_steps, probability_flow):
    """Relative error of (mean, std) at eps after num_steps steps started from the exact p_T."""
    times = torch.linspace(sde.T, EPS, num_steps + 1, dtype=f64)
    mean, var = propagate(sde, times, PREDICTORS[predictor](sde, times, probability_flow),
                          *marginal(sde, sde.T))
    target_mean, target_var = marginal(sde, EPS)
    return max(abs(mean - target_mean), abs(var ** 0.5 - target_var ** 0.5)) / target_var ** 0.5


STEP_CASES = [("ancestral", False), ("reverse_diffusion", False), ("euler_maruyama", False),
              ("reverse_diffusion", True), ("euler_maruyama", True)]


@pytest.mark.parametrize("predictor, probability_flow", STEP_CASES)
def test_gaussian_law_converges_at_first_order(any_sde, predictor, probability_flow, request):
    """Started from p_T, the samples' law at eps tends to p_eps: 10x the steps, ≥5x less error.

    On EDMSDE the grid, uniform in t, is uniform in σ and needs 10x the steps to reach the same
    regime (Δσ = 0.08 at 1000 steps is not small against the data's std 0.14 near eps)."""
    _xfail_cosine_rd_ode(request, predictor, probability_flow)
    steps = (1000, 10_000) if isinstance(any_sde, sde_lib.EDMSDE) else (100, 1000)
    coarse, fine = (_law_error(any_sde, predictor, n, probability_flow) for n in steps)
    assert fine <= coarse / 5 and fine < 0.05


@pytest.mark.parametrize("predictor, probability_flow", STEP_CASES)
def test_sampler_output_has_the_predicted_law(any_sde, predictor, probability_flow):
    """The PC loop applies the steps: 20000 samples match the propagated law within 4 SE."""
    n, num_steps = 20_000, 30
    result = samplers.sample(GAUSSIAN.score_fn(any_sde), any_sde, (n, 1), "pc", predictor=predictor,
                             corrector="none", probability_flow=probability_flow,
                             num_steps=num_steps, denoise=False, dtype=f64,
                             generator=torch.Generator().manual_seed(0))
    times = torch.linspace(any_sde.T, EPS, num_steps + 1, dtype=f64)
    mean, var = propagate(any_sde, times, PREDICTORS[predictor](any_sde, times, probability_flow),
                          0.0, prior_variance(any_sde))
    assert abs(result.x.mean().item() - mean) <= 4 * (var / n) ** 0.5
    assert abs(result.x.var().item() - var) <= 4 * var * (2 / n) ** 0.5
