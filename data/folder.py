"""Your own images: a folder or a zip of PNG / JPEG files (`data.dataset = "image_folder"`).

Layout (`data.path`): images anywhere below the folder (or inside the zip). Class labels: when
every image sits in a sub-folder of the top level, each sub-folder is a class (sorted names →
0 … K−1); a top level of exactly `train/` and `test/` gives the split (classes below them),
else the test split is drawn with `data.seed` (`data.test_fraction` of the images). Each image
is converted to `data.num_channels` channels (1: L, 2: LA, 3: RGB, 4: RGBA), its shorter side
resized to `data.image_size` (antialiased bicubic) and centre-cropped; stored as uint8
`[N, C, H, W]`, as the built-in image sets.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg")
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class FolderError(ValueError):
    """A folder or zip without usable images (bad input)."""


def _entries(path: Path) -> List[PurePosixPath]:
    """The image files below `path` (a folder or a zip), as relative POSIX paths, sorted."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [PurePosixPath(n) for n in archive.namelist() if not n.endswith("/")]
    elif path.is_dir():
        names = [PurePosixPath(p.relative_to(path).as_posix()) for p in path.rglob("*")
                 if p.is_file()]
    else:
        raise FolderError(f"config.data.path={str(path)!r} is neither a folder nor a zip file")
    images = sorted(n for n in names if n.suffix.lower() in EXTENSIONS
                    and not any(part.startswith(".") for part in n.parts))
    if not images:
        raise FolderError(f"config.data.path={str(path)!r} holds no {'/'.join(EXTENSIONS)} files")
    return images


def _layout(images: List[PurePosixPath]) -> Tuple[Optional[List[str]], List[str], bool]:
    """(class names or None, each image's split part ("train"/"test"/""), whether split given)."""
    tops = {n.parts[0] for n in images if len(n.parts) > 1}
    split_given = tops == {"train", "test"} and all(len(n.parts) > 1 for n in images)
    inner = [PurePosixPath(*n.parts[1:]) if split_given else n for n in images]
    classes = None
    if all(len(n.parts) > 1 for n in inner):
        classes = sorted({n.parts[0] for n in inner})
    parts = [n.parts[0] if split_given else "" for n in images]
    return classes, parts, split_given


def folder_num_classes(path) -> int:
    """The number of classes of an image folder (0: no class sub-folders), without decoding."""
    classes, _, _ = _layout(_entries(Path(path).expanduser()))
    return len(classes) if classes else 0


def _open(path: Path, name: PurePosixPath, archive: Optional[zipfile.ZipFile]) -> Image.Image:
    data = archive.read(str(name)) if archive is not None else (path / name).read_bytes()
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, ValueError) as err:
        raise FolderError(f"{path / name} is not a readable image ({err})") from None


def _prepare(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """Convert, resize the shorter side to `size`, centre-crop: uint8 `[C, size, size]`."""
    image = image.convert(MODES[channels])
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                         Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array.reshape(size, size, channels).transpose(2, 0, 1)


def load_image_folder(path, split: str, *, image_size: int, num_channels: int, seed: int = 0,
                      test_fraction: float = 0.1) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(uint8 images `[N, C, H, W]`, int64 labels `[N]` or None) of one split of a folder or
    zip of images (see the module docstring)."""
    if num_channels not in MODES:
        raise FolderError(f"config.data.num_channels={num_channels} is not a channel count of "
                          f"an image; expected one of {sorted(MODES)}")
    path = Path(path).expanduser()
    images = _entries(path)
    classes, parts, split_given = _layout(images)
    if split_given:
        chosen = [i for i, part in enumerate(parts) if part == split]
    else:
        order = np.random.default_rng(seed).permutation(len(images))
        num_test = max(1, int(round(test_fraction * len(images))))
        chosen = sorted(order[:num_test] if split == "test" else order[num_test:])
    archive = zipfile.ZipFile(path) if path.is_file() else None
    try:
        pixels = np.stack([_prepare(_open(path, images[i], archive), image_size, num_channels)
                           for i in chosen]) if chosen else np.zeros(
            (0, num_channels, image_size, image_size), np.uint8)
    finally:
        if archive is not None:
            archive.close()
    labels = None
    if classes:
        offset = 1 if split_given else 0
        index = {name: k for k, name in enumerate(classes)}
        labels = torch.tensor([index[images[i].parts[offset]] for i in chosen], dtype=torch.int64)
    return torch.from_numpy(pixels), labels
