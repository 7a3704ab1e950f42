"""Numerical precision of training: float32, or mixed precision with bf16 / fp16 autocast.

Under "bf16" and "fp16" the forward pass and the loss run under `torch.autocast`; parameters,
gradients, Adam's moments, the EMA and every checkpoint stay float32 (autocast casts on the
fly). "fp16" adds a dynamic gradient scaler (Micikevicius et al. 2018): the loss is multiplied
by a scale before the backward pass, a step whose gradients overflow is skipped on the device
(the scale halves), and the scale grows again after 2000 clean steps. bf16 has float32's
exponent range and needs no scaler. On CUDA, float32 matrix products may use TF32
(`training.tf32`).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from models.score_model import PRECISIONS


def autocast(precision: str, device: torch.device):
    """The context the forward pass and the loss run in."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> Optional[torch.amp.GradScaler]:
    """A gradient scaler for "fp16", else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def set_tf32(enabled: bool) -> None:
    """Let CUDA float32 matrix products and convolutions use TF32 (10-bit mantissa inputs,
    float32 accumulation)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
