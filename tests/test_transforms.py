"""data.transforms: scaling, dequantization, flips and the prepared `DataTransform`."""
import torch

from data import DataTransform, random_flip, scale_images, to_uint8_images


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


def test_data_transform_matches_the_functions_it_combines():
    raw = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    transform = DataTransform(centered=True, dequantize=True, flip=True)
    x = transform(raw, train=True, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    expected = scale_images(random_flip(raw, g), centered=True, dequantize=True, generator=g)
    assert torch.equal(x, expected)
    # Not training: no flips, still dequantized (as the bits/dim of dequantized data needs).
    y = transform(raw, train=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y, scale_images(raw, centered=True, dequantize=True,
                                       generator=torch.Generator().manual_seed(3)))
    assert torch.equal(transform.to_uint8(transform.images(raw)), raw)
    vectors = torch.randn(4, 2, dtype=torch.float64)
    assert transform(vectors, train=True).dtype == torch.float32
