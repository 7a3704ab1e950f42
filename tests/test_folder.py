"""data.folder: your own images from a folder or zip, with classes, splits, sizes and channels."""
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from data.folder import (FolderError, build_index, folder_num_classes, load_image_folder,
                         split_index)
from data.images import BadImageError, ImageLimits
from data.lazy import FolderImages


def write_pngs(root, classes=("cats", "dogs"), per_class=10, size=(12, 10), seed=0,
               split_folders=False):
    """A folder of random RGB PNGs, one sub-folder per class (under train/ and test/ if asked);
    returns the images by path, as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in (("train", "test") if split_folders else ("",)):
        for name in classes:
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
                written[folder / f"{i}.png"] = pixels
    return written


def test_classes_split_and_sizes(tmp_path):
    write_pngs(tmp_path / "imgs")
    assert folder_num_classes(tmp_path / "imgs") == 2
    train, train_labels = load_image_folder(tmp_path / "imgs", "train", image_size=8,
                                            num_channels=3, seed=1, test_fraction=0.25)
    test, test_labels = load_image_folder(tmp_path / "imgs", "test", image_size=8,
                                          num_channels=3, seed=1, test_fraction=0.25)
    assert train.shape == (15, 3, 8, 8) and test.shape == (5, 3, 8, 8)
    assert train.dtype == test.dtype == torch.uint8
    assert sorted(train_labels.tolist() + test_labels.tolist()) == [0] * 10 + [1] * 10
    again, _ = load_image_folder(tmp_path / "imgs", "test", image_size=8, num_channels=3, seed=1,
                                 test_fraction=0.25)
    assert (again == test).all()                            # the drawn split is the seed's


def test_centre_crop_keeps_the_middle_and_channels_convert(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    pixels = np.zeros((8, 16, 3), np.uint8)                 # 16 wide, 8 high
    pixels[:, 4:12] = 255                                   # a white middle 8×8
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels).save(folder / "b.png")
    images, labels = load_image_folder(folder, "train", image_size=8, num_channels=1,
                                       test_fraction=0.5)
    assert labels is None and images.shape == (1, 1, 8, 8) and images.min() == 255
    images, _ = load_image_folder(folder, "train", image_size=8, num_channels=4,
                                  test_fraction=0.5)
    assert images.shape == (1, 4, 8, 8)


def test_a_zip_with_given_splits(tmp_path):
    written = write_pngs(tmp_path / "imgs", per_class=3, split_folders=True, size=(8, 8))
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in written:
            z.write(path, path.relative_to(tmp_path / "imgs").as_posix())
    assert folder_num_classes(archive) == 2
    test, labels = load_image_folder(archive, "test", image_size=8, num_channels=3)
    assert test.shape == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    first = written[tmp_path / "imgs" / "test" / "cats" / "0.png"]
    assert (test[0].permute(1, 2, 0).numpy() == first).all()   # 8×8 already: unchanged


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match="holds no"):
        load_image_folder(tmp_path / "empty", "train", image_size=8, num_channels=3)
    with pytest.raises(FolderError, match="neither a folder nor a zip"):
        folder_num_classes(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "y.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=r"bad/[xy]\.png is not a readable image \(not a PNG"):
        load_image_folder(tmp_path / "bad", "train", image_size=8, num_channels=3)


def png_header(width, height):
    """A PNG whose header declares width × height RGB pixels (and a tiny, short IDAT)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_a_bomb_and_an_oversized_member_are_refused_by_their_headers(tmp_path):
    written = write_pngs(tmp_path / "imgs", classes=("a",), per_class=4, size=(8, 8))
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in written:
            z.write(path, path.relative_to(tmp_path / "imgs").as_posix())
        z.writestr("a/bomb.png", png_header(40_000, 40_000))    # 1.6 G pixels in ~100 bytes
    index = build_index(archive, ImageLimits(max_pixels=1 << 20))
    assert list(index.bad) == ["a/bomb.png"]
    with pytest.raises(BadImageError, match=r"imgs\.zip:a/bomb\.png: 40000×40000 pixels exceed "
                                            r"the limit of 1048576 \(config\.data\.max_image_"):
        split_index(index, "train", test_fraction=0.2)
    part = split_index(index, "train", test_fraction=0.2, skip_bad_files=True)
    assert "a/bomb.png" not in part.names and len(part.names) == 3
    index = build_index(archive, ImageLimits(max_bytes=100))
    assert len(index.bad) == 5 and "exceed the limit of 100" in next(iter(index.bad.values()))


def test_a_truncated_file_is_named_or_replaced_and_counted(tmp_path):
    written = write_pngs(tmp_path / "imgs", classes=("a",), per_class=5, size=(16, 16))
    broken = tmp_path / "imgs" / "a" / "2.png"
    broken.write_bytes(broken.read_bytes()[:200])      # header intact, pixels cut
    index = build_index(tmp_path / "imgs")
    part = next(p for p in (split_index(index, s, test_fraction=0.4) for s in ("train", "test"))
                if "a/2.png" in p.names[:-1])
    images = FolderImages(part.reader, part.rows, 8, 3)
    with pytest.raises(BadImageError, match=r"a/2\.png is not a readable image .*"
                                            r"skip_bad_files=True"):
        images[:]
    tolerant = FolderImages(part.reader, part.rows, 8, 3, skip_bad_files=True)
    batch = tolerant[:]
    position = part.names.index("a/2.png")
    assert tolerant.skipped == {"a/2.png"} and len(batch) == len(part.names)
    assert torch.equal(batch[position], batch[position + 1])   # the next readable file


def test_the_index_is_cached_by_listing_and_rebuilt_when_it_changes(tmp_path, monkeypatch):
    import data.folder as folder

    write_pngs(tmp_path / "imgs", per_class=3)
    cache = tmp_path / "work" / "data-index"
    first = build_index(tmp_path / "imgs", cache_dir=cache)
    assert len(list(cache.iterdir())) == 1

    def no_headers(*args):
        raise AssertionError("the cached index was not used")
    monkeypatch.setattr(folder, "image_size", no_headers)
    monkeypatch.setattr(folder, "_BUILT", {})        # as a new process would
    again = build_index(tmp_path / "imgs", cache_dir=cache)
    assert again.names == first.names and (again.sizes == first.sizes).all()
    monkeypatch.undo()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "imgs" / "cats" / "new.png")
    changed = build_index(tmp_path / "imgs", cache_dir=cache)
    assert "cats/new.png" in changed.names and len(list(cache.iterdir())) == 1


def test_a_header_beyond_the_first_bytes_is_still_found(tmp_path, monkeypatch):
    import data.folder as folder

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "imgs" / "a.jpg",
                                                         exif=b"Exif\0\0" + bytes(3000))
    monkeypatch.setattr(folder, "HEADER_BYTES", 512)    # the SOF lies past the first 512 bytes
    index = build_index(tmp_path / "imgs")
    assert not index.bad and index.sizes.tolist() == [[10, 6]]
