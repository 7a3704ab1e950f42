"""data.datasets: CIFAR-10's pickle format (on a fake set), DIGITS, toy sets, class labels,
errors."""
import pickle

import ml_collections
import numpy as np
import pytest
import torch

from data.datasets import (LABELED_DATASETS, NUM_CLASSES, Dataset, DatasetError, build_dataset,
                           load_cifar10)
from data.toy import TOY_SETS, toy_gaussian_mixture


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


def test_cifar10_labels_follow_the_batches(tmp_path):
    folder = write_fake_cifar10(tmp_path, num_per_batch=6)
    train = build_dataset(_data_config(root=str(tmp_path)), "train")
    test = build_dataset(_data_config(root=str(tmp_path)), "test")
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)]:  # train concatenates batches 1 … 5
        with open(folder / name, "rb") as f:
            expected += pickle.load(f, encoding="bytes")[b"labels"]
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == expected
    assert train.num_classes == test.num_classes == 10 and test.labels.shape == (6,)


def test_digits_labels_are_the_sklearn_targets_of_the_same_images():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Stored pixels are rint(level · 255/16) of sklearn's 0 … 16 levels: map them back.
    targets = {}
    for image, target in zip(bunch.images.astype(np.int64), bunch.target):
        targets.setdefault(image.tobytes(), set()).add(int(target))
    config = _data_config(dataset="DIGITS", image_size=8, num_channels=1)
    for split, size in (("train", 1500), ("test", 297)):
        dataset = build_dataset(config, split)
        assert dataset.labels.shape == (size,) and dataset.labels.dtype == torch.int64
        assert dataset.num_classes == 10 and set(dataset.labels.tolist()) == set(range(10))
        levels = np.rint(dataset.data[:, 0].numpy() * (16.0 / 255.0)).astype(np.int64)
        for image, label in zip(levels, dataset.labels.tolist()):
            assert label in targets[image.tobytes()]


def test_gaussian_mixture_labels_are_the_generating_components():
    config = _data_config(dataset="gaussian_mixture", num_train=4000)
    dataset = build_dataset(config, "train")
    mixture = toy_gaussian_mixture()
    assert dataset.num_classes == 3 and dataset.labels.dtype == torch.int64
    counts = torch.bincount(dataset.labels, minlength=3).double()
    # Multinomial counts: within 5 standard deviations of n·w_k.
    n, w = 4000, mixture.weights
    assert ((counts - n * w).abs() <= 5 * (n * w * (1 - w)).sqrt()).all(), counts
    for k in range(3):  # the points of class k are distributed as component k (means to 5 s.e.)
        points = dataset.data[dataset.labels == k].double()
        se = (mixture.variances[k] / len(points)).sqrt()
        assert ((points.mean(0) - mixture.means[k]).abs() < 5 * se).all()


def test_moons_labels_are_the_half_circles():
    dataset = build_dataset(_data_config(dataset="moons", num_train=2000), "train")
    assert dataset.num_classes == 2 and set(dataset.labels.tolist()) == {0, 1}
    raw = dataset.data.double() / 1.6 + torch.tensor([0.5, 0.25], dtype=torch.float64)
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.5]], dtype=torch.float64)[dataset.labels]
    radius = (raw - centres).norm(dim=1)
    # Each point lies on its own unit half circle up to the noise (σ = 0.05 per coordinate).
    assert (radius - 1).abs().max() < 0.3
    # The upper moon (0) lies above its centre, the lower one (1) below its own.
    height = (raw[:, 1] - centres[:, 1]) * (1 - 2 * dataset.labels)
    assert height.min() > -0.3


@pytest.mark.parametrize("name", sorted(TOY_SETS))
def test_toy_label_presence_and_splits(name):
    config = _data_config(dataset=name)
    train, test = build_dataset(config, "train"), build_dataset(config, "test")
    assert (train.labels is not None) == (name in LABELED_DATASETS) == (NUM_CLASSES[name] > 0)
    if train.labels is not None:
        assert train.labels.shape == (100,) and test.labels.shape == (50,)
        assert 0 <= int(train.labels.min()) and int(train.labels.max()) < train.num_classes
    again = build_dataset(config, "train")
    assert torch.equal(again.data, train.data)
    assert (again.labels is None) or torch.equal(again.labels, train.labels)


def test_dataset_rejects_inconsistent_labels():
    with pytest.raises(ValueError, match="labels"):
        Dataset("x", torch.zeros(3, 2), False, labels=torch.zeros(2, dtype=torch.int64),
                num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        Dataset("x", torch.zeros(3, 2), False, labels=torch.zeros(3, dtype=torch.int64))
