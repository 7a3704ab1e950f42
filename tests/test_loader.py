"""data.loader: streamed batches equal in-memory ones for a seed, whatever the workers; ranks
read disjoint shards that cover the epoch; a resume mid-epoch continues the same batches."""
import zipfile

import pytest
import torch

from data.folder import build_index, split_index
from data.lazy import FolderImages
from data.loader import LoaderSettings, StepBatches, in_memory_batches
from data.order import BatchOrder
from data.transforms import DataTransform
from tests.test_folder import write_pngs


@pytest.fixture(scope="module")
def zipped(tmp_path_factory):
    """A zip of 3 classes × 8 PNGs of mixed sizes, and its train split streamed."""
    root = tmp_path_factory.mktemp("loader")
    written = write_pngs(root / "imgs", classes=("a", "b", "c"), per_class=8, size=(11, 9))
    with zipfile.ZipFile(root / "imgs.zip", "w") as archive:
        for path in written:
            archive.write(path, path.relative_to(root / "imgs").as_posix())
    part = split_index(build_index(root / "imgs.zip"), "train", seed=2, test_fraction=0.25)
    return FolderImages(part.reader, part.rows, 8, 3), part.labels


def _collect(batches, count):
    out = [next(batches) for _ in range(count)]
    if isinstance(batches, StepBatches):
        batches.close()
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_in_memory_ones(zipped, workers):
    images, labels = zipped
    order = BatchOrder(len(images), 4, seed=5)
    memory = _collect(in_memory_batches(images[:], labels, order, 0, 9), 9)   # 2 epochs +
    streamed = _collect(StepBatches(images, labels, order, 0, 9, LoaderSettings(workers)), 9)
    for (x, y), (xs, ys) in zip(memory, streamed):
        assert x.dtype == xs.dtype == torch.uint8 and x.shape == (4, 3, 8, 8)
        assert torch.equal(x, xs) and torch.equal(y, ys)


def test_a_resume_mid_epoch_reads_the_same_batches(zipped):
    images, labels = zipped
    order = BatchOrder(len(images), 4, seed=1)
    whole = _collect(StepBatches(images, labels, order, 0, 8, LoaderSettings(1)), 8)
    resumed = _collect(StepBatches(images, labels, order, 3, 8, LoaderSettings(1)), 5)
    for (x, y), (xr, yr) in zip(whole[3:], resumed):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    assert order.position(3)["epoch"] == 0 and order.position(5)["epoch"] == 1


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_shards_that_cover_each_epoch(world_size):
    num_examples, batch_size = 30, 6
    orders = [BatchOrder(num_examples, batch_size, seed=4, rank=r, world_size=world_size)
              for r in range(world_size)]
    per_epoch = num_examples // batch_size
    for epoch in range(2):
        shards = [torch.cat([o.indices(epoch * per_epoch + b) for b in range(per_epoch)])
                  for o in orders]
        union = torch.cat(shards)
        assert len(set(union.tolist())) == len(union) == num_examples   # disjoint, covering
        for r in range(world_size):    # each rank's share is its rows of the global batch
            whole = BatchOrder(num_examples, batch_size, seed=4).indices(epoch * per_epoch)
            share = batch_size // world_size
            assert torch.equal(orders[r].indices(epoch * per_epoch),
                               whole[r * share:(r + 1) * share])


def test_a_share_is_augmented_as_the_same_rows_of_the_whole_batch():
    transform = DataTransform(centered=True, dequantize=True, flip=True)
    raw = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    whole = transform(raw, train=True, generator=torch.Generator().manual_seed(3))
    for start in (0, 2, 4):
        part = transform(raw[start:start + 2], train=True, share=(start, 6),
                         generator=torch.Generator().manual_seed(3))
        assert torch.equal(part, whole[start:start + 2])


def test_workers_leave_signals_to_the_training_process(zipped):
    import os
    import signal
    import time

    images, labels = zipped
    order = BatchOrder(len(images), 4, seed=0)
    stream = StepBatches(images, labels, order, 0, 12, LoaderSettings(2))
    first = next(stream)
    for worker in stream._iterator._workers:
        os.kill(worker.pid, signal.SIGTERM)
        os.kill(worker.pid, signal.SIGINT)
    time.sleep(0.2)
    rest = [next(stream) for _ in range(11)]                 # they keep reading
    stream.close()
    assert len(rest) == 11 and first[0].shape == (4, 3, 8, 8)
