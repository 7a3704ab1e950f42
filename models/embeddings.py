"""Embeddings of the noise label: sinusoidal (positional) and random Fourier features.

The label is whatever `ScoreModel` feeds the network: 999·t or a timestep index for VP
(positional embedding, Ho et al. 2020 / Vaswani et al. 2017), σ(t) for VE (Fourier
features of log σ, Tancik et al. 2020; Song et al. 2021, App. H.2).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from models.layers import Activation, dense

EMBEDDING_TYPES = ("fourier", "positional")


def check_embedding_type(embedding_type: str) -> str:
    """Return `embedding_type` lower-cased, or raise ValueError listing the valid choices."""
    key = embedding_type.lower()
    if key not in EMBEDDING_TYPES:
        raise ValueError(f"Unknown embedding_type {embedding_type!r}; expected one of "
                         f"{list(EMBEDDING_TYPES)}")
    return key


def positional_embedding(labels: torch.Tensor, dim: int,
                         max_positions: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding `[B] -> [B, dim]`: [sin(l·ω_k), cos(l·ω_k)],
    ω_k = max_positions^(−k/(dim/2 − 1)), k = 0 … dim/2 − 1.

    Computed in the labels' dtype (float32 for integer labels, as the reference); odd `dim`
    is zero-padded.
    """
    dtype = labels.dtype if labels.is_floating_point() else torch.float32
    half = dim // 2
    step = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=labels.device) * -step)
    args = labels.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features `[B] -> [B, 2·size]`: [sin(2π·x·W), cos(2π·x·W)], W ~ N(0, scale²).

    W is a frozen parameter (`requires_grad=False`): it is saved with the weights but not trained.
    """

    def __init__(self, size: int, scale: float = 16.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class TimeEmbedding(nn.Module):
    """Label → conditioning vector `[B] -> [B, 4·nf]`: embedding, Dense, act, Dense.

    "fourier" embeds log(label) (the label is σ); "positional" embeds the label itself.
    With `conditional=False` only the (parameter-free or frozen) embedding exists and
    `forward` returns None.

    Class conditioning (`num_classes` > 0; Dhariwal & Nichol 2021): a learned embedding of the
    class label `y` `[B]` is added to the conditioning vector. Label `num_classes` is the null
    label (no class), used for classifier-free guidance; `y=None` means the null label.
    """

    def __init__(self, nf: int, act: Activation, embedding_type: str = "positional",
                 fourier_scale: float = 16.0, conditional: bool = True, num_classes: int = 0):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if num_classes and not conditional:
            raise ValueError("num_classes > 0 needs conditional=True (the class embedding is "
                             "added to the time embedding)")
        self.embedding_type = check_embedding_type(embedding_type)
        self.nf = nf
        self.act = act
        self.conditional = conditional
        self.fourier = None
        embed_dim = nf
        if self.embedding_type == "fourier":
            self.fourier = GaussianFourierProjection(nf, fourier_scale)
            embed_dim = 2 * nf
        self.dense0 = dense(embed_dim, 4 * nf) if conditional else None
        self.dense1 = dense(4 * nf, 4 * nf) if conditional else None
        self.num_classes = num_classes
        self.class_embed = nn.Embedding(num_classes + 1, 4 * nf) if num_classes else None

    def forward(self, labels: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Conditioning vector `[B, 4·nf]` for noise labels `[B]` and class labels y `[B]`."""
        if not self.conditional:
            return None
        temb = self._time_embedding(labels)
        if self.class_embed is None:
            if y is not None:
                raise ValueError("class labels given to a network built with num_classes=0")
            return temb
        if y is None:
            y = torch.full(labels.shape[:1], self.num_classes, dtype=torch.long,
                           device=labels.device)
        return temb + self.class_embed(check_class_labels(y, self.num_classes))

    def _time_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        if self.fourier is not None:
            emb = self.fourier(torch.log(labels))
        else:
            emb = positional_embedding(labels, self.nf)
        emb = emb.to(self.dense0.weight.dtype)
        return self.dense1(self.act(self.dense0(emb)))


def check_class_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class labels as int64 `[B]` in 0 … num_classes (the last one being the null label)."""
    if y.is_floating_point() or y.ndim != 1:
        raise ValueError(f"class labels must be an integer tensor of shape [B], got "
                         f"{y.dtype} {tuple(y.shape)}")
    # The range check reads values back, so it runs on CPU tensors only (no device sync).
    if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(f"class labels must lie in 0 … {num_classes} ({num_classes} = the null "
                         f"label), got values in {int(y.min())} … {int(y.max())}")
    return y.long()


def sigma_table(sigma_min: float, sigma_max: float, num_scales: int) -> torch.Tensor:
    """SMLD noise levels indexed by discrete label, exp(linspace(log σ_max, log σ_min, N)), float64.

    Index 0 is the largest σ: discrete VE labels count from the prior towards the data.
    """
    return torch.linspace(math.log(sigma_max), math.log(sigma_min), num_scales,
                          dtype=torch.float64).exp()


def label_sigmas(labels: torch.Tensor, embedding_type: str,
                 table: Optional[torch.Tensor]) -> torch.Tensor:
    """σ of each label `[B]`: the label itself for "fourier", else `table[label]` (an index)."""
    if embedding_type == "fourier":
        return labels
    return table[labels.long()]
