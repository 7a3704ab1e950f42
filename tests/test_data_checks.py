"""Your own data, end to end through `main.run`: bad data is one line naming the file or field
with exit 2 before any training step (nothing written outside the workdir); streamed data
trains as in memory and resumes bit-identically."""
import hashlib
import re
import zipfile

import numpy as np
import pytest
import torch

import main
from data import folder
from tests.test_cli import TINY_IMAGES
from tests.test_folder import png_header, write_pngs

PROGRESS_BAR = re.compile(r"^\w+:\s+\d+%\|")
TINY_ARRAYS = ["--config=configs/npz.py", "--config.model.width=16",
               "--config.training.n_iters=2", "--config.training.batch_size=8",
               "--config.training.num_snapshot_samples=4", "--config.sampling.num_steps=4",
               "--config.eval.bpd_num_examples=0", "--config.classifier.n_iters=2",
               "--config.classifier.width=8"]


def run(capsys, *args):
    capsys.readouterr()
    status = main.run(["main.py", *args])
    return status, [line for line in capsys.readouterr().err.splitlines()
                    if line.strip() and not PROGRESS_BAR.match(line)]


def outside(tmp_path, workdir):
    """Digest of every file below tmp_path but the workdir's."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*")
            if p.is_file() and workdir not in p.parents}


def refused(capsys, tmp_path, *args, match):
    workdir = tmp_path / "work"
    before = outside(tmp_path, workdir)
    status, lines = run(capsys, *args, f"--workdir={workdir}")
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(match, lines[0]), lines[0]
    assert outside(tmp_path, workdir) == before
    assert not list(workdir.glob("checkpoints*/*"))      # no step was taken
    return lines[0]


def test_more_class_folders_than_classes_is_refused(capsys, tmp_path):
    write_pngs(tmp_path / "pngs", classes=("a", "b", "c"), per_class=4)
    refused(capsys, tmp_path, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
            "--config.model.num_classes=2", "--mode=train",
            match=r"pngs' holds 3 class folders but config\.model\.num_classes=2")


def test_labels_beyond_the_model_classes_are_refused(capsys, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=images, y=np.arange(40) % 4)
    refused(capsys, tmp_path, *TINY_IMAGES, "--config.data.dataset=npz",
            f"--config.data.path={tmp_path / 'a.npz'}", "--config.model.num_classes=3",
            "--mode=train",
            match=r"labels of 'npz' reach 3 but config\.model\.num_classes=3 allows 0 … 2 "
                  r"\(label 3 is the null label\)")


@pytest.mark.parametrize("mode", ["train", "train_classifier"])
def test_negative_labels_are_refused(capsys, tmp_path, mode):
    np.savez(tmp_path / "a.npz", x=np.zeros((40, 2)), y=np.arange(40) % 4 - 1)
    refused(capsys, tmp_path, *TINY_ARRAYS, f"--config.data.path={tmp_path / 'a.npz'}",
            f"--mode={mode}", match=r"labels in .*a\.npz must be non-negative integers")


def test_fewer_labels_than_examples_are_named(capsys, tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((100, 2)), y=np.zeros(90, np.int64))
    refused(capsys, tmp_path, *TINY_ARRAYS, f"--config.data.path={tmp_path / 'a.npz'}",
            "--mode=train", match=r"a\.npz: y holds labels of shape \(90,\) for the 100 "
                                  r"examples of x")


def test_train_and_test_of_different_shapes_are_named(capsys, tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((40, 2)), x_test=np.zeros((10, 3)))
    refused(capsys, tmp_path, *TINY_ARRAYS, f"--config.data.path={tmp_path / 'a.npz'}",
            "--mode=train", match=r"x_train holds float64 \(40, 2\) but x_test float64 \(10, 3\)")


@pytest.mark.parametrize("flag, match", [
    ("--config.data.num_workers=-2", r"config\.data\.num_workers must be .*-1"),
    ("--config.data.max_image_pixels=0", r"config\.data\.max_image_pixels must be"),
    ("--config.data.in_memory=False", r"config\.data\.in_memory=False streams only "
                                      r"\['image_folder', 'npy'\]; config\.data\.dataset='npz' "
                                      r"is always held"),
])
def test_how_data_is_read_is_checked(capsys, tmp_path, flag, match):
    np.savez(tmp_path / "a.npz", x=np.zeros((40, 2)))
    refused(capsys, tmp_path, *TINY_ARRAYS, f"--config.data.path={tmp_path / 'a.npz'}", flag,
            "--mode=train", match=match)


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_image_that_fails_to_decode_is_named(capsys, tmp_path, in_memory):
    write_pngs(tmp_path / "pngs", classes=("a",), per_class=12, size=(16, 16))
    for i in range(12):           # every file: whichever split and batch, one is met
        path = tmp_path / "pngs" / "a" / f"{i}.png"
        path.write_bytes(path.read_bytes()[:300])
    refused(capsys, tmp_path, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
            f"--config.data.in_memory={in_memory}", "--config.data.num_workers=1",
            "--mode=train", match=r"pngs/a/\d+\.png is not a readable image \(image file is "
                                  r"truncated.*skip_bad_files=True")


def test_a_bomb_in_a_zip_is_refused_by_its_header(capsys, tmp_path):
    written = write_pngs(tmp_path / "pngs", classes=("a",), per_class=12)
    with zipfile.ZipFile(tmp_path / "pngs.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in written:
            archive.write(path, path.relative_to(tmp_path / "pngs").as_posix())
        for i in range(3):
            archive.writestr(f"a/bomb{i}.png", png_header(50_000, 50_000))
    refused(capsys, tmp_path, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs.zip'}",
            "--mode=train", match=r"pngs\.zip:a/bomb\d\.png: 50000×50000 pixels exceed the "
                                  r"limit of 67108864 \(config\.data\.max_image_pixels\)")


@pytest.mark.parametrize("in_memory", [True, False])
def test_bad_files_are_skipped_when_asked_and_counted(capsys, caplog, tmp_path, in_memory):
    write_pngs(tmp_path / "pngs", classes=("a",), per_class=16, size=(8, 8))
    (tmp_path / "pngs" / "a" / "text.png").write_text("not an image")      # a bad header
    cut = tmp_path / "pngs" / "a" / "3.png"
    cut.write_bytes(cut.read_bytes()[:100])                                 # bad pixels
    status, lines = run(capsys, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
                        "--config.data.skip_bad_files=True", f"--workdir={tmp_path / 'w'}",
                        f"--config.data.in_memory={in_memory}", "--config.data.num_workers=0",
                        "--config.data.test_fraction=0.01", "--mode=train")
    assert status == 0, lines
    log = caplog.text
    assert "skipped 1 unreadable image files of the train split" in log
    assert re.search(r"skipping .*a/3\.png is not a readable image", log)


def _checkpoint(workdir):
    return torch.load(workdir / "checkpoints-meta" / "checkpoint.pth", weights_only=False)


def _assert_same_state(a, b):
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_streamed_training_equals_in_memory_and_resumes_bit_identically(capsys, tmp_path):
    written = write_pngs(tmp_path / "pngs", per_class=10, size=(12, 10))
    with zipfile.ZipFile(tmp_path / "pngs.zip", "w") as archive:
        for path in written:
            archive.write(path, path.relative_to(tmp_path / "pngs").as_posix())
    common = [*TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs.zip'}",
              "--config.model.num_classes=2", "--config.training.n_iters=6",
              "--config.training.snapshot_freq=100", "--config.training.snapshot_sampling=False",
              "--config.data.uniform_dequantization=True", "--mode=train"]
    held, streamed, resumed = tmp_path / "held", tmp_path / "streamed", tmp_path / "resumed"
    assert run(capsys, *common, "--config.data.in_memory=True", f"--workdir={held}")[0] == 0
    assert run(capsys, *common, "--config.data.in_memory=False", "--config.data.num_workers=2",
               f"--workdir={streamed}")[0] == 0
    _assert_same_state(_checkpoint(held), _checkpoint(streamed))
    # 18 training images, batches of 8: step 3 lies in the middle of the second epoch.
    assert run(capsys, *common, "--config.data.in_memory=False", "--config.training.n_iters=3",
               f"--workdir={resumed}")[0] == 0
    assert _checkpoint(resumed)["data_order"] == {"step": 3, "epoch": 1, "batch": 1, "seed": 42,
                                                  "num_examples": 18, "batch_size": 8}
    assert run(capsys, *common, "--config.data.in_memory=False", f"--workdir={resumed}")[0] == 0
    _assert_same_state(_checkpoint(streamed), _checkpoint(resumed))
    assert list((resumed / "data-index").glob("image_folder-*.json"))


def test_memory_mapped_arrays_train_as_the_same_arrays_in_memory(capsys, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 2)).astype(np.float32), rng.integers(0, 3, 64)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.save(tmp_path / "b.npy", x)
    common = [*TINY_ARRAYS, "--config.training.n_iters=3", "--mode=train"]
    held, mapped = tmp_path / "held", tmp_path / "mapped"
    assert run(capsys, *common, f"--config.data.path={tmp_path / 'a.npz'}",
               f"--workdir={held}")[0] == 0
    assert run(capsys, *common, "--config.data.dataset=npy", "--config.data.in_memory=False",
               "--config.data.num_workers=1", f"--config.data.path={tmp_path / 'b.npy'}",
               f"--workdir={mapped}")[0] == 0
    _assert_same_state(_checkpoint(held), _checkpoint(mapped))


def test_a_built_in_set_with_more_classes_than_the_model_is_refused(capsys, tmp_path):
    refused(capsys, tmp_path, "--config=configs/cond_digits.py", "--config.model.num_classes=5",
            "--mode=train", match=r"labels of 'DIGITS' reach 9 but config\.model\.num_classes=5 "
                                  r"allows 0 … 4 \(label 5 is the null label\)")


def test_links_at_the_data_index_are_never_followed(capsys, tmp_path):
    """The index cache is a workdir output folder: a link leading out of it is refused before
    any work, and a link at an index file is replaced, its target intact."""
    write_pngs(tmp_path / "pngs")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keep").mkdir(parents=True)
    (elsewhere / "keep.json").write_text('{"key": "mine"}')
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data-index").symlink_to(elsewhere / "keep")
    args = [*TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
            "--config.data.in_memory=False", "--mode=train"]
    refused(capsys, tmp_path, *args, match="data-index.*leads out of the workdir")
    (workdir / "data-index").unlink()
    assert run(capsys, *args, f"--workdir={workdir}")[0] == 0
    index_files = list((workdir / "data-index").glob("*.json"))
    assert index_files
    before = outside(tmp_path, workdir)
    for path in index_files:
        path.unlink()
        path.symlink_to(elsewhere / "keep.json")
    folder._BUILT.clear()                      # as a new process: the index is read again
    assert run(capsys, *args, f"--workdir={workdir}", "--config.training.n_iters=6")[0] == 0
    assert outside(tmp_path, workdir) == before
    assert all(path.is_file() and not path.is_symlink() for path in index_files)
