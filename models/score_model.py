"""`ScoreModel`: a network plus the output parametrisation that makes it a score function.

The network sees a noise *label* rather than t, and predicts the noise or the score itself (the
conventions of score_sde_pytorch's `get_score_fn`, so that its checkpoints give the same scores
here), or is a preconditioned denoiser (EDM, Karras et al. 2022).
"""
from __future__ import annotations

import copy
from typing import Optional, Tuple

import torch
import torch.nn as nn

from models.preconditioning import SIGMA_DATA, check_sigma_data, edm_coefficients
from sde_lib import append_dims

PARAMETRIZATIONS = ("noise", "score", "edm")
# Precisions by name (`training.precision`, `sampling.precision`): the autocast dtype, or None.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
VP_CONTINUOUS_LABEL_SCALE = 999.0  # continuous VP labels span DDPM's timesteps 0 … 999
COMPILE_BACKEND = "inductor"   # torch.compile's backend for `compiled`


def default_parametrization(sde) -> str:
    """The network output convention of an SDE, as score_sde_pytorch trains it: "score" for a
    variance-exploding SDE (mean coefficient a(t) ≡ 1, tested at t = T), else "noise".

    The one rule for training, evaluation, the converter and the guidance classifier's labels
    (evaluated on the CPU, so it also works while a network is built on the meta device)."""
    t = torch.full((1,), float(sde.T), dtype=torch.float64, device="cpu")
    mean_coeff, _ = sde.marginal_coeffs(t)
    return "score" if bool(mean_coeff == 1) else "noise"


def resolve_parametrization(sde, requested: Optional[str] = None) -> str:
    """`requested` ("noise", "score" or "edm") when given, else `default_parametrization(sde)`;
    ValueError naming the allowed values for any other name."""
    if requested is None or requested == "":
        return default_parametrization(sde)
    if requested not in PARAMETRIZATIONS:
        raise ValueError(f"Unknown parametrization {requested!r}; expected one of "
                         f"{list(PARAMETRIZATIONS)}")
    return requested


