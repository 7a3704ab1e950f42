"""How score_sde_pytorch lays out the weights of NCSN++ / DDPM++ / DDPM, mapped onto ours.

The reference stores every layer of a network in one flat `all_modules` list, numbered in
construction order (layers without parameters still take a number), with its own
sub-layer names (`GroupNorm_0`, `Conv_0`, `Dense_0`, `NIN_0` ...) and `NIN` weights
stored as `[in, out]` matrices. Here the same layers sit in a tree (`embed`, `down`,
`mid`, `up`) with fused attention projections. `reference_modules(net)` lists our layers
in the reference's numbering; `convert_reference_state_dict` maps a state_dict across.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Mapping, Set

import torch
import torch.nn as nn

from models.blocks import AttnBlock, Combine, Downsample, ResnetBlock, Upsample
from models.ncsnpp import NCSNpp

Tensor = torch.Tensor

_RESBLOCK_NAMES = {"GroupNorm_0": "norm0", "Conv_0": "conv0", "Dense_0": "temb_proj",
                   "GroupNorm_1": "norm1", "Conv_1": "conv1", "Conv_2": "shortcut"}
_RESAMPLE_NAMES = {"Conv_0": "conv", "Conv2d_0": "conv"}


def reference_modules(net: NCSNpp) -> List[nn.Module]:
    """Our layers in the order of the reference's `all_modules` list (for NCSNpp and DDPM)."""
    order: List[nn.Module] = []
    if net.embed.fourier is not None:
        order.append(net.embed.fourier)
    if net.embed.conditional:
        order += [net.embed.dense0, net.embed.dense1]
    order.append(net.conv_in)
    for level in net.down:
        for i, block in enumerate(level.blocks):
            order.append(block)
            if len(level.attns):
                order.append(level.attns[i])
        if level.downsample is not None:
            order.append(level.downsample)
            if level.pyramid is not None:
                order.append(level.pyramid)
    order += list(net.mid)
    for level in net.up:
        order += list(level.blocks)
        optional = (level.attn, level.pyramid_norm, level.pyramid_conv, level.pyramid_up,
                    level.upsample)
        order += [module for module in optional if module is not None]
    if net.out_norm is not None:
        order += [net.out_norm, net.conv_out]
    return order


def frozen_reference_keys(net: NCSNpp) -> Set[str]:
    """Reference keys of parameters that are not trained (the Fourier features' W)."""
    return {f"all_modules.{i}.{name}"
            for i, module in enumerate(reference_modules(net))
            for name, p in module.named_parameters() if not p.requires_grad}


def _nin_to_linear(sub: Mapping[str, Tensor], name: str) -> tuple:
    """A reference NIN (W `[in, out]`, b) as a Linear's (weight `[out, in]`, bias)."""
    return sub[f"{name}.W"].t(), sub[f"{name}.b"]


def _rename(sub: Mapping[str, Tensor], names: Mapping[str, str]) -> Dict[str, Tensor]:
    out = {}
    for key, value in sub.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"unexpected reference weight {key!r}")
        out[f"{names[head]}.{rest}"] = value
    return out


def _convert_resblock(block: ResnetBlock, sub: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    sub = dict(sub)
    if block.temb_proj is None:  # unconditional: the reference builds Dense_0 but never uses it
        sub = {k: v for k, v in sub.items() if not k.startswith("Dense_0.")}
    out = {}
    if "NIN_0.W" in sub:  # DDPM blocks: NIN shortcut -> 1x1 convolution
        weight, bias = _nin_to_linear(sub, "NIN_0")
        out = {"shortcut.weight": weight[:, :, None, None], "shortcut.bias": bias}
        sub = {k: v for k, v in sub.items() if not k.startswith("NIN_0.")}
    out.update(_rename(sub, _RESBLOCK_NAMES))
    return out


def _convert_attn(sub: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    q, k, v, proj = (_nin_to_linear(sub, f"NIN_{i}") for i in range(4))
    expected = {"GroupNorm_0.weight", "GroupNorm_0.bias"} | {
        f"NIN_{i}.{p}" for i in range(4) for p in ("W", "b")}
    if set(sub) != expected:
        raise ValueError(f"unexpected attention weights {sorted(set(sub) ^ expected)}")
    return {"norm.weight": sub["GroupNorm_0.weight"], "norm.bias": sub["GroupNorm_0.bias"],
            "qkv.weight": torch.cat([q[0], k[0], v[0]]), "qkv.bias": torch.cat([q[1], k[1], v[1]]),
            "proj.weight": proj[0], "proj.bias": proj[1]}


def _convert_module(module: nn.Module, sub: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """One reference layer's weights (keys relative to it) as our layer's state_dict."""
    if isinstance(module, ResnetBlock):
        return _convert_resblock(module, sub)
    if isinstance(module, AttnBlock):
        return _convert_attn(sub)
    if isinstance(module, (Upsample, Downsample, Combine)):
        return _rename(sub, _RESAMPLE_NAMES)
    return dict(sub)  # Linear, Conv2d, GroupNorm, FIRConv2d, GaussianFourierProjection


def convert_reference_state_dict(ref_state: Mapping[str, Tensor], net: NCSNpp) -> Dict[str, Tensor]:
    """Map a reference state_dict (`all_modules.<i>.<...>` keys, no `module.` prefix and no
    `sigmas`) onto `net`'s parameter names. Raises ValueError on weights that have no place."""
    groups: Dict[int, Dict[str, Tensor]] = defaultdict(dict)
    for key, value in ref_state.items():
        head, index, rest = (key.split(".", 2) + ["", ""])[:3]
        if head != "all_modules" or not index.isdigit() or not rest:
            raise ValueError(f"unexpected reference weight {key!r}")
        groups[int(index)][rest] = value
    names = {id(module): name for name, module in net.named_modules()}
    out: Dict[str, Tensor] = {}
    for i, module in enumerate(reference_modules(net)):
        try:
            converted = _convert_module(module, groups.pop(i, {}))
        except (KeyError, ValueError) as error:
            raise ValueError(f"reference layer all_modules.{i} does not fit our "
                             f"{type(module).__name__} {names[id(module)]!r}: {error}") from error
        out.update({f"{names[id(module)]}.{key}": value for key, value in converted.items()})
    if groups:
        raise ValueError(f"reference layers {sorted(groups)} have no counterpart in this network; "
                         f"does the reference config match the checkpoint?")
    return out
