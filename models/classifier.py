"""Time-conditional classifiers p_t(y | x_t) for classifier guidance (Dhariwal & Nichol 2021).

`EncoderClassifier` is the ADM classifier: the down half of NCSN++ / DDPM++ (residual blocks,
self-attention, BigGAN downsampling blocks, the middle block) followed by GroupNorm, act,
global average pooling and a linear head. `MLPClassifier` is its vector-data variant. Both map
`(x, labels [B]) -> logits [B, K]`, the labels being `ScoreModel`'s continuous noise labels.

`NoisyClassifier(net, sde)` turns times into those labels; its `log_prob(x, t)` `[B, K]` is
the `log_prob_fn` that `samplers.guidance.classifier_guidance` differentiates.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import AttnBlock, ResnetBlock
from models.embeddings import TimeEmbedding, check_embedding_type
from models.layers import conv3x3, dense, get_act, group_norm
from models.mlp import MLPBlock
from models.score_model import VP_CONTINUOUS_LABEL_SCALE

# The config.classifier fields that are architecture (the rest is training).
IMAGE_FIELDS = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "nonlinearity")
VECTOR_FIELDS = ("nf", "width", "num_res_blocks", "dropout", "nonlinearity")


def _check_sizes(image_size: int, ch_mult: Sequence[int], attn_resolutions: Sequence[int],
                 dropout: float) -> List[int]:
    """The resolution of each level; ValueError naming the field for inconsistent sizes."""
    if len(ch_mult) < 1 or any(int(m) < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty tuple of integers >= 1, got {ch_mult!r}")
    factor = 2 ** (len(ch_mult) - 1)
    if image_size < factor or image_size % factor:
        raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult) - 1) = "
                         f"{factor} (ch_mult={tuple(ch_mult)})")
    resolutions = [image_size // 2 ** i for i in range(len(ch_mult))]
    unknown = sorted(set(attn_resolutions) - set(resolutions))
    if unknown:
        raise ValueError(f"attn_resolutions {unknown} are not among the classifier's resolutions "
                         f"{resolutions}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return resolutions


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
        resolutions = _check_sizes(image_size, ch_mult, attn_resolutions, dropout)
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


def uses_sigma_labels(sde) -> bool:
    """Whether `ScoreModel` labels this SDE by σ(t) (VE: mean coefficient a(T) = 1) rather than
    by 999·t (as `score_model.default_parametrization`, on the CPU even under a meta device)."""
    t = torch.full((1,), float(sde.T), dtype=torch.float64, device="cpu")
    return bool(sde.marginal_coeffs(t)[0] == 1)


class NoisyClassifier(nn.Module):
    """p_t(y | x) from a classifier network `net(x, labels) -> logits [B, K]` and the SDE.

    Labels as `ScoreModel` in continuous time: 999·t for VP / sub-VP (positional embedding),
    σ(t) for VE (Fourier features of log σ). Calling it never changes `net`'s train / eval mode.
    """

    def __init__(self, net: nn.Module, sde):
        super().__init__()
        self.net, self.sde = net, sde
        self.label_type = "sigma" if uses_sigma_labels(sde) else "time"

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


def classifier_fields(config, sde, num_classes: Optional[int] = None) -> Dict[str, Any]:
    """Constructor arguments of the classifier network from `config.classifier` and `config.data`
    (plain values: stored in checkpoints). `num_classes` defaults to the data set's; the
    embedding follows the SDE's labels (positional of 999·t, or Fourier features of σ)."""
    from training.datasets import IMAGE_SETS, NUM_CLASSES

    section, data = config.classifier, config.data
    if num_classes is None:
        num_classes = NUM_CLASSES.get(data.dataset, 0)
    fields: Dict[str, Any] = {"num_classes": int(num_classes),
                              "embedding_type": "fourier" if uses_sigma_labels(sde)
                              else "positional"}
    if data.dataset in IMAGE_SETS:
        fields.update(kind="image", image_size=data.image_size, num_channels=data.num_channels,
                      centered=data.centered)
        names = IMAGE_FIELDS
    else:
        fields.update(kind="vector", dim=data.dim)
        names = VECTOR_FIELDS
    for name in names:
        value = section[name]
        fields[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return fields


CLASSIFIERS = {"image": EncoderClassifier, "vector": MLPClassifier}


def build_classifier(config, sde, num_classes: Optional[int] = None) -> NoisyClassifier:
    """`NoisyClassifier` for `config.data` (images: `EncoderClassifier`, vectors: `MLPClassifier`)
    with the architecture of `config.classifier`; ValueError for an inconsistent section."""
    fields = classifier_fields(config, sde, num_classes)
    if fields["num_classes"] < 2:
        raise ValueError(f"config.data.dataset={config.data.dataset!r} has no class labels")
    kind = fields.pop("kind")
    return NoisyClassifier(CLASSIFIERS[kind](**fields), sde)
