"""Data sets by `config.data.dataset`: CIFAR10, DIGITS, the 2-D toy sets, and your own image
folders / zips (`data.folder`), `.npz` arrays (`data.arrays`) and memory-mapped `.npy`
(`data.npy`).

Images are kept as uint8 `[N, C, H, W]` (what the files hold), in memory or, for your own data
beyond `IN_MEMORY_BYTES`, as a `data.lazy` view read as indexed; `data.transforms` turns a
batch into model inputs. Toy sets are float32 `[N, 2]`. Class labels, where the set has them
(`NUM_CLASSES`), are int64 `[N]` aligned with the examples.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from data.arrays import arrays_info, load_arrays
from data.folder import build_index, folder_num_classes, split_index
from data.images import ImageLimits, resize_batch
from data.lazy import FolderImages, MemmapArray
from data.npy import load_npy, npy_info
from data.toy import TOY_NUM_CLASSES, TOY_SETS, make_toy_labeled, toy_gaussian_mixture

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
SPLITS = ("train", "test")
IMAGE_SETS = ("CIFAR10", "DIGITS")
USER_SETS = ("image_folder", "npz", "npy")   # your own data, at config.data.path
STREAMABLE = ("image_folder", "npy")          # read as indexed unless held in memory
# Your own data is held in memory when all of it (both splits, decoded) takes at most this many
# bytes (else streamed); `config.data.in_memory` forces either.
IN_MEMORY_BYTES = 128 << 20
DATASETS = sorted(IMAGE_SETS + tuple(TOY_SETS) + USER_SETS)
# Classes per data set (0: unlabeled); known without loading the data.
NUM_CLASSES = {"CIFAR10": 10, "DIGITS": 10, **TOY_NUM_CLASSES}
LABELED_DATASETS = sorted(name for name, k in NUM_CLASSES.items() if k > 0)


class DatasetError(RuntimeError):
    """A data set that is missing or not in its standard format."""


@dataclass
class Dataset:
    """`data`: uint8 `[N, C, H, W]` images or float32 `[N, d]` vectors (a tensor in memory, or a
    `data.lazy` view read as indexed: `streamed`); `log_prob`: exact density, if known;
    `labels`: int64 `[N]` classes in 0 … num_classes − 1, or None (num_classes = 0)."""
    name: str
    data: Union[torch.Tensor, FolderImages, MemmapArray]
    is_image: bool
    log_prob: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    labels: Optional[torch.Tensor] = None
    num_classes: int = 0

    def __post_init__(self):
        if (self.labels is None) != (self.num_classes == 0):
            raise ValueError(f"{self.name}: labels and num_classes={self.num_classes} disagree")
        if self.labels is not None and self.labels.shape != (len(self.data),):
            raise ValueError(f"{self.name}: labels {tuple(self.labels.shape)} for "
                             f"{len(self.data)} examples")

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def streamed(self) -> bool:
        """Whether the examples are read as indexed (not held in memory)."""
        return not torch.is_tensor(self.data)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays and lists) and nothing else."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path):
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError) as err:
        raise DatasetError(f"{path} is not a CIFAR-10 python batch ({err})") from None
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _download_cifar10(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    partial = archive.with_suffix(".partial")
    try:
        urllib.request.urlretrieve(CIFAR10_URL, partial)
    except OSError as err:
        raise DatasetError(f"could not download CIFAR-10 from {CIFAR10_URL} ({err}); download it "
                           f"yourself and extract it so that {root / 'cifar-10-batches-py'} "
                           f"exists") from None
    digest = hashlib.md5(partial.read_bytes()).hexdigest()
    if digest != CIFAR10_MD5:
        partial.unlink()
        raise DatasetError(f"CIFAR-10 archive checksum {digest} != expected {CIFAR10_MD5}; "
                           f"deleted it")
    os.replace(partial, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")


def load_cifar10(root: str, split: str, download: bool = False) -> torch.Tensor:
    """uint8 `[N, 3, 32, 32]` from `root/cifar-10-batches-py/` (the python-pickle batches)."""
    return load_cifar10_labeled(root, split, download)[0]


def load_cifar10_labeled(root: str, split: str, download: bool = False):
    """(uint8 images `[N, 3, 32, 32]`, int64 labels `[N]` in 0 … 9) of a CIFAR-10 split."""
    folder = Path(root).expanduser() / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not all((folder / n).exists() for n in names):
        if not download:
            raise DatasetError(
                f"CIFAR-10 not found: expected {', '.join(names)} in {folder}. Set "
                f"config.data.root to the directory holding cifar-10-batches-py/ (as torchvision "
                f"lays it out), or set config.data.download=True to fetch it ({CIFAR10_URL}).")
        _download_cifar10(Path(root).expanduser())
    batches = [_read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"CIFAR-10 labels in {folder} lie outside 0 … 9")
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_digits(split: str) -> torch.Tensor:
    """scikit-learn's bundled 8×8 digits as uint8 `[N, 1, 8, 8]` (levels 0…16 mapped onto 0…255).

    A fixed permutation (seed 0) puts 297 images in `test` and 1500 in `train`.
    """
    return load_digits_labeled(split)[0]


def load_digits_labeled(split: str):
    """(uint8 images `[N, 1, 8, 8]`, int64 labels `[N]`: sklearn's targets 0 … 9) of a split."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images                                              # [1797, 8, 8] in 0..16
    order = np.random.default_rng(0).permutation(len(images))
    chosen = order[:297] if split == "test" else order[297:]
    pixels = np.rint(images[chosen] * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target[chosen], dtype=np.int64)
    return torch.from_numpy(pixels[:, None]), torch.from_numpy(labels)


def _user_set(name: str, data: torch.Tensor, labels: Optional[torch.Tensor],
              is_image: bool) -> Dataset:
    """A Dataset of your own data; its classes are the labels' range (train and test agree when
    both hold every class; `describe` reads it from the whole file)."""
    num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 0
    return Dataset(name, data, is_image, labels=labels if num_classes else None,
                   num_classes=num_classes)


@dataclass(frozen=True)
class DataInfo:
    """What is known of a data set without loading it: 8-bit images or not, its classes (0:
    unlabeled), and for your own arrays the stored shape of one example (else None)."""
    is_image: bool
    num_classes: int
    example_shape: Optional[tuple] = None


def describe(data_config) -> DataInfo:
    """The `DataInfo` of `config.data` (reads folder listings and array headers only)."""
    name = data_config.dataset
    if name == "image_folder":
        return DataInfo(True, folder_num_classes(data_config.path))
    if name in ("npz", "npy"):
        info = arrays_info if name == "npz" else npy_info
        shape, is_image, num_classes = info(data_config.path)
        return DataInfo(is_image, num_classes, shape)
    if name not in NUM_CLASSES:
        raise ValueError(f"Unknown config.data.dataset {name!r}; expected one of {DATASETS}")
    return DataInfo(name in IMAGE_SETS, NUM_CLASSES[name])


def _in_memory(data_config, num_bytes: int) -> bool:
    forced = data_config.get("in_memory", None)
    return bool(forced) if forced is not None else num_bytes <= IN_MEMORY_BYTES


def limits_of(data_config) -> ImageLimits:
    """The size limits on one image file of `config.data`."""
    default = ImageLimits()
    return ImageLimits(data_config.get("max_image_pixels", default.max_pixels),
                       data_config.get("max_file_bytes", default.max_bytes))


def _image_folder(data_config, split: str, cache_dir) -> Dataset:
    limits = limits_of(data_config)
    index = build_index(data_config.path, limits, cache_dir)
    part = split_index(index, split,
                       seed=data_config.get("seed", 0),
                       test_fraction=data_config.get("test_fraction", 0.1),
                       skip_bad_files=data_config.get("skip_bad_files", False), limits=limits)
    images = FolderImages(part.reader, part.rows, data_config.image_size,
                          data_config.num_channels, data_config.get("skip_bad_files", False))
    if _in_memory(data_config, len(index.names) * int(np.prod(images.shape[1:]))):
        images = images[:]        # both splits held, or both streamed: by the whole set's size
    return _user_set("image_folder", images, part.labels, True)


def build_dataset(data_config, split: str, cache_dir=None) -> Dataset:
    """The `split` ("train" or "test") of the data set named by `config.data.dataset`.

    Your own images and memory-mapped arrays are streamed (read as indexed) when larger than
    `IN_MEMORY_BYTES` unless `config.data.in_memory` says otherwise; an image folder's index is
    kept in `cache_dir` (a folder of the workdir) when given."""
    name = data_config.dataset
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(SPLITS)}")
    if name == "image_folder":
        return _image_folder(data_config, split, cache_dir)
    if name == "npy":
        data, labels, is_image = load_npy(data_config.path, split,
                                          seed=data_config.get("seed", 0),
                                          test_fraction=data_config.get("test_fraction", 0.1))
        if is_image:
            data.resize = data_config.image_size
        if _in_memory(data_config, data.array.size * (1 if is_image else 4)):
            data = data[:]
        return _user_set(name, data, labels, is_image)
    if name == "npz":
        data, labels, is_image = load_arrays(data_config.path, split,
                                             seed=data_config.get("seed", 0),
                                             test_fraction=data_config.get("test_fraction", 0.1))
        if is_image:
            data = resize_batch(data, data_config.image_size)
        return _user_set(name, data, labels, is_image)
    if name in IMAGE_SETS:
        if name == "CIFAR10":
            images, labels = load_cifar10_labeled(data_config.root, split,
                                                  data_config.get("download", False))
        else:
            images, labels = load_digits_labeled(split)
        return Dataset(name, resize_batch(images, data_config.image_size), True, labels=labels,
                       num_classes=NUM_CLASSES[name])
    if name in TOY_SETS:
        size = (data_config.get("num_train", 50_000) if split == "train"
                else data_config.get("num_test", 10_000))
        seed = data_config.get("seed", 0) * 2 + (split == "test")
        log_prob = toy_gaussian_mixture().log_prob if name == "gaussian_mixture" else None
        points, labels = make_toy_labeled(name, size, seed)
        return Dataset(name, points, False, log_prob, labels, NUM_CLASSES[name])
    raise ValueError(f"Unknown config.data.dataset {name!r}; expected one of {DATASETS}")
