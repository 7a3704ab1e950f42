"""Your own images: a folder or a zip of PNG / JPEG files (`data.dataset = "image_folder"`).

Layout (`data.path`): images anywhere below the folder (or inside the zip). Class labels: when
every image sits in a sub-folder of the top level, each sub-folder is a class (sorted names →
0 … K−1); a top level of exactly `train/` and `test/` gives the split (classes below them),
else the test split is drawn with `data.seed` (`data.test_fraction` of the images). Each image
becomes uint8 `[C, H, W]` as `data.images.decode` makes it, as the built-in image sets.

The index (`FolderIndex`: names and header sizes, no pixels) is built from the listing; with a
cache folder it is stored there keyed by the listing and rebuilt when the listing changes.
"""
from __future__ import annotations

import logging
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from data.errors import DataInputError
from data.images import MODES, BadImageError, ImageLimits, image_size
from data.index_cache import digest, load_cached, store_cached
from data.zipmembers import ZipTable, read_member, zip_listing

EXTENSIONS = (".png", ".jpg", ".jpeg")
HEADER_BYTES = 1 << 16   # an image's header (PNG IHDR, JPEG SOF) lies in its first 64 KiB,
# almost always: a file whose header is not found there is read whole before it is judged


class FolderError(DataInputError):
    """A folder or zip without usable images (bad input)."""


def _walk(root: Path, prefix: str = "") -> List[Tuple[str, int, int]]:
    """(relative POSIX name, size, mtime_ns) of every non-hidden file below `root`."""
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                found += _walk(Path(entry.path), name + "/")
            elif entry.is_file():
                stat = entry.stat()
                found.append((name, stat.st_size, stat.st_mtime_ns))
    return found


def _is_image(name: str) -> bool:
    return (os.path.splitext(name)[1].lower() in EXTENSIONS
            and not any(part.startswith(".") for part in name.split("/")))


def listing(path: Path) -> Tuple[bool, List[Tuple[str, int, int]], Optional[ZipTable]]:
    """(is a zip, [(name, size, mtime_ns or CRC)] of its image files sorted by name, and for a
    zip their `ZipTable`)."""
    table = None
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            names, crcs, table = zip_listing(path)
        except (OSError, struct.error) as err:
            raise FolderError(f"config.data.path={str(path)!r} is not a readable zip ({err})") \
                from None
        rows = sorted((i for i, name in enumerate(names) if _is_image(name)),
                      key=names.__getitem__)
        files = [(names[i], int(table.sizes[i]), crcs[i]) for i in rows]
        table, is_zip = table.take(np.asarray(rows, np.int64)), True
    elif path.is_dir():
        files, is_zip = sorted(f for f in _walk(path) if _is_image(f[0])), False
    else:
        raise FolderError(f"config.data.path={str(path)!r} is neither a folder nor a zip file")
    if not files:
        raise FolderError(f"config.data.path={str(path)!r} holds no {'/'.join(EXTENSIONS)} files")
    return is_zip, files, table


def _top(name: str) -> str:
    return name.partition("/")[0]


def _layout(names: List[str]) -> Tuple[Optional[List[str]], bool]:
    """(class names or None, whether the split is given by top-level train/ and test/)."""
    nested = all("/" in n for n in names)
    split_given = nested and {_top(n) for n in names} == {"train", "test"}
    inner = [n.partition("/")[2] for n in names] if split_given else names
    classes = sorted({_top(n) for n in inner}) if all("/" in n for n in inner) else None
    return classes, split_given


def folder_num_classes(path) -> int:
    """The number of classes of an image folder (0: no class sub-folders), without decoding."""
    classes, _ = _layout([name for name, _, _ in listing(Path(path).expanduser())[1]])
    return len(classes) if classes else 0


class Reader:
    """Reads image files' bytes from a folder, or a zip's members by their offsets (one open
    file per process), refusing any beyond the byte limit."""

    def __init__(self, root: Path, is_zip: bool, names: List[str], limits: ImageLimits,
                 table: Optional[ZipTable] = None):
        self.root, self.is_zip, self.names, self.limits, self.table = \
            root, is_zip, names, limits, table
        self._file, self._pid = None, None

    def __getstate__(self):   # DataLoader workers open their own file
        return {**self.__dict__, "_file": None, "_pid": None}

    def display(self, row: int) -> str:
        name = self.names[row]
        return f"{self.root}:{name}" if self.is_zip else str(self.root / name)

    def read(self, row: int, max_bytes: Optional[int] = None) -> bytes:
        """The bytes of file `row` (the first `max_bytes` only, if given), or `BadImageError`."""
        limit = self.limits.max_bytes if max_bytes is None else max_bytes
        try:
            if not self.is_zip:
                with open(self.root / self.names[row], "rb") as f:
                    data = f.read(limit + 1)
            else:
                if max_bytes is None:
                    self.limits.check_bytes(int(self.table.sizes[row]), self.display(row))
                if self._file is None or self._pid != os.getpid():
                    self._file, self._pid = open(self.root, "rb"), os.getpid()
                data = read_member(self._file, self.table, row, limit)
        except (OSError, struct.error) as err:
            raise BadImageError(f"{self.display(row)} cannot be read ({err})") from None
        if max_bytes is None:
            self.limits.check_bytes(len(data), self.display(row))
        return data[:limit]


