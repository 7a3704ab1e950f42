"""data.npy: memory-mapped .npy files and uncompressed .npz members, read as indexed, equal to
the in-memory npz loader; labels from a sibling file; compressed members refused."""
import numpy as np
import pytest
import torch
from ml_collections import ConfigDict

from data.arrays import ArraysError, load_arrays
from data.datasets import build_dataset
from data.lazy import MemmapArray
from data.npy import load_npy, npy_info


def _config(path, **extra):
    return ConfigDict(dict(dataset="npy", path=str(path), seed=3, test_fraction=0.25,
                           image_size=4, num_channels=3, **extra))


def test_an_npy_file_is_mapped_with_labels_beside_it(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float64), rng.integers(0, 3, 40)
    np.save(tmp_path / "points.npy", x)
    np.save(tmp_path / "points_labels.npy", y)
    np.savez(tmp_path / "points.npz", x=x, y=y)
    assert npy_info(tmp_path / "points.npy") == ((5,), False, int(y.max()) + 1)
    for split in ("train", "test"):
        data, labels, is_image = load_npy(tmp_path / "points.npy", split, seed=3,
                                          test_fraction=0.25)
        expected, expected_labels, _ = load_arrays(tmp_path / "points.npz", split, seed=3,
                                                   test_fraction=0.25)
        assert isinstance(data, MemmapArray) and isinstance(data.array, np.memmap)
        assert not is_image and data.shape == tuple(expected.shape)
        assert torch.equal(data[:], expected) and torch.equal(labels, expected_labels)
        picks = torch.tensor([3, 0, 3, len(data) - 1])
        assert torch.equal(data[picks], expected[picks]) and torch.equal(data[2], expected[2])


def test_an_uncompressed_npz_member_is_mapped_where_it_lies(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "imgs.npz", x_train=images[:8], x_test=images[8:],
             y_train=np.arange(8) % 2, y_test=np.arange(4) % 2)
    test, labels, is_image = load_npy(tmp_path / "imgs.npz", "test")
    assert is_image and isinstance(test.array, np.memmap) and test.shape == (4, 3, 4, 4)
    assert torch.equal(test[:], torch.from_numpy(images[8:]).permute(0, 3, 1, 2))
    assert labels.tolist() == [0, 1, 0, 1]
    streamed = build_dataset(_config(tmp_path / "imgs.npz", in_memory=False), "train")
    held = build_dataset(_config(tmp_path / "imgs.npz", in_memory=True), "train")
    assert streamed.streamed and not held.streamed
    assert torch.equal(streamed.data[:], held.data) and streamed.num_classes == 2
    np.savez_compressed(tmp_path / "packed.npz", x=images)
    with pytest.raises(ArraysError, match=r"packed\.npz: x is compressed .* np\.savez"):
        load_npy(tmp_path / "packed.npz", "train")


def test_labels_that_do_not_fit_are_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 2), np.float32))
    np.save(tmp_path / "a_labels.npy", np.zeros(9, np.int64))
    with pytest.raises(ArraysError, match=r"a_labels\.npy: labels int64 \(9,\) for 10 examples"):
        npy_info(tmp_path / "a.npy")
    np.save(tmp_path / "a_labels.npy", np.full(10, -1))
    with pytest.raises(ArraysError, match="non-negative integers"):
        npy_info(tmp_path / "a.npy")
