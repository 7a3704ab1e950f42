"""k-diffusion and diffusers samplers driven by this project's exact score functions.

Both peers are optional (`pip install score-sde[bench]`); `load_k_diffusion()` and
`load_diffusers()` return None, with the reason, when they are absent. Their code is imported
from the installed packages, never copied.

Every SDE here has x_t = a·(x_0 + σ̄·z), σ̄ = σ/a = exp(−λ/2): in x̄ = x/a it is EDM's / k-diffusion's
"σ" parametrisation, with the denoiser D(x̄; σ̄) = E[x_0 | x_t] = (x + σ²·s(x, t))/a at the time t
with that σ̄ (`sde.t_from_log_snr(−2 log σ̄)`); in x_vp = x̄/√(1 + σ̄²) it is a VP (DDPM) process
with ᾱ = 1/(1 + σ̄²), diffusers' parametrisation, whose model here predicts x_0 directly
(prediction_type "sample"). So each peer runs on the very score function the project samples
with, from the same x_T, and ends with its step to σ̄ = 0 (Tweedie's E[x_0 | x_eps]).
"""
from __future__ import annotations

import importlib
import inspect
import importlib.util
import math
import sys
import types
from typing import Callable, Optional

import numpy as np
import torch

import sde_lib


def load_k_diffusion():
    """`k_diffusion.sampling`, or (None, reason). Its package __init__ imports training-only
    dependencies (torchvision, clean-fid, ...); when those are missing, the sampling module is
    loaded on its own, with `append_dims` (its only use of k_diffusion.utils) from sde_lib."""
    try:
        return importlib.import_module("k_diffusion.sampling"), None
    except ImportError as error:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None:
            return None, f"k-diffusion is not installed ({error})"
    for name in [k for k in sys.modules if k == "k_diffusion" or k.startswith("k_diffusion.")]:
        del sys.modules[name]
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = sde_lib.append_dims
    sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils})
    package.utils = utils
    try:
        return importlib.import_module("k_diffusion.sampling"), None
    except ImportError as error:
        return None, f"k_diffusion.sampling cannot be imported ({error})"


def load_diffusers():
    """The `diffusers` package, or (None, reason)."""
    try:
        return importlib.import_module("diffusers"), None
    except ImportError as error:
        return None, f"diffusers is not installed or broken ({error})"


