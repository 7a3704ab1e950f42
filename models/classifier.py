"""Time-conditional classifiers p_t(y | x_t) for classifier guidance (Dhariwal & Nichol 2021).

`EncoderClassifier` is the ADM classifier: the down half of NCSN++ / DDPM++ (residual blocks,
self-attention, BigGAN downsampling blocks, the middle block) followed by GroupNorm, act,
global average pooling and a linear head. `MLPClassifier` is its vector-data variant. Both map
`(x, labels [B]) -> logits [B, K]`, the labels being `ScoreModel`'s continuous noise labels.

`NoisyClassifier(net, sde)` turns times into those labels; its `log_prob(x, t)` `[B, K]` is
the `log_prob_fn` that `samplers.conditioning.guidance.classifier_guidance` differentiates.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import AttnBlock, ResnetBlock
from models.embeddings import TimeEmbedding, check_embedding_type
from models.layers import conv3x3, dense, get_act, group_norm, level_resolutions
from models.mlp import MLPBlock
from models.score_model import VP_CONTINUOUS_LABEL_SCALE, default_parametrization

# The config.classifier fields that are architecture (the rest is training).
IMAGE_FIELDS = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "nonlinearity")
VECTOR_FIELDS = ("nf", "width", "num_res_blocks", "dropout", "nonlinearity")


class EncoderClassifier(nn.Module):
    """ADM-style classifier `(x [B, C, H, W], labels [B]) -> logits [B, num_classes]`.

    conv_in → per level (resolution image_size / 2^i, nf·ch_mult[i] channels):
    `num_res_blocks` ResnetBlocks (+ AttnBlock at `attn_resolutions`), a BigGAN down block →
    middle (ResnetBlock, AttnBlock, ResnetBlock) → GroupNorm, act, mean over H, W → Linear.
    Inputs in [0, 1] are mapped to [-1, 1] unless `centered`.
    """

    def __init__(self, *, image_size: int, num_channels: int, num_classes: int, nf: int = 32,
                 ch_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1,
                 attn_resolutions: Sequence[int] = (8,), dropout: float = 0.1,
                 embedding_type: str = "positional", fourier_scale: float = 16.0,
                 centered: bool = True, nonlinearity: str = "swish"):
        super().__init__()
        if nf < 1 or num_res_blocks < 0 or num_classes < 2:
            raise ValueError(f"nf must be >= 1, num_res_blocks >= 0 and num_classes >= 2, got "
                             f"nf={nf}, num_res_blocks={num_res_blocks}, num_classes={num_classes}")
        resolutions = level_resolutions(image_size, ch_mult, attn_resolutions, dropout)
        self.num_channels, self.num_classes, self.centered = num_channels, num_classes, centered
        self.act = act = get_act(nonlinearity)
        self.embed = TimeEmbedding(nf, act, check_embedding_type(embedding_type), fourier_scale)

        def res(in_ch, out_ch=None, resample=None):
            return ResnetBlock(in_ch, out_ch, act=act, temb_dim=4 * nf, resample=resample,
                               dropout=dropout)

        self.conv_in = conv3x3(num_channels, nf)
        layers, in_ch = [], nf
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers.append(res(in_ch, nf * mult))
                in_ch = nf * mult
                if resolutions[level] in attn_resolutions:
                    layers.append(AttnBlock(in_ch, skip_rescale=True))
            if level != len(ch_mult) - 1:
                layers.append(res(in_ch, resample="down"))
        layers += [res(in_ch), AttnBlock(in_ch, skip_rescale=True), res(in_ch)]
        self.layers = nn.ModuleList(layers)
        self.out_norm = group_norm(in_ch)
        self.head = dense(in_ch, num_classes, init_scale=0.0)  # starts at uniform p(y | x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits `[B, num_classes]` for images `[B, C, H, W]` at noise labels `[B]`."""
        if x.ndim != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f"expected x of shape [B, {self.num_channels}, H, W], "
                             f"got {tuple(x.shape)}")
        temb = self.embed(labels)
        h = self.conv_in(x if self.centered else 2 * x - 1)
        for layer in self.layers:
            h = layer(h, temb) if isinstance(layer, ResnetBlock) else layer(h)
        h = self.act(self.out_norm(h)).mean(dim=(2, 3))             # [B, C, H, W] -> [B, C]
        return self.head(h)


