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

from data.errors import DataInputError

DATA_KEYS = ("x", "data", "images")
LABEL_KEYS = ("y", "labels")


class ArraysError(DataInputError):
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


def drawn_rows(num_examples: int, split: str, seed: int, test_fraction: float) -> np.ndarray:
    """The sorted rows of `split` when the test split is drawn with `seed`."""
    order = np.random.default_rng(seed).permutation(num_examples)
    num_test = max(1, int(round(test_fraction * num_examples)))
    return np.sort(order[:num_test] if split == "test" else order[num_test:])


def check_arrays(path, headers, data: str, label: Optional[str], split_given: bool) -> None:
    """Train and test of one example shape and dtype, and labels `[N]` beside their data (from
    the headers: nothing is loaded)."""
    splits = ("_train", "_test") if split_given else ("",)
    if split_given:
        (train_shape, train_dtype), (test_shape, test_dtype) = (headers[f"{data}{s}"]
                                                               for s in splits)
        if train_shape[1:] != test_shape[1:] or train_dtype != test_dtype:
            raise ArraysError(f"{path}: {data}_train holds {train_dtype} {train_shape} but "
                              f"{data}_test {test_dtype} {test_shape}; the splits must hold "
                              f"examples of one shape and dtype")
    for suffix in splits if label else ():
        (x_shape, _), (y_shape, y_dtype) = headers[f"{data}{suffix}"], headers[f"{label}{suffix}"]
        if len(y_shape) != 1 or y_shape[0] != x_shape[0]:
            raise ArraysError(f"{path}: {label}{suffix} holds labels of shape {y_shape} for the "
                              f"{x_shape[0]} examples of {data}{suffix}; expected [{x_shape[0]}]")
        if not np.issubdtype(y_dtype, np.integer):
            raise ArraysError(f"{path}: {label}{suffix} holds {y_dtype} labels; expected "
                              f"non-negative integers")


def count_classes(path, labels) -> int:
    """The number of classes of integer label arrays (max + 1); negative labels are refused."""
    present = [y for y in labels if y.size]
    if any(int(y.min()) < 0 for y in present):
        raise ArraysError(f"labels in {path} must be non-negative integers (classes 0 … K−1)")
    return max((int(y.max()) + 1 for y in present), default=0)


def arrays_info(path) -> Tuple[tuple, bool, int]:
    """(shape of one example as stored for the model, whether 8-bit images, number of classes)
    without loading the data arrays; checks the arrays' shapes against each other."""
    path = Path(path).expanduser()
    headers = _headers(path)
    data, label, split_given = _keys(headers)
    check_arrays(path, headers, data, label, split_given)
    shape, dtype = headers[f"{data}_train" if split_given else data]
    is_image = dtype == np.uint8 and len(shape) == 4
    example = (shape[3], shape[1], shape[2]) if is_image else tuple(shape[1:])
    num_classes = 0
    if label is not None:
        with np.load(path) as arrays:
            keys = [f"{label}_train", f"{label}_test"] if split_given else [label]
            num_classes = count_classes(path, [arrays[k] for k in keys])
    return example, is_image, num_classes


def load_arrays(path, split: str, *, seed: int = 0, test_fraction: float = 0.1
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """(data `[N, ...]`: uint8 `[N, C, H, W]` images or float32, int64 labels `[N]` or None,
    whether 8-bit images) of one split of an `.npz` file (see the module docstring)."""
    path = Path(path).expanduser()
    headers = _headers(path)
    data_key, label_key, split_given = _keys(headers)
    check_arrays(path, headers, data_key, label_key, split_given)
    with np.load(path) as arrays:
        if split_given:
            x = arrays[f"{data_key}_{split}"]
            y = arrays[f"{label_key}_{split}"] if label_key else None
        else:
            x = arrays[data_key]
            y = arrays[label_key] if label_key else None
            chosen = drawn_rows(len(x), split, seed, test_fraction)
            x, y = x[chosen], (y[chosen] if y is not None else None)
    if y is not None:
        count_classes(path, [y])
    is_image = x.dtype == np.uint8 and x.ndim == 4
    data = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if is_image else x))
    labels = None if y is None else torch.from_numpy(y.astype(np.int64))
    return (data if is_image else data.float()), labels, is_image
