"""One image file → uint8 `[C, size, size]`, with limits on what a file may inflate to.

An image is converted to `channels` (1: L, 2: LA, 3: RGB, 4: RGBA), its shorter side resized to
`size` (antialiased bicubic) and centre-cropped. `ImageLimits` bounds the bytes read for one file
(a zip member's declared and actual size) and the pixels it may decode to, so that a
decompression bomb is refused by its header before it is decoded.
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from data.errors import DataInputError

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class BadImageError(DataInputError):
    """An image file that cannot be decoded or exceeds a limit (the message names it)."""


@dataclass(frozen=True)
class ImageLimits:
    """At most `max_pixels` pixels (width × height) and `max_bytes` bytes per image file."""
    max_pixels: int = 1 << 26      # 8192 × 8192
    max_bytes: int = 1 << 28       # 256 MiB

    def check_bytes(self, num_bytes: int, name: str) -> None:
        if num_bytes > self.max_bytes:
            raise BadImageError(f"{name}: {num_bytes} bytes exceed the limit of {self.max_bytes} "
                                f"(config.data.max_file_bytes)")


def _open(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    """The image of `data`, its header read and its size checked (nothing decoded yet)."""
    limits.check_bytes(len(data), name)
    pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # checked below instead
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImageError(f"{name} is not a readable image (not a PNG or JPEG file)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as err:
        raise BadImageError(f"{name} is not a readable image ({err})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit
    width, height = image.size
    if width * height > limits.max_pixels:
        raise BadImageError(f"{name}: {width}×{height} pixels exceed the limit of "
                            f"{limits.max_pixels} (config.data.max_image_pixels)")
    return image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(data: bytes, name: str, limits: ImageLimits) -> Tuple[int, int]:
    """(width, height) of an image file's bytes from its header; raises `BadImageError`.
    A PNG's come from its IHDR chunk directly (PNG spec. 11.2.2), anything else through PIL."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        if width * height > limits.max_pixels:
            raise BadImageError(f"{name}: {width}×{height} pixels exceed the limit of "
                                f"{limits.max_pixels} (config.data.max_image_pixels)")
        return width, height
    return _open(data, name, limits).size


def decode(data: bytes, name: str, size: int, channels: int,
           limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """An image file's bytes → uint8 `[channels, size, size]` (converted, resized, cropped)."""
    image = _open(data, name, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = image.convert(MODES[channels])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as err:
        raise BadImageError(f"{name} is not a readable image ({err})") from None
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                         Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array.reshape(size, size, channels).transpose(2, 0, 1)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `[B, C, H, W]` → `[B, C, size, size]` (antialiased bilinear; unchanged if sized)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)
