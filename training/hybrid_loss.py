"""DDPM losses with learned variances (Nichol & Dhariwal 2021): L_hybrid and L_vlb.

On the VP SDE's discrete chain (index i ~ the timestep sampler, x_i = √ᾱᵢ·x0 + σᵢ·z),
the network predicts ε and the variance interpolation v (`ScoreModel.forward_with_variance`):

    L_simple = ‖ε̂ − z‖²                         (Ho et al. 2020, eq. 14)
    L_t      = the bound's term at i, in bits: KL(q(x_{i−1} | x_i, x0) ‖ p_θ(x_{i−1} | x_i)), or
               the decoder's −log p_θ(x0 | x_0) at i = 0 (`samplers.likelihood.vlb.vlb_term`)
    "hybrid":  L_simple + λ·N·L_t, the mean of L_t detached (stop-gradient: only Σ_θ learns
               from the bound; Nichol & Dhariwal 2021, sec. 3.1, λ = 0.001)
    "vlb":     N·L_t, through mean and variance

N·L_t estimates L_vlb = Σ_t L_t with i uniform. Both reduce over dimensions like the DSM losses
(mean with `reduce_mean`, else sum), so λ keeps the paper's meaning with `reduce_mean`.

`timestep_sampling="loss_second_moment"` draws i with p_i ∝ √E[L_i²] (the running mean of the
last 10 values of each L_i, mixed with 0.1% uniform; uniform until every i has 10), and weights
each example by 1/(N·p_i), which keeps the expected loss unchanged (Nichol & Dhariwal 2021,
sec. 3.3). Its state is part of the training checkpoint.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from samplers.likelihood.vlb import check_chain, vlb_term
from sde_lib import SDE
from training.losses import (Gather, Loss, Shard, chain_perturb, draw_global, randn_global,
                             uniform_chain_index)

LOSS_TYPES = ("hybrid", "vlb")
TIMESTEP_SAMPLING = ("uniform", "loss_second_moment")


class LossSecondMomentSampler:
    """Chain indices i ∈ {0 … N−1} with p_i ∝ √(mean of the last `history` L_i²)."""

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 0.001):
        self.num_steps, self.uniform_prob = num_steps, uniform_prob
        self.losses = torch.zeros(num_steps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_steps, dtype=torch.long)

    def probabilities(self) -> torch.Tensor:
        """p `[N]` (float64): uniform until every index has a full history."""
        if int(self.counts.min()) < self.losses.shape[1]:
            return torch.full((self.num_steps,), 1.0 / self.num_steps, dtype=torch.float64)
        weights = self.losses.pow(2).mean(1).sqrt()
        weights = weights / weights.sum()
        return weights * (1 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def sample(self, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """`[n]` int64 indices on the CPU (draws from `generator` whatever the state)."""
        device = generator.device if generator is not None else None
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device).cpu()
        cdf = torch.cumsum(self.probabilities(), 0)
        return torch.searchsorted(cdf, u * cdf[-1], right=True).clamp(max=self.num_steps - 1)

    def update(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """Append each example's L_i (`[M]` indices and losses) to its index's history."""
        for i, loss in zip(index.tolist(), losses.double().cpu().tolist()):
            if self.counts[i] == self.losses.shape[1]:
                self.losses[i, :-1] = self.losses[i, 1:].clone()
                self.losses[i, -1] = loss
            else:
                self.losses[i, self.counts[i]] = loss
                self.counts[i] += 1

    def state_dict(self) -> dict:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.losses.copy_(state["losses"])
        self.counts.copy_(state["counts"])


class VLBLoss(Loss):
    """L_hybrid (`loss_type="hybrid"`) or L_vlb ("vlb") on a learned-variance score model; see
    the module docstring. `score_fn` must accept `return_variance=True` (a `ScoreModel`)."""

    def __init__(self, sde: SDE, *, loss_type: str = "hybrid", vlb_weight: float = 0.001,
                 reduce_mean: bool = True, timestep_sampling: str = "uniform"):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown loss type {loss_type!r}; expected one of {list(LOSS_TYPES)}")
        if timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"Unknown training.timestep_sampling {timestep_sampling!r}; expected "
                             f"one of {list(TIMESTEP_SAMPLING)}")
        check_chain(sde)   # the DDPM chain: VPSDE's tables with every β in (0, 1)
        self.sde, self.loss_type, self.vlb_weight = sde, loss_type, float(vlb_weight)
        self.reduce_mean = reduce_mean
        self.sampler = (LossSecondMomentSampler(sde.N) if timestep_sampling == "loss_second_moment"
                        else None)
        self.last_terms = None   # (indices [b], L_t [b]) of the last call, for `update_sampler`
        self._parts = {}         # the last call's L_vlb (N·L_t) and L_simple, per example

    def _draw_index(self, x0: torch.Tensor, generator, shard: Shard) -> torch.Tensor:
        if self.sampler is not None:
            return draw_global(lambda n: self.sampler.sample(n, generator), x0, shard)
        return uniform_chain_index(self.sde, x0, generator, shard)

    def __call__(self, score_fn: Callable, x0: torch.Tensor,
                 generator: Optional[torch.Generator] = None, shard: Shard = (0, 1),
                 y: Optional[torch.Tensor] = None) -> torch.Tensor:
        index = self._draw_index(x0, generator, shard)
        z = randn_global(x0, generator, shard)
        x_t, std_, t = chain_perturb(self.sde, x0, index, z)
        score, v = score_fn(x_t, t, y, return_variance=True)
        if v is None:
            raise ValueError(f"the {self.loss_type} loss needs a network with "
                             f"model.learn_variance=True")
        mean_score = score.detach() if self.loss_type == "hybrid" else score
        num_dims = x0[0].numel()
        # nats summed over dimensions -> bits, reduced like the DSM losses
        term = vlb_term(self.sde, x0, x_t, index.to(x0.device), mean_score, v,
                        variance="learned") / math.log(2.0)
        term = term / num_dims if self.reduce_mean else term
        self.last_terms = (index, term.detach())
        loss = self.sde.N * term
        self._parts = {"loss_vlb": loss.detach()}
        if self.loss_type == "hybrid":
            flat = (score * std_ + z).pow(2).flatten(1)   # ε̂ − z = −(σ·s + z)
            simple = flat.mean(1) if self.reduce_mean else flat.sum(1)
            self._parts["loss_simple"] = simple.detach()
            loss = simple + self.vlb_weight * loss
        if self.sampler is not None:
            loss = loss / (self.sde.N * self.sampler.probabilities()[index].to(loss))
        return loss

    def update_sampler(self, gather: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> None:
        """Feed the last call's L_t to the timestep sampler; `gather` concatenates them over
        ranks so that every rank's sampler stays identical."""
        if self.sampler is None or self.last_terms is None:
            return
        index, terms = self.last_terms
        self.last_terms = None
        index, terms = gather(index.to(terms.device)).cpu(), gather(terms)
        if bool(torch.isfinite(terms).all()):   # a skipped non-finite batch teaches nothing
            self.sampler.update(index, terms)

    def after_backward(self, gather: Gather) -> None:
        self.update_sampler(gather)

    def parts(self) -> dict:
        """The last batch's mean L_vlb (N·L_t, bits) and, for "hybrid", L_simple."""
        return {name: float(value.float().mean()) for name, value in self._parts.items()}

    def state_dict(self) -> dict:
        return {} if self.sampler is None else {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
