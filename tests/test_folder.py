"""data.folder: your own images from a folder or zip, with classes, splits, sizes and channels."""
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from data.folder import FolderError, folder_num_classes, load_image_folder


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
    with pytest.raises(FolderError, match="not a readable image"):
        load_image_folder(tmp_path / "bad", "train", image_size=8, num_channels=3)