class MLPClassifier(nn.Module):
    """Residual-MLP classifier `(x [B, dim], labels [B]) -> logits [B, num_classes]`
    (the blocks of `models.mlp.MLP`, then LayerNorm, act, Linear)."""

    def __init__(self, *, dim: int, num_classes: int, width: int = 128, num_res_blocks: int = 2,
                 nf: int = 32, dropout: float = 0.0, embedding_type: str = "positional",
                 fourier_scale: float = 16.0, nonlinearity: str = "swish"):
        super().__init__()
        if dim < 1 or width < 1 or nf < 1 or num_res_blocks < 0 or num_classes < 2:
            raise ValueError(f"dim, width, nf must be >= 1, num_res_blocks >= 0 and num_classes "
                             f">= 2, got dim={dim}, width={width}, nf={nf}, "
                             f"num_res_blocks={num_res_blocks}, num_classes={num_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dim, self.num_classes = dim, num_classes
        self.act = act = get_act(nonlinearity)
        self.embed = TimeEmbedding(nf, act, check_embedding_type(embedding_type), fourier_scale)
        self.fc_in = dense(dim, width)
        self.blocks = nn.ModuleList(MLPBlock(width, 4 * nf, act, dropout, init_scale=0.0)
                                    for _ in range(num_res_blocks))
        self.norm_out = nn.LayerNorm(width)
        self.head = dense(width, num_classes, init_scale=0.0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits `[B, num_classes]` for `x` `[B, dim]` at noise labels `[B]`."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected x of shape [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.embed(labels)
        h = self.fc_in(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.head(self.act(self.norm_out(h)))


class NoisyClassifier(nn.Module):
    """p_t(y | x) from a classifier network `net(x, labels) -> logits [B, K]` and the SDE.

    Labels as `ScoreModel` in continuous time: 999·t for VP / sub-VP (positional embedding),
    σ(t) for VE (Fourier features of log σ). Calling it never changes `net`'s train / eval mode.
    """

    def __init__(self, net: nn.Module, sde):
        super().__init__()
        self.net, self.sde = net, sde
        self.label_type = "sigma" if default_parametrization(sde) == "score" else "time"

    def labels(self, t: torch.Tensor) -> torch.Tensor:
        """Noise labels `[B]` for times t `[B]`."""
        if self.label_type == "time":
            return t * VP_CONTINUOUS_LABEL_SCALE
        return self.sde.marginal_coeffs(t)[1]

    def logits(self, x: torch.Tensor, t: Union[torch.Tensor, float]) -> torch.Tensor:
        """Unnormalised log p_t(y | x), `[B, K]`, for x `[B, ...]` and t `[B]` or a scalar."""
        dtype = next(self.net.parameters()).dtype
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.net(x.to(dtype), self.labels(t).to(dtype))

    def log_prob(self, x: torch.Tensor, t: Union[torch.Tensor, float]) -> torch.Tensor:
        """log p_t(y | x) in nats for every class y, `[B, K]` (log-softmax of the logits)."""
        return F.log_softmax(self.logits(x, t), dim=-1)

    def forward(self, x: torch.Tensor, t: Union[torch.Tensor, float]) -> torch.Tensor:
        return self.log_prob(x, t)


CLASSIFIERS = {"image": EncoderClassifier, "vector": MLPClassifier}


def classifier_from_fields(fields: Dict[str, Any]) -> nn.Module:
    """The classifier network of stored constructor fields: `kind` ("image" or "vector", a key
    of `CLASSIFIERS`) and that class's keyword arguments (lists are read as tuples)."""
    fields = dict(fields)
    kind = fields.pop("kind")
    if kind not in CLASSIFIERS:
        raise ValueError(f"Unknown classifier kind {kind!r}; expected one of {sorted(CLASSIFIERS)}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return CLASSIFIERS[kind](**fields)
