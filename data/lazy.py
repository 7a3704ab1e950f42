"""Examples read when indexed, not held in memory: decoded image files and memory-mapped arrays.

Both behave as the in-memory `Dataset.data` tensor where the project indexes it: `len`,
`shape`, `dtype`, and `data[i]` / `data[a:b]` / `data[indices]` giving the same tensors as the
in-memory set would (uint8 `[B, C, H, W]` images, float32 `[B, ...]` vectors).
"""
from __future__ import annotations

import logging
from typing import Optional, Set, Tuple

import numpy as np
import torch

from data.images import BadImageError, decode, resize_batch


def _positions(key, length: int) -> Tuple[np.ndarray, bool]:
    """(the positions `key` selects, whether it selects a single example)."""
    if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.ndim == 0):
        index = int(key)
        if not -length <= index < length:
            raise IndexError(f"index {index} is out of range for {length} examples")
        return np.array([index % length]), True
    if isinstance(key, slice):
        return np.arange(length)[key], False
    positions = key.numpy() if torch.is_tensor(key) else np.asarray(key)
    if positions.dtype == bool:
        return np.flatnonzero(positions), False
    return positions.astype(np.int64) % max(length, 1), False


class FolderImages:
    """The images of one split of a folder or zip (`data.folder.FolderSplit`: a reader and the
    index rows of the split), decoded on access. An unreadable file is an error naming it, or
    with `skip_bad_files` replaced by the next readable file of the split (counted in
    `skipped`), so every batch keeps its size."""

    def __init__(self, reader, rows, image_size: int, num_channels: int,
                 skip_bad_files: bool = False):
        self.reader, self.rows = reader, np.asarray(rows, np.int64)
        self.image_size, self.num_channels, self.skip_bad_files = image_size, num_channels, \
            skip_bad_files
        self.skipped: Set[str] = set()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple:
        return (len(self.rows), self.num_channels, self.image_size, self.image_size)

    dtype = torch.uint8

    def _decode(self, position: int) -> np.ndarray:
        row = int(self.rows[position])
        return decode(self.reader.read(row), self.reader.display(row), self.image_size,
                      self.num_channels, self.reader.limits)

    def example(self, position: int) -> np.ndarray:
        """uint8 `[C, H, W]` of one file (or of its readable stand-in, see the class)."""
        for attempt in range(len(self.rows)):
            candidate = (position + attempt) % len(self.rows)
            try:
                return self._decode(candidate)
            except BadImageError as err:
                if not self.skip_bad_files:
                    raise BadImageError(f"{err}; set config.data.skip_bad_files=True to skip "
                                        f"such files") from None
                name = self.reader.names[int(self.rows[candidate])]
                if name not in self.skipped:
                    logging.warning("skipping %s", err)
                self.skipped.add(name)
        raise BadImageError(f"no image of {self.reader.root} could be read")

    def __getitem__(self, key) -> torch.Tensor:
        positions, single = _positions(key, len(self))
        if single:
            return torch.from_numpy(self.example(int(positions[0])))
        if not len(positions):
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.from_numpy(np.stack([self.example(int(p)) for p in positions]))


class MemmapArray:
    """The rows `rows` of a memory-mapped array `[N, ...]`: NHWC uint8 images are served as
    `[B, C, H, W]` (resized to `resize` when set), anything else as float32."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, is_image: bool,
                 resize: Optional[int] = None):
        self.array, self.rows, self.is_image = array, np.asarray(rows, np.int64), is_image
        self.resize = resize

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple:
        example = self.array.shape[1:]
        if self.is_image:
            side = self.resize or example[0]
            example = (example[2], side, side) if self.resize else (example[2], *example[:2])
        return (len(self.rows), *example)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8 if self.is_image else torch.float32

    def __getitem__(self, key) -> torch.Tensor:
        positions, single = _positions(key, len(self))
        rows = self.rows[positions]
        order = np.argsort(rows, kind="stable")        # read the file front to back
        values = np.empty((len(rows), *self.array.shape[1:]), self.array.dtype)
        values[order] = self.array[rows[order]]
        tensor = torch.from_numpy(values)
        if self.is_image:
            tensor = tensor.permute(0, 3, 1, 2).contiguous()
            tensor = resize_batch(tensor, self.resize) if self.resize else tensor
        else:
            tensor = tensor.float()
        return tensor[0] if single else tensor

