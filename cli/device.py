"""`--device`: where a run computes, checked before any work (one line naming the flag and the
allowed values, exit 2)."""
from __future__ import annotations

import re
from typing import Optional

import torch

from cli.checks import ConfigError

DEVICE_PATTERN = re.compile(r"(cpu|cuda)(:(\d+))?")
ALLOWED = "'cpu', 'cuda' or 'cuda:N' (N a GPU index)"


def check_device(value: str, world_size: int = 1, config=None) -> Optional[torch.device]:
    """The device `value` names (None for "": CUDA when available, else the CPU); raises
    ConfigError for a malformed name, a GPU this machine does not have, `cuda:N` in a job of
    several processes (each takes the GPU of its local rank: pass "cuda"), or the CPU for a
    `config` whose training or sampling precision is fp16 (CUDA only)."""
    if not value:
        return None
    match = DEVICE_PATTERN.fullmatch(value.strip())
    if match is None or (match[1] == "cpu" and match[2]):
        raise ConfigError(f"--device={value!r} is not allowed; expected {ALLOWED}")
    if match[1] == "cpu":
        for section in ("training", "sampling"):
            if config is not None and config[section].get("precision", "fp32") == "fp16":
                raise ConfigError(f"config.{section}.precision='fp16' needs a CUDA GPU, not "
                                  f"--device=cpu; use 'bf16' on the CPU")
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"--device={value!r}: no CUDA GPU is visible to this process; use "
                          f"--device=cpu")
    if match[3] is not None:
        index = int(match[3])
        if index >= count:
            raise ConfigError(f"--device={value!r}: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 … cuda:{count - 1}")
        if world_size > 1:
            raise ConfigError(f"--device={value!r}: under torchrun each process takes the GPU "
                              f"of its local rank; pass --device=cuda")
        return torch.device("cuda", index)
    return torch.device("cuda")
