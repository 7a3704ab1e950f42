"""Memory-mapped arrays (`data.dataset = "npy"`, `data.path`): any size, read as indexed.

`data.path` is a `.npy` file `[N, ...]` (labels, if any, in the sibling `<name>_labels.npy`),
or an `.npz` written uncompressed (`np.savez`) whose members are named as for
`data.dataset = "npz"` (`x` / `data` / `images`, or `x_train` / `x_test`; labels `y`): the data
member is mapped where it lies inside the zip. uint8 arrays of rank 4 are NHWC 8-bit images, any
other array continuous data (see `data.arrays`). The test split is drawn as for `npz`.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from data.arrays import ArraysError, _keys, check_arrays, count_classes, drawn_rows
from data.lazy import MemmapArray

LABELS_SUFFIX = "_labels.npy"


def _read_header(f) -> Tuple[tuple, bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)
    return read(f)


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The `.npy` member `name` of an uncompressed zip, memory-mapped where it lies."""
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ArraysError(f"{path}: {name} is compressed and cannot be memory-mapped; write it "
                          f"with np.savez (not savez_compressed), or use "
                          f"config.data.dataset='npz' to load it into memory")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)                 # the zip's local file header (fixed part)
        if local[:4] != b"PK\x03\x04":
            raise ArraysError(f"{path}: {name} has no local zip header")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_length + extra_length)
        shape, fortran, dtype = _read_header(f)
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def _open(path: Path) -> Tuple[Dict[str, np.ndarray], Optional[str], bool]:
    """({split or "": mapped data}, the labels' key, whether the split is given) and the
    labels by the same keys under "y:<split>"."""
    arrays: Dict[str, np.ndarray] = {}
    try:
        if path.suffix == ".npy":
            arrays[""] = np.load(path, mmap_mode="r", allow_pickle=False)
            labels = path.with_name(path.stem + LABELS_SUFFIX)
            if labels.exists():
                arrays["y:"] = np.load(labels, allow_pickle=False)
            return arrays, "y" if labels.exists() else None, False
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for name in (n[:-4] for n in archive.namelist() if n.endswith(".npy")):
                with archive.open(f"{name}.npy") as member:
                    shape, _, dtype = _read_header(member)
                headers[name] = (shape, dtype)
            data, label, split_given = _keys(headers)
            check_arrays(path, headers, data, label, split_given)
            for split in ("train", "test") if split_given else ("",):
                suffix = f"_{split}" if split else ""
                arrays[split] = _member(path, archive, f"{data}{suffix}")
                if label:
                    with archive.open(f"{label}{suffix}.npy") as member:
                        arrays[f"y:{split}"] = np.lib.format.read_array(member,
                                                                        allow_pickle=False)
        return arrays, label, split_given
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, struct.error) as err:
        if isinstance(err, ArraysError):
            raise
        raise ArraysError(f"config.data.path={str(path)!r} is not a readable .npy file or "
                          f"uncompressed .npz ({err})") from None


def _checked(path: Path, arrays, label, split_given) -> int:
    """The number of classes, after checking the labels against the data."""
    if not label:
        return 0
    for split in ("train", "test") if split_given else ("",):
        x, y = arrays[split], arrays[f"y:{split}"]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            source = path.with_name(path.stem + LABELS_SUFFIX) if path.suffix == ".npy" else path
            raise ArraysError(f"{source}: labels {y.dtype} {y.shape} for {len(x)} examples; "
                              f"expected integers [{len(x)}]")
    return count_classes(path, [arrays[k] for k in arrays if k.startswith("y:")])


def npy_info(path) -> Tuple[tuple, bool, int]:
    """(shape of one example as the model sees it, whether 8-bit images, number of classes)."""
    path = Path(path).expanduser()
    arrays, label, split_given = _open(path)
    num_classes = _checked(path, arrays, label, split_given)
    x = arrays["train" if split_given else ""]
    is_image = x.dtype == np.uint8 and x.ndim == 4
    example = (x.shape[3], x.shape[1], x.shape[2]) if is_image else tuple(x.shape[1:])
    return example, is_image, num_classes


def load_npy(path, split: str, *, seed: int = 0, test_fraction: float = 0.1
             ) -> Tuple[MemmapArray, Optional[torch.Tensor], bool]:
    """(the split's examples, memory-mapped; int64 labels `[N]` or None; whether 8-bit
    images)."""
    path = Path(path).expanduser()
    arrays, label, split_given = _open(path)
    _checked(path, arrays, label, split_given)
    key = split if split_given else ""
    x = arrays[key]
    rows = np.arange(len(x)) if split_given else drawn_rows(len(x), split, seed, test_fraction)
    is_image = x.dtype == np.uint8 and x.ndim == 4
    labels = None
    if label:
        labels = torch.from_numpy(np.asarray(arrays[f"y:{key}"])[rows].astype(np.int64))
    return MemmapArray(x, rows, is_image), labels, is_image
