"""data.order: the batch order is a per-epoch permutation, deterministic, split by rank."""
import torch

from data import BatchOrder


def test_batch_order_is_a_permutation_per_epoch_and_deterministic():
    order = BatchOrder(10, 3, seed=1)
    epoch0 = torch.cat([order.indices(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9
    again = BatchOrder(10, 3, seed=1)
    assert torch.equal(again.indices(4), order.indices(4))
    assert not torch.equal(order.indices(0), order.indices(3))  # a new epoch reshuffles


def test_ranks_split_the_global_batch():
    full = BatchOrder(100, 8, seed=0).indices(5)
    shards = [BatchOrder(100, 8, seed=0, rank=r, world_size=2).indices(5) for r in range(2)]
    assert torch.equal(torch.cat(shards), full)
