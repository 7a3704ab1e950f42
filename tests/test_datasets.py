"""training.datasets: CIFAR-10's pickle format (on a fake set), DIGITS, toy sets, errors."""
import pickle

import ml_collections
import numpy as np
import pytest
import torch

from training.datasets import DatasetError, build_dataset, load_cifar10
from training.toy_data import TOY_SETS


def write_fake_cifar10(root, num_per_batch=10, seed=0):
    """The python-pickle layout of cifar-10-batches-py/, with random images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (num_per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, num_per_batch)],
                 b"batch_label": b"fake"}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def _data_config(**fields):
    base = dict(dataset="CIFAR10", root="", download=False, image_size=32, num_channels=3,
                num_train=100, num_test=50, seed=0)
    base.update(fields)
    return ml_collections.ConfigDict(base)


def test_cifar10_pickle_batches(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    train = build_dataset(_data_config(root=str(tmp_path)), "train")
    test = build_dataset(_data_config(root=str(tmp_path)), "test")
    assert train.data.shape == (50, 3, 32, 32) and test.data.shape == (10, 3, 32, 32)
    assert train.data.dtype == torch.uint8 and train.is_image
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    # Rows are 1024 red, then green, then blue values in row-major order.
    assert torch.equal(test.data[3, 1].flatten(), torch.from_numpy(raw[3, 1024:2048]))
    resized = build_dataset(_data_config(root=str(tmp_path), image_size=16), "test")
    assert resized.data.shape == (10, 3, 16, 16)


def test_missing_cifar10_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_cifar10(str(tmp_path), "train")


def test_cifar10_refuses_foreign_pickles(tmp_path):
    folder = write_fake_cifar10(tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": []}, f)
    with pytest.raises(DatasetError, match="test_batch"):
        load_cifar10(str(tmp_path), "test")


def test_truncated_cifar10_batch(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    content = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(content[:100])
    with pytest.raises(DatasetError, match="data_batch_2"):
        load_cifar10(str(tmp_path), "train")


def test_digits():
    config = _data_config(dataset="DIGITS", image_size=8, num_channels=1)
    train, test = build_dataset(config, "train"), build_dataset(config, "test")
    assert train.data.shape == (1500, 1, 8, 8) and test.data.shape == (297, 1, 8, 8)
    assert train.data.max() == 255 and train.data.min() == 0
    assert build_dataset(config, "test").data.equal(test.data)  # fixed split


@pytest.mark.parametrize("name", sorted(TOY_SETS))
def test_toy_sets(name):
    config = _data_config(dataset=name)
    train, test = build_dataset(config, "train"), build_dataset(config, "test")
    assert train.data.shape == (100, 2) and test.data.shape == (50, 2) and not train.is_image
    assert not torch.equal(train.data[:50], test.data)
    assert train.data.abs().max() < 6
    assert (train.log_prob is not None) == (name == "gaussian_mixture")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="config.data.dataset.*expected one of"):
        build_dataset(_data_config(dataset="MNIST"), "train")
