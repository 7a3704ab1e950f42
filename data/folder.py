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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from data.errors import DataInputError
from data.images import MODES, BadImageError, ImageLimits, decode, image_size
from data.index_cache import load_cached, store_cached

EXTENSIONS = (".png", ".jpg", ".jpeg")
HEADER_BYTES = 1 << 20   # an image's header lies in its first MiB


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


def listing(path: Path) -> Tuple[bool, List[Tuple[str, int, int]]]:
    """(is a zip, [(name, size, mtime_ns or CRC)] of its image files, sorted by name)."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            files = [(i.filename, i.file_size, i.CRC) for i in archive.infolist()
                     if not i.is_dir()]
        is_zip = True
    elif path.is_dir():
        files, is_zip = _walk(path), False
    else:
        raise FolderError(f"config.data.path={str(path)!r} is neither a folder nor a zip file")
    images = sorted(f for f in files if PurePosixPath(f[0]).suffix.lower() in EXTENSIONS
                    and not any(p.startswith(".") for p in PurePosixPath(f[0]).parts))
    if not images:
        raise FolderError(f"config.data.path={str(path)!r} holds no {'/'.join(EXTENSIONS)} files")
    return is_zip, images


def _layout(names: List[str]) -> Tuple[Optional[List[str]], List[str], bool]:
    """(class names or None, each image's split part ("train"/"test"/""), whether split given)."""
    paths = [PurePosixPath(n) for n in names]
    tops = {n.parts[0] for n in paths if len(n.parts) > 1}
    split_given = tops == {"train", "test"} and all(len(n.parts) > 1 for n in paths)
    inner = [PurePosixPath(*n.parts[1:]) if split_given else n for n in paths]
    classes = None
    if all(len(n.parts) > 1 for n in inner):
        classes = sorted({n.parts[0] for n in inner})
    parts = [n.parts[0] if split_given else "" for n in paths]
    return classes, parts, split_given


def folder_num_classes(path) -> int:
    """The number of classes of an image folder (0: no class sub-folders), without decoding."""
    classes, _, _ = _layout([name for name, _, _ in listing(Path(path).expanduser())[1]])
    return len(classes) if classes else 0


class Reader:
    """Reads image files' bytes from a folder or a zip (one zip handle per process)."""

    def __init__(self, root: Path, is_zip: bool, limits: ImageLimits):
        self.root, self.is_zip, self.limits = root, is_zip, limits
        self._archive, self._pid = None, None

    def __getstate__(self):   # DataLoader workers open their own handle
        return {**self.__dict__, "_archive": None, "_pid": None}

    def display(self, name: str) -> str:
        return f"{self.root}:{name}" if self.is_zip else str(self.root / name)

    def read(self, name: str, max_bytes: Optional[int] = None) -> bytes:
        """The bytes of `name` (at most `max_bytes`, else the limit's), or `BadImageError`."""
        limit = self.limits.max_bytes if max_bytes is None else max_bytes
        try:
            if not self.is_zip:
                with open(self.root / name, "rb") as f:
                    data = f.read(limit + 1)
            else:
                if self._archive is None or self._pid != os.getpid():
                    self._archive, self._pid = zipfile.ZipFile(self.root), os.getpid()
                info = self._archive.getinfo(name)
                if max_bytes is None:
                    self.limits.check_bytes(info.file_size, self.display(name))
                with self._archive.open(info) as member:
                    data = member.read(limit + 1)
        except (OSError, zipfile.BadZipFile, KeyError, EOFError, RuntimeError) as err:
            raise BadImageError(f"{self.display(name)} cannot be read ({err})") from None
        if max_bytes is None:
            self.limits.check_bytes(len(data), self.display(name))
        return data[:limit]


@dataclass
class FolderIndex:
    """The images of a folder or zip, without pixels: names (sorted), header sizes, and the files
    whose header could not be read or exceeds a limit (`bad`: name → message)."""
    root: Path
    is_zip: bool
    names: List[str]
    sizes: List[Tuple[int, int]]
    bad: Dict[str, str] = field(default_factory=dict)


_BUILT: Dict[str, tuple] = {}   # root → (key, index) of the last index built in this process


def build_index(path, limits: ImageLimits = ImageLimits(),
                cache_dir: Optional[Path] = None) -> FolderIndex:
    """The `FolderIndex` of `path`: read from `cache_dir` when its listing is unchanged, else
    built from every file's header (and stored there)."""
    root = Path(path).expanduser().resolve()
    is_zip, files = listing(root)
    key = [str(root), is_zip, limits.max_pixels, limits.max_bytes, files]
    cached = _BUILT.get(str(root))
    if cached is not None and cached[0] == key:     # the other split of this process
        return cached[1]
    cached = load_cached(cache_dir, "image_folder", str(root), key)
    if cached is not None:
        index = FolderIndex(root, is_zip, cached["names"], [tuple(s) for s in cached["sizes"]],
                            cached["bad"])
        _BUILT[str(root)] = (key, index)
        return index
    reader = Reader(root, is_zip, limits)
    sizes, bad = [], {}
    for name, num_bytes, _ in files:
        try:
            limits.check_bytes(num_bytes, reader.display(name))
            sizes.append(image_size(reader.read(name, HEADER_BYTES), reader.display(name), limits))
        except BadImageError as err:
            sizes.append((0, 0))
            bad[name] = str(err)
    names = [name for name, _, _ in files]
    store_cached(cache_dir, "image_folder", str(root), key,
                 {"names": names, "sizes": sizes, "bad": bad})
    _BUILT[str(root)] = (key, FolderIndex(root, is_zip, names, sizes, bad))
    return _BUILT[str(root)][1]


@dataclass
class FolderSplit:
    """One split of an image folder: its files (in index order), labels and class names."""
    reader: Reader
    names: List[str]
    labels: Optional[torch.Tensor]
    classes: Optional[List[str]]


def split_index(index: FolderIndex, split: str, *, seed: int = 0, test_fraction: float = 0.1,
                skip_bad_files: bool = False, limits: ImageLimits = ImageLimits()) -> FolderSplit:
    """The files of `split`: given by train/ and test/, else drawn with `seed`. Files whose
    header is bad are an error naming the first, or dropped (and counted) with
    `skip_bad_files`."""
    classes, parts, split_given = _layout(index.names)
    if split_given:
        chosen = [i for i, part in enumerate(parts) if part == split]
    else:
        order = np.random.default_rng(seed).permutation(len(index.names))
        num_test = max(1, int(round(test_fraction * len(index.names))))
        chosen = sorted(order[:num_test] if split == "test" else order[num_test:])
    bad = [i for i in chosen if index.names[i] in index.bad]
    if bad and not skip_bad_files:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise BadImageError(f"{index.bad[index.names[bad[0]]]}{more}; set "
                            f"config.data.skip_bad_files=True to skip such files")
    if bad:
        logging.warning("skipped %d unreadable image files of the %s split of %s", len(bad),
                        split, index.root)
        chosen = [i for i in chosen if index.names[i] not in index.bad]
    labels = None
    if classes:
        offset = 1 if split_given else 0
        position = {name: k for k, name in enumerate(classes)}
        labels = torch.tensor([position[PurePosixPath(index.names[i]).parts[offset]]
                               for i in chosen], dtype=torch.int64)
    return FolderSplit(Reader(index.root, index.is_zip, limits), [index.names[i] for i in chosen],
                       labels, classes)


def load_image_folder(path, split: str, *, image_size: int, num_channels: int, seed: int = 0,
                      test_fraction: float = 0.1) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(uint8 images `[N, C, H, W]`, int64 labels `[N]` or None) of one split of a folder or
    zip of images, decoded into memory (see the module docstring)."""
    from data.lazy import FolderImages

    if num_channels not in MODES:
        raise FolderError(f"config.data.num_channels={num_channels} is not a channel count of "
                          f"an image; expected one of {sorted(MODES)}")
    part = split_index(build_index(path), split, seed=seed, test_fraction=test_fraction)
    images = FolderImages(part.reader, part.names, image_size, num_channels)
    return images[:], part.labels
