"""Exponential moving average of model parameters (Polyak averaging), with fused updates.

Song et al. 2021 evaluate the EMA weights (rate 0.999 for VE, 0.9999 for VP / sub-VP).
With `use_num_updates`, the decay warms up as min(decay, (1 + n)/(10 + n)) at the n-th
update, so early averages are not dominated by the initial weights. The state_dict
layout matches score_sde_pytorch's: {"decay", "num_updates", "shadow_params": [tensors]}.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import torch


class ExponentialMovingAverage:
    """EMA of the trainable (`requires_grad`) parameters among `parameters`.

    update:  shadow ← shadow + (1 − d)(param − shadow), d = min(decay, (1 + n)/(10 + n)).
    store / copy_to / restore: evaluate with the EMA weights, then return to the raw ones.
    All per-tensor loops are single fused multi-tensor (`torch._foreach_*`) calls.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], decay: float,
                 use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        self.num_updates: Optional[int] = 0 if use_num_updates else None
        with torch.no_grad():
            self.shadow_params = [p.detach().clone() for p in _trainable(parameters)]
        self.collected_params: List[torch.Tensor] = []

    def _check(self, params: List[torch.Tensor]) -> None:
        if len(params) != len(self.shadow_params):
            raise ValueError(f"expected {len(self.shadow_params)} trainable parameters, "
                             f"got {len(params)}")

    def current_decay(self) -> float:
        """The decay the next `update` will use."""
        if self.num_updates is None:
            return self.decay
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, parameters: Iterable[torch.nn.Parameter],
               keep: Optional[torch.Tensor] = None) -> None:
        """Move the averages towards the current parameters (call after each optimizer step).

        `keep`, a 0-dim bool tensor on the parameters' device, makes the update conditional
        without reading it on the host: where it is False the averages stay as they are (the
        step is still counted in `num_updates`)."""
        params = _trainable(parameters)
        self._check(params)
        decay = self.current_decay()
        if self.num_updates is not None:
            self.num_updates += 1
        if keep is None:
            torch._foreach_lerp_(self.shadow_params, params, 1.0 - decay)
            return
        weight = keep.to(self.shadow_params[0].dtype) * (1.0 - decay)
        torch._foreach_lerp_(self.shadow_params, params, [weight] * len(params))

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Overwrite the trainable `parameters` with the averages."""
        params = _trainable(parameters)
        self._check(params)
        torch._foreach_copy_(params, self.shadow_params)

    @torch.no_grad()
    def store(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Keep a copy of `parameters`, to bring back with `restore`."""
        self.collected_params = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def restore(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Put back the parameters saved by `store`."""
        params = list(parameters)
        if len(params) != len(self.collected_params):
            raise ValueError(f"restore: {len(self.collected_params)} stored parameters, "
                             f"got {len(params)} (call store first)")
        torch._foreach_copy_(params, self.collected_params)

    def to(self, device: Any = None,
           dtype: Optional[torch.dtype] = None) -> "ExponentialMovingAverage":
        """Move the averages (floating-point ones also cast to `dtype`)."""
        self.shadow_params = [
            p.to(device=device, dtype=dtype if p.is_floating_point() else None)
            for p in self.shadow_params]
        return self

    def state_dict(self) -> Dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow_params": list(self.shadow_params)}

    @torch.no_grad()
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load averages saved by `state_dict` (or by score_sde_pytorch's EMA), checking shapes."""
        shadow = list(state_dict["shadow_params"])
        if len(shadow) != len(self.shadow_params):
            raise ValueError(f"EMA state has {len(shadow)} shadow parameters, this model "
                             f"{len(self.shadow_params)}")
        for i, (mine, theirs) in enumerate(zip(self.shadow_params, shadow)):
            if mine.shape != theirs.shape:
                raise ValueError(f"EMA shadow parameter {i}: shape {tuple(theirs.shape)}, "
                                 f"expected {tuple(mine.shape)}")
        torch._foreach_copy_(self.shadow_params, shadow)
        self.decay = float(state_dict["decay"])
        self.num_updates = state_dict["num_updates"]


def _trainable(parameters: Iterable[torch.nn.Parameter]) -> List[torch.Tensor]:
    return [p for p in parameters if p.requires_grad]
