"""FIR resampling against a literal upfirdn2d: zero insertion, padding, convolution, decimation."""
import pytest
import torch
import torch.nn.functional as F

from models.up_down import (FIRConv2d, conv_downsample_2d, downsample_2d, fir_kernel_2d,
                            upsample_2d, upsample_conv_2d)

TAPS = [(1, 3, 3, 1), (1, 1), (1, 2, 1), (1, 4, 6, 4, 1), (2, 1, 3, 1, 1, 1)]


def upfirdn(x, k, up=1, down=1, pad=(0, 0)):
    """The definition, pixel by pixel (slow): upsample by zeros, pad, convolve with k, decimate."""
    b, c, h, w = x.shape
    u = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    u[:, :, ::up, ::up] = x
    u = F.pad(u, (pad[0], pad[1], pad[0], pad[1]))
    kh = k.shape[0]
    out = torch.empty(b, c, u.shape[2] - kh + 1, u.shape[3] - kh + 1, dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = (u[:, :, i:i + kh, j:j + kh] * k.flip(0, 1)).sum((-1, -2))
    return out[:, :, ::down, ::down]


@pytest.fixture
def x():
    return torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("taps", TAPS)
def test_fir_up_and_down_sampling(x, taps):
    k = fir_kernel_2d(taps).double()
    assert k.sum().item() == pytest.approx(1.0)
    p = k.shape[0] - 2
    up = upsample_2d(x, k)
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(up, upfirdn(x, 4 * k, up=2, pad=((p + 1) // 2 + 1, p // 2)))
    down = downsample_2d(x, k)
    assert down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(down, upfirdn(x, k, down=2, pad=((p + 1) // 2, p // 2)))


@pytest.mark.parametrize("taps", TAPS)
def test_fused_convolutions(x, taps):
    """upsample_conv = conv over the zero-upsampled image, then the FIR filter;
    conv_downsample = FIR filter, then a strided conv (StyleGAN2's fused ops)."""
    k = fir_kernel_2d(taps).double()
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p = k.shape[0] - 2 - 2
    zero_up = upfirdn(x, torch.ones(1, 1, dtype=torch.float64), up=2, pad=(2, 2))
    conv_up = F.conv2d(zero_up, w)[:, :, :-1, :-1]  # full convolution: 2H + 1 pixels
    want = upfirdn(conv_up, 4 * k, pad=((p + 1) // 2 + 1, p // 2 + 1))
    torch.testing.assert_close(upsample_conv_2d(x, w, k), want)
    p = k.shape[0] - 2 + 2
    want = F.conv2d(upfirdn(x, k, pad=((p + 1) // 2, p // 2)), w, stride=2)
    torch.testing.assert_close(conv_downsample_2d(x, w, k), want)


def test_constant_images_stay_constant():
    x = torch.full((1, 2, 8, 8), 3.0)
    k = fir_kernel_2d((1, 3, 3, 1))
    torch.testing.assert_close(upsample_2d(x, k)[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0))
    torch.testing.assert_close(downsample_2d(x, k)[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))


def test_fir_conv_module_and_errors():
    conv = FIRConv2d(3, 4, up=True)
    assert conv(torch.randn(1, 3, 8, 8)).shape == (1, 4, 16, 16)
    assert set(conv.state_dict()) == {"weight", "bias"}  # the filter is not a weight
    with pytest.raises(ValueError, match="exactly one of up / down"):
        FIRConv2d(3, 4)
    with pytest.raises(ValueError, match="non-zero sum"):
        fir_kernel_2d((1, -1))
