"""A time-conditional residual MLP for vector data (toy 2-D sets, low-dimensional data).

`(x [B, dim], labels [B]) -> [B, dim]`, with the same label conventions as the U-Nets
(positional embedding of 999·t for VP, Fourier features of log σ for VE), so any
`ScoreModel` parametrisation applies.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from models.embeddings import TimeEmbedding, check_embedding_type, label_sigmas, sigma_table
from models.layers import Activation, dense, get_act


class MLPBlock(nn.Module):
    """h + W₂·dropout(act(W₁·act(LayerNorm(h)) + Dense(act(temb)))), shapes `[B, width]`."""

    def __init__(self, width: int, temb_dim: Optional[int], act: Activation, dropout: float,
                 init_scale: float):
        super().__init__()
        self.act = act
        self.norm = nn.LayerNorm(width)
        self.fc0 = dense(width, width)
        self.temb_proj = dense(temb_dim, width) if temb_dim is not None else None
        self.dropout = nn.Dropout(dropout)
        self.fc1 = dense(width, width, init_scale)

    def forward(self, h: torch.Tensor, temb: Optional[torch.Tensor]) -> torch.Tensor:
        z = self.fc0(self.act(self.norm(h)))
        if temb is not None and self.temb_proj is not None:
            z = z + self.temb_proj(self.act(temb))
        return h + self.fc1(self.dropout(self.act(z)))


class MLP(nn.Module):
    """Residual MLP score network for `[B, dim]` data.

    Args:
        dim: data dimension.
        width: hidden width; num_res_blocks: residual blocks.
        nf: label-embedding size (the conditioning vector has 4·nf entries).
        embedding_type: "positional" or "fourier" (of log label, `fourier_scale`).
        conditional: condition on the label at all.
        init_scale: scale of the last layer of each block and of the output layer (0 → 1e-10).
        scale_by_sigma: divide the output by σ of the label (as in `NCSNpp`).
        num_classes, learn_variance: class conditioning and a learned-variance output
            (`[B, 2·dim]`), as in `NCSNpp`.
    """

    def __init__(self, *, dim: int, width: int = 256, num_res_blocks: int = 3, nf: int = 64,
                 embedding_type: str = "positional", fourier_scale: float = 16.0,
                 conditional: bool = True, dropout: float = 0.0, init_scale: float = 0.0,
                 scale_by_sigma: bool = False, nonlinearity: str = "swish",
                 sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = 1000,
                 num_classes: int = 0, learn_variance: bool = False):
        super().__init__()
        if learn_variance and scale_by_sigma:
            raise ValueError("learn_variance=True cannot be combined with scale_by_sigma=True "
                             "(learned variances belong to the VP noise parametrisation)")
        if dim < 1 or width < 1 or num_res_blocks < 0:
            raise ValueError(f"dim and width must be >= 1 and num_res_blocks >= 0, got dim={dim}, "
                             f"width={width}, num_res_blocks={num_res_blocks}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dim = dim
        self.embedding_type = check_embedding_type(embedding_type)
        self.scale_by_sigma = scale_by_sigma
        self.act = act = get_act(nonlinearity)
        self.embed = TimeEmbedding(nf, act, self.embedding_type, fourier_scale, conditional,
                                   num_classes)
        temb_dim = 4 * nf if conditional else None
        self.fc_in = dense(dim, width)
        self.blocks = nn.ModuleList(MLPBlock(width, temb_dim, act, dropout, init_scale)
                                    for _ in range(num_res_blocks))
        self.norm_out = nn.LayerNorm(width)
        self.num_classes, self.learn_variance = num_classes, learn_variance
        self.out_channels = dim * (2 if learn_variance else 1)
        self.fc_out = dense(width, self.out_channels, init_scale)
        needs_table = scale_by_sigma and self.embedding_type == "positional"
        self.register_buffer("sigmas", sigma_table(sigma_min, sigma_max, num_scales)
                             if needs_table else None, persistent=False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Output `[B, out_channels]` for `x` `[B, dim]` at labels `[B]` and classes y `[B]`."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected x of shape [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.embed(labels, y)
        h = self.fc_in(x)
        for block in self.blocks:
            h = block(h, temb)
        h = self.fc_out(self.act(self.norm_out(h)))
        if self.scale_by_sigma:
            h = h / label_sigmas(labels, self.embedding_type, self.sigmas).to(h.dtype)[:, None]
        return h
