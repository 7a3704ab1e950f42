"""training.pipeline: batch order, scaling and dequantization."""
import torch

from training.pipeline import BatchOrder, random_flip, scale_images, to_uint8_images


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


def test_scaling_and_dequantization():
    raw = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    torch.testing.assert_close(scale_images(raw, centered=False, dequantize=False),
                               raw.float() / 255)
    torch.testing.assert_close(scale_images(raw, centered=True, dequantize=False),
                               raw.float() / 255 * 2 - 1)
    x = scale_images(raw.expand(1000, 1, 1, 3), centered=False, dequantize=True,
                     generator=torch.Generator().manual_seed(0))
    # (v + u)/256 with u ~ U[0, 1) stays within v's bin [v/256, (v+1)/256).
    assert ((x * 256).floor() == raw.float()).all()
    assert torch.equal(to_uint8_images(raw.float() / 255 * 2 - 1, centered=True), raw)


def test_random_flip_mirrors_about_half():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).expand(400, 1, 1, 4)
    flipped = random_flip(x, torch.Generator().manual_seed(0))
    mirrored = (flipped[:, 0, 0, 0] == 3).float().mean().item()
    assert 0.4 < mirrored < 0.6
