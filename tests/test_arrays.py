"""data.arrays: your own .npz arrays: any shape, labels, given or drawn splits, 8-bit images."""
import numpy as np
import pytest
import torch

from data.arrays import ArraysError, arrays_info, load_arrays


def test_vectors_with_labels_and_a_drawn_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 5)).astype(np.float32), rng.integers(0, 4, 100)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    assert arrays_info(tmp_path / "a.npz") == ((5,), False, int(y.max()) + 1)
    train, train_y, is_image = load_arrays(tmp_path / "a.npz", "train", seed=3, test_fraction=0.2)
    test, test_y, _ = load_arrays(tmp_path / "a.npz", "test", seed=3, test_fraction=0.2)
    assert not is_image and train.dtype == torch.float32 and train.shape == (80, 5)
    assert test.shape == (20, 5)
    both = torch.cat([train, test]).numpy()
    assert sorted(map(tuple, both)) == sorted(map(tuple, x))   # a partition of the examples
    assert sorted(torch.cat([train_y, test_y]).tolist()) == sorted(y.tolist())


def test_given_split_and_8bit_images_in_nhwc(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "b.npz", x_train=images[:4], x_test=images[4:])
    assert arrays_info(tmp_path / "b.npz") == ((3, 4, 4), True, 0)
    test, labels, is_image = load_arrays(tmp_path / "b.npz", "test")
    assert is_image and labels is None and test.dtype == torch.uint8
    assert torch.equal(test, torch.from_numpy(images[4:]).permute(0, 3, 1, 2))


def test_bad_files_are_named(tmp_path):
    np.savez(tmp_path / "c.npz", other=np.zeros(3))
    with pytest.raises(ArraysError, match="expected an array named one of"):
        arrays_info(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"junk")
    with pytest.raises(ArraysError, match="not a readable .npz"):
        arrays_info(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 2)), y=np.array([0.5, 1, 2, 3]))
    with pytest.raises(ArraysError, match="non-negative integers"):
        load_arrays(tmp_path / "e.npz", "train", test_fraction=0.25)
