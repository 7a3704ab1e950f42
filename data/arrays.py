"""Your own arrays: a `.npz` file (`data.dataset = "npz"`, `data.path`).

Arrays: `x` (or `data`, `images`) `[N, ...]` with optional labels `y` (or `labels`), the test
split drawn with `data.seed` (`data.test_fraction`); or the split given as `x_train` / `x_test`
(`y_train` / `y_test`). uint8 arrays of rank 4 are 8-bit images, stored NHWC as numpy and PIL
do (converted to `[N, C, H, W]`), and get the image pipeline (flips, dequantization, bits/dim
with the bin-width offset); any other array is continuous data used as it is (float32), its
bits/dim the negative log-density in nats / ln 2 per dimension.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

DATA_KEYS = ("x", "data", "images")
LABEL_KEYS = ("y", "labels")


class ArraysError(ValueError):
    """An `.npz` file that does not hold usable arrays (bad input)."""


def _headers(path: Path) -> Dict[str, Tuple[tuple, np.dtype]]:
    """Shape and dtype of every array of an `.npz` file, read from the headers only."""
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if major == 1
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(member)
                headers[name[:-4]] = (shape, dtype)
            return headers
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise ArraysError(f"config.data.path={str(path)!r} is not a readable .npz file "
                          f"({err})") from None


def _keys(headers) -> Tuple[str, Optional[str], bool]:
    """(data key, label key or None, split given) of an `.npz`'s arrays."""
    if "x_train" in headers and "x_test" in headers:
        label = "y" if "y_train" in headers and "y_test" in headers else None
        return "x", label, True
    data = next((k for k in DATA_KEYS if k in headers), None)
    if data is None:
        raise ArraysError(f"the .npz holds {sorted(headers)}; expected an array named one of "
                          f"{list(DATA_KEYS)}, or x_train and x_test")
    return data, next((k for k in LABEL_KEYS if k in headers), None), False


def arrays_info(path) -> Tuple[tuple, bool, int]:
    """(shape of one example as stored for the model, whether 8-bit images, number of classes)
    without loading the data arrays."""
    path = Path(path).expanduser()
    headers = _headers(path)
    data, label, split_given = _keys(headers)
    shape, dtype = headers[f"{data}_train" if split_given else data]
    is_image = dtype == np.uint8 and len(shape) == 4
    example = (shape[3], shape[1], shape[2]) if is_image else tuple(shape[1:])
    num_classes = 0
    if label is not None:
        with np.load(path) as arrays:
            keys = [f"{label}_train", f"{label}_test"] if split_given else [label]
            num_classes = int(max(int(arrays[k].max()) for k in keys if arrays[k].size)) + 1
    return example, is_image, num_classes


def load_arrays(path, split: str, *, seed: int = 0, test_fraction: float = 0.1
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """(data `[N, ...]`: uint8 `[N, C, H, W]` images or float32, int64 labels `[N]` or None,
    whether 8-bit images) of one split of an `.npz` file (see the module docstring)."""
    path = Path(path).expanduser()
    data_key, label_key, split_given = _keys(_headers(path))
    with np.load(path) as arrays:
        if split_given:
            x = arrays[f"{data_key}_{split}"]
            y = arrays[f"{label_key}_{split}"] if label_key else None
        else:
            x = arrays[data_key]
            y = arrays[label_key] if label_key else None
            order = np.random.default_rng(seed).permutation(len(x))
            num_test = max(1, int(round(test_fraction * len(x))))
            chosen = np.sort(order[:num_test] if split == "test" else order[num_test:])
            x, y = x[chosen], (y[chosen] if y is not None else None)
    if y is not None and (y.ndim != 1 or len(y) != len(x)
                          or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0)):
        raise ArraysError(f"labels in {path} must be non-negative integers [N] beside the data")
    is_image = x.dtype == np.uint8 and x.ndim == 4
    data = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if is_image else x))
    labels = None if y is None else torch.from_numpy(y.astype(np.int64))
    return (data if is_image else data.float()), labels, is_image