class ScoreModel(nn.Module):
    """score_fn(x, t) ≈ ∇ₓ log p_t(x) from a network `net(x, labels)`; shapes `[B, ...]`, t `[B]`.

    Parametrisations (Song et al. 2021, App. C and H; Ho et al. 2020, eq. 11):

    "noise" (VP, sub-VP): the network predicts ε in x_t = a(t)·x_0 + σ(t)·ε, so
        s(x, t) = −net(x, label) / σ(t).
      continuous: label = 999·t,          σ(t) = std of p_0t (`sde.marginal_coeffs`).
      discrete:   label = t·(N − 1) (a float, not rounded, as in DDPM training with t = i/(N−1)),
                  σ = std of the SDE's own discrete chain at i = ⌊label⌋
                  (`sde.discrete_marginal_coeffs`; √(1 − ᾱ_i) for the VP SDE's DDPM chain).
    "score" (VE): the network output is the score, s(x, t) = net(x, label)
        (a network built with `scale_by_sigma` divides its raw output by σ itself).
      continuous: label = σ(t) = σ_min(σ_max/σ_min)ᵗ.
      discrete:   label = round((T − t)·(N − 1)), an integer index into SMLD's σ table
                  ordered from σ_max (index 0) to σ_min.
    "edm" (any SDE, continuous only): the network is EDM's preconditioned denoiser
        (Karras et al. 2022, Table 1; `models.preconditioning`). With x = a(t)·x̂, σ = std/a:
        D(x̂; σ) = c_skip·x̂ + c_out·net(c_in·x̂, label), label = c_noise = ¼ ln σ (exp(c_noise) for a
        network with Fourier features, which embeds the log of its label), and the score is
        s(x, t) = (a·D − x)/std² = (c_out·net/σ² − x̂/(σ² + σ_data²))/a. `denoiser(x̂, σ)` gives D.
        On EDMSDE (a = 1, σ = t) this is EDM's own model; on VP, EDM's preconditioning of a VP model.

    Class-conditional networks (`net.num_classes` > 0) take class labels: `model(x, t, y)` with
    y `[B]` in 0 … num_classes − 1, or `null_label` (= num_classes) / None for the unconditional
    score that label dropout trains (Ho & Salimans 2022).

    Learned variances (`net.learn_variance`, VP "noise" parametrisation only): the network's
    output has twice x's channels, [ε̂, v_raw]; `forward` returns the score from ε̂ and
    `forward_with_variance` also returns v = (v_raw + 1)/2, the interpolation of the reverse
    variance Σ = exp(v·log β + (1 − v)·log β̃) (Nichol & Dhariwal 2021, eq. 15).

    Args:
        net: `net(x, labels[, y]) -> Tensor` shaped like x (twice the channels with learned
            variances).
        sde: the forward SDE (`sde_lib`).
        continuous: whether the network was trained with continuous time.
        parametrization: "noise", "score" or "edm"; None picks it from the SDE
            (`default_parametrization`).
        sigma_data: σ_data of the "edm" parametrisation (the data's standard deviation).
    Calling the model never changes `net`'s train / eval mode.
    """

    def __init__(self, net: nn.Module, sde, continuous: bool = True,
                 parametrization: Optional[str] = None, sigma_data: float = SIGMA_DATA):
        super().__init__()
        parametrization = resolve_parametrization(sde, parametrization)
        self.net = net
        self.sde = sde
        self.continuous = bool(continuous)
        self.parametrization = parametrization
        self.sigma_data = check_sigma_data(sigma_data)
        # bf16 / fp16 autocast of the network's evaluations (sampling), None: as called.
        self.autocast_dtype: Optional[torch.dtype] = None
        inner = getattr(net, "module", net)  # the network itself under DistributedDataParallel
        self.num_classes = int(getattr(inner, "num_classes", 0))
        self.learn_variance = bool(getattr(inner, "learn_variance", False))
        # Fourier-feature networks embed log(label) (`models.embeddings.TimeEmbedding`).
        self.log_labels = getattr(inner, "embedding_type", "positional") == "fourier"
        if self.learn_variance and parametrization != "noise":
            raise ValueError("a network with learn_variance=True needs the 'noise' "
                             "parametrisation (VP or sub-VP SDE)")
        if parametrization == "edm" and not self.continuous:
            raise ValueError("the 'edm' parametrisation needs continuous time "
                             "(training.continuous=True)")
        if parametrization == "edm" and getattr(inner, "scale_by_sigma", False):
            raise ValueError("the 'edm' parametrisation scales the network's output itself; "
                             "build the network with scale_by_sigma=False")

    @property
    def null_label(self) -> int:
        """The class label that means "no class" (classifier-free guidance's ∅)."""
        return self.num_classes

    def labels(self, t: torch.Tensor) -> torch.Tensor:
        """The network's noise labels `[B]` for times t `[B]` (see the class docstring)."""
        if self.parametrization == "edm":
            c_noise = -0.125 * self.sde.log_snr(t)            # ¼ ln σ, with σ = exp(−λ/2)
            return torch.exp(c_noise) if self.log_labels else c_noise
        if self.parametrization == "noise":
            if self.continuous:
                return t * VP_CONTINUOUS_LABEL_SCALE
            return t * (self.sde.N - 1)
        if self.continuous:
            return self.sde.marginal_coeffs(t)[1]
        return torch.round((self.sde.T - t) * (self.sde.N - 1)).long()

    def std(self, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The σ `[B]` that divides the predicted noise ("noise" parametrisation)."""
        if self.continuous:
            return self.sde.marginal_coeffs(t)[1]
        return self.sde.discrete_marginal_coeffs(labels.long())[1].to(t)

    def chain_time(self, index: torch.Tensor) -> torch.Tensor:
        """The time `[B]` at which this model is evaluated for step `index` `[B]` of the SDE's
        discrete (DDPM) chain: i·T/(N − 1) for a discrete-time model (its own label), else the
        time whose continuous marginal has the chain's log-SNR log(ᾱᵢ/(1 − ᾱᵢ))."""
        if not self.continuous:
            return index.to(torch.float64) * self.sde.T / max(self.sde.N - 1, 1)
        mean_coeff, std = self.sde.discrete_marginal_coeffs(index)
        return self.sde.t_from_log_snr(2 * (mean_coeff.log() - std.log()))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None,
                return_variance: bool = False):
        """The score ∇ₓ log p_t(x) (∇ₓ log p_t(x | y) given class labels y `[B]`), shaped like
        `x`; `t` is `[B]` or a scalar. With `return_variance`, the pair (score, v) of
        `forward_with_variance` (through `forward`, so that DDP's hooks see the call)."""
        score, v = self._score_and_variance(x, t, y)
        return (score, v) if return_variance else score

    def forward_with_variance(self, x: torch.Tensor, t: torch.Tensor,
                              y: Optional[torch.Tensor] = None
                              ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(score, v): v `[B, ...]` is the learned variance interpolation (None without)."""
        return self(x, t, y, return_variance=True)

    def denoise(self, x: torch.Tensor, t: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """E[x_0 | x_t] for x `[B, ...]` at times t `[B]` (or a scalar), in the data's units: the
        preconditioned D of "edm", else Tweedie's (x + std²·s(x, t))/a (Efron 2011, eq. 2.8)."""
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if self.parametrization == "edm":
            return self._edm_terms(x, t, y)[0]
        mean_coeff, std = (append_dims(c, x.ndim).to(x.dtype) for c in self.sde.marginal_coeffs(t))
        return (x + std ** 2 * self(x, t, y)) / mean_coeff

    def denoiser(self, x_hat: torch.Tensor, sigma, y: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
        """EDM's D(x̂; σ) (Karras et al. 2022, eq. 2): E[x_0 | x̂] for x̂ = x_0 + σ·n `[B, ...]` at
        noise levels `sigma` `[B]` (or a scalar), evaluated at the time t whose σ̄(t) = std/a is σ
        (`sde.t_from_log_snr(−2 ln σ)`; t = σ on EDMSDE) with x = a(t)·x̂."""
        sigma = torch.as_tensor(sigma, dtype=x_hat.dtype, device=x_hat.device)
        sigma = sigma.expand(x_hat.shape[0]) if sigma.ndim == 0 else sigma
        t = self.sde.t_from_log_snr(-2 * torch.log(sigma))
        mean_coeff = append_dims(self.sde.marginal_coeffs(t)[0], x_hat.ndim).to(x_hat.dtype)
        return self.denoise(mean_coeff * x_hat, t, y)

    def _net(self, x: torch.Tensor, labels: torch.Tensor, y: Optional[torch.Tensor]):
        """The raw network's output in x's dtype (evaluated under `autocast_dtype` when set)."""
        if self.autocast_dtype is None:
            return self.net(x, labels) if y is None else self.net(x, labels, y)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):  # reduced precision
            out = self.net(x, labels) if y is None else self.net(x, labels, y)
        return out.to(x.dtype)

    def _edm_terms(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor]):
        """(D, score) of the "edm" parametrisation at x `[B, ...]`, t `[B]`."""
        mean_coeff, std = self.sde.marginal_coeffs(t)
        sigma = std / mean_coeff                                        # EDM's σ = σ̄(t)
        c_skip, c_out, c_in, _ = (append_dims(c, x.ndim).to(x.dtype)
                                  for c in edm_coefficients(sigma, self.sigma_data))
        x_hat = x / append_dims(mean_coeff, x.ndim).to(x.dtype)
        out = self._net(c_in * x_hat, self.labels(t), y)
        sigma2 = append_dims(sigma, x.ndim).to(x.dtype) ** 2
        # s = (a·D − x)/std² with D − x̂ = c_out·F − σ²/(σ² + σ_data²)·x̂, free of cancellation.
        score = (c_out * out / sigma2 - x_hat / (sigma2 + self.sigma_data ** 2)) \
            / append_dims(mean_coeff, x.ndim).to(x.dtype)
        return c_skip * x_hat + c_out * out, score

    def _score_and_variance(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor]
                            ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if self.parametrization == "edm":
            return self._edm_terms(x, t, y)[1], None
        labels = self.labels(t)
        out = self._net(x, labels, y)
        v = None
        if self.learn_variance:
            out, v_raw = out.chunk(2, dim=1)   # [B, 2C, ...] -> two [B, C, ...]
            v = (v_raw + 1) / 2
        if self.parametrization == "score":
            return out, v
        return -out / append_dims(self.std(t, labels), x.ndim).to(out.dtype), v


def with_network(model: ScoreModel, net: nn.Module) -> ScoreModel:
    """A view of `model` (same SDE, time labels, parametrisation and autocast) around another
    module that runs the same weights: a DistributedDataParallel or `torch.compile` wrapper.
    The original is unchanged; save it, not the view (whose state dict names follow the
    wrapper's)."""
    view = copy.copy(model)
    view._modules, view._parameters = dict(model._modules), dict(model._parameters)
    view._buffers = dict(model._buffers)
    view.net = net
    return view


def compiled(model: ScoreModel) -> ScoreModel:
    """A view of `model` whose network runs through `torch.compile` (`COMPILE_BACKEND`); the
    first calls of each input shape compile (tens of seconds for a U-Net)."""
    return with_network(model, torch.compile(model.net, backend=COMPILE_BACKEND))