class Denoiser:
    """D(x̄; σ̄) of `score_fn` on `sde`, counting its calls (k-diffusion's model interface).

    `sigma` arrives as a `[B]` tensor of one value; the time with that σ̄ is computed once per
    distinct value."""

    def __init__(self, score_fn: Callable, sde):
        self.score_fn, self.sde, self.nfe = score_fn, sde, 0
        self._times = {}

    def coefficients(self, sigma_bar: float):
        if sigma_bar not in self._times:
            lam = torch.tensor([-2 * math.log(sigma_bar)], dtype=torch.float64)
            t = self.sde.t_from_log_snr(lam)
            mean_coeff, std = self.sde.marginal_coeffs(t)
            self._times[sigma_bar] = (t.item(), mean_coeff.item(), std.item())
        return self._times[sigma_bar]

    def __call__(self, x_bar: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        t, mean_coeff, std = self.coefficients(float(sigma.reshape(-1)[0]))
        x = x_bar * mean_coeff
        score = self.score_fn(x, torch.full(x.shape[:1], t, dtype=x.dtype, device=x.device))
        return x.add_(score, alpha=std ** 2).div_(mean_coeff)


def sigma_bar_range(sde, eps: float):
    """(σ̄(eps), σ̄(T))."""
    lam = sde.log_snr(torch.tensor([eps, sde.T], dtype=torch.float64))
    return tuple(torch.exp(-0.5 * lam).tolist())


def run_k_diffusion(k_sampling, name: str, score_fn, sde, x_T: torch.Tensor, eps: float,
                    nfe: Optional[int], schedule: str = "karras", **options):
    """k-diffusion's `sample_<name>` from x_T: (denoised samples, NFE).

    Fixed-step samplers get the largest step count within `nfe` evaluations on `schedule`
    ("karras", ρ = 7, or "exponential", uniform in log σ̄) from σ̄(T) to σ̄(eps), then σ̄ = 0;
    "dpm_fast" takes `nfe` itself; "dpm_adaptive" (nfe None) stops at σ̄(eps), followed by one
    denoiser evaluation (Tweedie), counted."""
    sigma_min, sigma_max = sigma_bar_range(sde, eps)
    model = Denoiser(score_fn, sde)
    x_bar = x_T / sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))[0].item()
    torch.manual_seed(0)       # the SDE samplers' Brownian trees seed from the global RNG
    with torch.no_grad():
        if name == "dpm_adaptive":
            x_bar = k_sampling.sample_dpm_adaptive(model, x_bar, sigma_min, sigma_max,
                                                   disable=True, **options)
            return model(x_bar, torch.full(x_bar.shape[:1], sigma_min)), model.nfe
        if name == "dpm_fast":
            x_bar = k_sampling.sample_dpm_fast(model, x_bar, sigma_min, sigma_max, nfe - 1,
                                               disable=True, **options)
            return model(x_bar, torch.full(x_bar.shape[:1], sigma_min)), model.nfe
        per_step = 2 if name in ("heun", "dpm_2", "dpmpp_2s_ancestral", "dpmpp_sde") else 1
        # Second-order samplers skip their second evaluation on the step to σ̄ = 0.
        steps = (nfe + 1) // 2 if per_step == 2 and name in ("heun", "dpm_2") else nfe // per_step
        make = {"karras": k_sampling.get_sigmas_karras,
                "exponential": k_sampling.get_sigmas_exponential}[schedule]
        sigmas = make(steps, sigma_min, sigma_max).to(torch.float64)
        sigmas = sigmas.to(x_bar.dtype)
        out = getattr(k_sampling, f"sample_{name}")(model, x_bar, sigmas, disable=True, **options)
    return out, model.nfe


def exact_alphas_cumprod(sde, eps: float, size: int = 1000) -> torch.Tensor:
    """ᾱ_i = 1/(1 + σ̄(t_i)²) on t_i uniform from eps to T (float64): a DDPM table for `sde`."""
    t = torch.linspace(eps, sde.T, size, dtype=torch.float64)
    return torch.sigmoid(sde.log_snr(t))


def run_diffusers(diffusers, scheduler_name: str, score_fn, sde, x_T: torch.Tensor, eps: float,
                  nfe: int, **config):
    """diffusers' multistep `scheduler_name` with `nfe` inference steps from x_T: (samples, NFE).

    The scheduler's DDPM table is the SDE's own (ᾱ = 1/(1 + σ̄²) on t uniform from eps to T),
    set in float64 after construction so that σ̄ keeps its precision near the data (sub-VP
    reaches σ̄ ≈ 1e-4, where 1 − ᾱ underflows a float32 table); its x_0-predicting model is the
    exact denoiser at the σ̄ of each step (`scheduler.sigmas`)."""
    alphas_cumprod = exact_alphas_cumprod(sde, eps)
    betas = (1 - alphas_cumprod / torch.cat([torch.ones(1, dtype=torch.float64),
                                             alphas_cumprod[:-1]])).tolist()
    scheduler = getattr(diffusers, scheduler_name)(trained_betas=betas, prediction_type="sample",
                                                   **config)
    scheduler.alphas_cumprod = alphas_cumprod
    scheduler.alpha_t = torch.sqrt(alphas_cumprod)
    scheduler.sigma_t = torch.sqrt(1 - alphas_cumprod)
    scheduler.lambda_t = torch.log(scheduler.alpha_t) - torch.log(scheduler.sigma_t)
    scheduler.set_timesteps(nfe)
    sigmas = np.asarray(scheduler.sigmas, dtype=np.float64)
    model = Denoiser(score_fn, sde)
    x_bar = x_T / sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))[0].item()
    x = x_bar / math.sqrt(1 + sigmas[0] ** 2) * scheduler.init_noise_sigma
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    with torch.no_grad():
        for i, timestep in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(x, timestep)
            sigma = torch.full(x.shape[:1], float(sigmas[i]), dtype=torch.float64)
            x0 = model(model_input * math.sqrt(1 + sigmas[i] ** 2), sigma)
            noise = {"generator": torch.Generator().manual_seed(i)} if takes_generator else {}
            x = scheduler.step(x0, timestep, x, return_dict=False, **noise)[0]
    return x, model.nfe


