"""Fréchet distance of small images in a classifier trained here: it separates good samples
from bad ones, sits near its floor for real images, and its cached classifier is reused only
while its weights match their digest and it learned this data."""
import json
import logging

import pytest
import torch

from configs.vp_digits import get_config
from data import build_dataset
from evaluation import feature_fd


@pytest.fixture(scope="module")
def digits():
    config = get_config()
    return build_dataset(config.data, "train"), build_dataset(config.data, "test")


@pytest.fixture(autouse=True)
def short_training(monkeypatch):
    monkeypatch.setattr(feature_fd, "TRAIN_STEPS", 150)


def test_applies_below_inception_size():
    assert feature_fd.applies(True, 8) and feature_fd.applies(True, 28)
    assert not feature_fd.applies(True, 32) and not feature_fd.applies(False, 2)


@pytest.mark.slow
def test_real_images_near_the_floor_noise_far(tmp_path, digits):
    train, test = digits
    path = tmp_path / "clf.pth"
    held_out, record = feature_fd.fd_metrics(train.data[-200:], train, test, path)
    noise = (torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255)
    bad, _ = feature_fd.fd_metrics(noise.to(torch.uint8), train, test, path)
    assert record["task"] == "labels" and record["test_accuracy"] > 0.85
    assert record["num_floor"] == 200 and record["num_reference"] == len(test)
    assert held_out["fd_floor"] == bad["fd_floor"]
    assert held_out["fd"] < 4 * held_out["fd_floor"] and bad["fd"] > 10 * held_out["fd"], \
        (held_out, bad)
    json.dumps(record)   # goes into metrics.json as it is


@pytest.mark.slow
def test_training_is_deterministic_and_cached(tmp_path, digits, monkeypatch, caplog):
    train, test = digits
    first = feature_fd.load_or_train(tmp_path / "a.pth", train, test)
    second = feature_fd.load_or_train(tmp_path / "b.pth", train, test)
    assert first["digest"] == second["digest"]
    # Cached: read back without training.
    monkeypatch.setattr(feature_fd, "train_feature_net", lambda *a: pytest.fail("retrained"))
    assert feature_fd.load_or_train(tmp_path / "a.pth", train, test)["digest"] == first["digest"]


@pytest.mark.slow
def test_damaged_or_other_data_retrains(tmp_path, digits, caplog):
    train, test = digits
    path = tmp_path / "clf.pth"
    first = feature_fd.load_or_train(path, train, test)
    digest = first["digest"]
    cached = torch.load(path, weights_only=True)
    cached["weights"]["head.1.bias"] += 1.0        # weights that no longer match their digest
    torch.save(cached, path)
    with caplog.at_level(logging.WARNING):
        assert feature_fd.load_or_train(path, train, test)["digest"] == digest
    assert "does not match its digest" in caplog.text
    other = type(train)(**{**vars(train), "data": train.data.flip(-1)})
    assert feature_fd.load_or_train(path, other, test)["data_digest"] != first["data_digest"]


@pytest.mark.slow
def test_unlabeled_images_learn_rotations(tmp_path, digits):
    train, test = digits
    unlabeled = type(train)(**{**vars(train), "labels": None, "num_classes": 0})
    metrics, record = feature_fd.fd_metrics(test.data[:100], unlabeled, test, tmp_path / "r.pth")
    assert record["task"] == "rotation" and record["test_accuracy"] > 0.5   # chance: 0.25
    assert metrics["fd"] >= 0 and metrics["fd_floor"] >= 0


@pytest.mark.slow
def test_digits_eval_writes_fd_beside_its_floor(tmp_path, capsys):
    import main

    workdir = tmp_path / "run"
    common = ["main.py", "--config=configs/vp_digits.py", f"--workdir={workdir}",
              "--config.training.n_iters=2", "--config.training.snapshot_sampling=False",
              "--config.training.batch_size=8", "--config.model.nf=8",
              "--config.eval.bpd_num_examples=4", "--config.eval.num_samples=32",
              "--config.sampling.num_steps=3", "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"]
    assert main.run([*common, "--mode=train"]) == 0
    assert main.run([*common, "--mode=eval"]) == 0, capsys.readouterr().err
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert metrics["fd"] > metrics["fd_floor"] > 0 and metrics["num_samples"] == 32
    record = metrics["settings"]["fd"]
    assert record["classifier"] == "fd_classifier_DIGITS_8.pth" and record["num_floor"] == 32
    assert (workdir / "eval" / record["classifier"]).is_file()