@dataclass
class FolderIndex:
    """The images of a folder or zip, without pixels: names (sorted), header sizes `[N, 2]`
    (width, height), the files whose header could not be read or exceeds a limit (`bad`:
    name → message), and for a zip the members' `ZipTable`."""
    root: Path
    is_zip: bool
    names: List[str]
    sizes: np.ndarray
    bad: Dict[str, str] = field(default_factory=dict)
    table: Optional[ZipTable] = None


# root → (listing digest, index, cache folders holding it) of the last index built here
_BUILT: Dict[str, tuple] = {}


def _scan(reader: Reader, files, limits: ImageLimits) -> Tuple[np.ndarray, Dict[str, str]]:
    """Every file's (width, height) from its header, and the bad files' messages."""
    sizes, bad = np.zeros((len(files), 2), np.int64), {}
    for row, (name, num_bytes, _) in enumerate(files):
        try:
            limits.check_bytes(num_bytes, reader.display(row))
            try:
                head = reader.read(row, HEADER_BYTES)
                sizes[row] = image_size(head, reader.display(row), limits)
            except BadImageError:
                if num_bytes <= HEADER_BYTES:
                    raise
                sizes[row] = image_size(reader.read(row), reader.display(row), limits)
        except BadImageError as err:
            bad[name] = str(err)
    return sizes, bad


def build_index(path, limits: ImageLimits = ImageLimits(),
                cache_dir: Optional[Path] = None) -> FolderIndex:
    """The `FolderIndex` of `path`: read from `cache_dir` when its listing is unchanged, else
    built from every file's header (and stored there)."""
    root = Path(path).expanduser().resolve()
    is_zip, files, table = listing(root)
    key = digest([str(root), is_zip, limits.max_pixels, limits.max_bytes, files])
    built = _BUILT.get(str(root))
    if built is None or built[0] != key:
        names = [name for name, _, _ in files]
        cached = load_cached(cache_dir, "image_folder", str(root), key)
        if cached is not None:
            sizes, bad = np.asarray(cached["sizes"], np.int64).reshape(-1, 2), cached["bad"]
        else:
            sizes, bad = _scan(Reader(root, is_zip, names, limits, table), files, limits)
        built = _BUILT[str(root)] = (key, FolderIndex(root, is_zip, names, sizes, bad, table),
                                     {cache_dir} if cached is not None else set())
    key, index, stored = built                  # the other split reuses it in this process
    if cache_dir is not None and cache_dir not in stored:
        store_cached(cache_dir, "image_folder", str(root), key,
                     {"sizes": index.sizes.tolist(), "bad": index.bad})
        stored.add(cache_dir)
    return index


@dataclass
class FolderSplit:
    """One split of an image folder: its files (rows of the index, in index order), labels and
    class names."""
    reader: Reader
    rows: np.ndarray
    labels: Optional[torch.Tensor]
    classes: Optional[List[str]]

    @property
    def names(self) -> List[str]:
        return [self.reader.names[row] for row in self.rows]


def split_index(index: FolderIndex, split: str, *, seed: int = 0, test_fraction: float = 0.1,
                skip_bad_files: bool = False, limits: ImageLimits = ImageLimits()) -> FolderSplit:
    """The files of `split`: given by train/ and test/, else drawn with `seed`. Files whose
    header is bad are an error naming the first, or dropped (and counted) with
    `skip_bad_files`."""
    names = index.names
    classes, split_given = _layout(names)
    if split_given:
        chosen = np.asarray([i for i, n in enumerate(names) if _top(n) == split], np.int64)
    else:
        order = np.random.default_rng(seed).permutation(len(names))
        num_test = max(1, int(round(test_fraction * len(names))))
        chosen = np.sort(order[:num_test] if split == "test" else order[num_test:])
    bad = [i for i in chosen if names[i] in index.bad] if index.bad else []
    if bad and not skip_bad_files:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise BadImageError(f"{index.bad[names[bad[0]]]}{more}; set "
                            f"config.data.skip_bad_files=True to skip such files")
    if bad:
        logging.warning("skipped %d unreadable image files of the %s split of %s", len(bad),
                        split, index.root)
        chosen = np.asarray([i for i in chosen if names[i] not in index.bad], np.int64)
    labels = None
    if classes:
        position = {name: k for k, name in enumerate(classes)}
        inner = (lambda n: n.partition("/")[2]) if split_given else (lambda n: n)
        labels = torch.tensor([position[_top(inner(names[i]))] for i in chosen],
                              dtype=torch.int64)
    reader = Reader(index.root, index.is_zip, names, limits, index.table)
    return FolderSplit(reader, chosen, labels, classes)


def load_image_folder(path, split: str, *, image_size: int, num_channels: int, seed: int = 0,
                      test_fraction: float = 0.1) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(uint8 images `[N, C, H, W]`, int64 labels `[N]` or None) of one split of a folder or
    zip of images, decoded into memory (see the module docstring)."""
    from data.lazy import FolderImages

    if num_channels not in MODES:
        raise FolderError(f"config.data.num_channels={num_channels} is not a channel count of "
                          f"an image; expected one of {sorted(MODES)}")
    part = split_index(build_index(path), split, seed=seed, test_fraction=test_fraction)
    images = FolderImages(part.reader, part.rows, image_size, num_channels)
    return images[:], part.labels