def load_dpm_solver(path: Optional[str]):
    """The reference DPM-Solver (`dpm_solver_pytorch.py` of LuChengTHU/dpm-solver, a checkout
    outside this repository, found at `path` or on sys.path), or (None, reason)."""
    if path:
        sys.path.insert(0, path)
    try:
        return importlib.import_module("dpm_solver_pytorch"), None
    except ImportError as error:
        return None, (f"the reference DPM-Solver is not found (git clone "
                      f"github.com/LuChengTHU/dpm-solver and pass --dpm-solver-path; {error})")


def reference_vp_time(log_snr: float) -> float:
    """τ of the VP SDE with β from 0.1 to 20 at which λ = `log_snr` (float64 closed form)."""
    return sde_lib.VPSDE(beta_min=0.1, beta_max=20.0).t_from_log_snr(
        torch.tensor([log_snr], dtype=torch.float64)).item()


def run_dpm_solver_reference(module, score_fn, sde, x_T: torch.Tensor, eps: float,
                             nfe: Optional[int], **options):
    """The reference DPM-Solver from x_T: (denoised samples, NFE).

    Every SDE is run as the reference's "linear" VP (β 0.1 → 20) at the time τ with the same
    log-SNR, on x_vp = x̄/√(1 + σ̄²) (module docstring), with the exact data prediction as its
    "x_start" model; its `denoise_to_zero` last evaluation is Tweedie's E[x_0 | x_eps]. Fixed
    steps: `nfe` − 1 steps and that evaluation; `nfe` None: `method="adaptive"` (options rtol,
    atol, order)."""
    lam_T, lam_eps = sde.log_snr(torch.tensor([sde.T, eps], dtype=torch.float64)).tolist()
    tau_T, tau_eps = reference_vp_time(lam_T), reference_vp_time(lam_eps)
    schedule = module.NoiseScheduleVP("linear", continuous_beta_0=0.1, continuous_beta_1=20.0,
                                      dtype=torch.float64)
    model = Denoiser(score_fn, sde)

    def x_start(x_vp, tau):
        sigma_bar = float(torch.exp(-schedule.marginal_lambda(tau)).reshape(-1)[0])
        sigma = torch.full(x_vp.shape[:1], sigma_bar, dtype=torch.float64)
        return model(x_vp * math.sqrt(1 + sigma_bar ** 2), sigma)

    model_fn = module.model_wrapper(x_start, schedule, model_type="x_start")
    solver = module.DPM_Solver(model_fn, schedule, algorithm_type="dpmsolver++")
    a_T, std_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    x_vp = x_T / math.sqrt(a_T.item() ** 2 + std_T.item() ** 2)
    with torch.no_grad():
        if nfe is None:
            out = solver.sample(x_vp, t_start=tau_T, t_end=tau_eps, method="adaptive",
                                denoise_to_zero=True, **options)
        else:
            out = solver.sample(x_vp, steps=nfe - 1, t_start=tau_T, t_end=tau_eps,
                                skip_type="logSNR", method="multistep", denoise_to_zero=True,
                                **options)
    return out, model.nfe
