"""Safe loading (weights_only + numpy allowlist) and this project's score-model checkpoint."""
import argparse
import io
import pickle

import numpy as np
import pytest
import torch

import sde_lib
from models import ExponentialMovingAverage, MLP, build_model
from models.checkpoint import FORMAT, load_score_model, safe_load, save_score_model


def _numpy_scalar_checkpoint(path, numpy_module=None):
    """A file like score_sde_pytorch's: a numpy.float64 inside an optimizer-like dict.

    `numpy_module` rewrites the pickled global's module (e.g. the numpy 1.x name).
    """
    state = {"optimizer": {"param_groups": [{"lr": np.float64(2e-4)}]}, "w": torch.ones(2)}
    if numpy_module is None:
        torch.save(state, path)
        return
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    raw = buffer.getvalue()
    assert raw.count(b"numpy._core.multiarray\nscalar") == 1
    path.write_bytes(raw.replace(b"numpy._core.multiarray\nscalar", numpy_module + b"\nscalar"))


@pytest.mark.parametrize("numpy_module", [None, b"numpy.core.multiarray"])
def test_numpy_scalars_load_with_the_allowlist_only(tmp_path, numpy_module):
    path = tmp_path / "reference_like.pth"
    _numpy_scalar_checkpoint(path, numpy_module)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # plain weights_only refuses numpy scalars
    state = safe_load(path)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert torch.equal(state["w"], torch.ones(2))


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*unsafe\.pth"):
        safe_load(path)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(100)}, good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated\.pth"):
        safe_load(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        safe_load(tmp_path / "missing.pth")


def test_save_and_load_score_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model_cfg = {"name": "mlp", "dim": 2, "width": 16, "nf": 8, "init_scale": 1.0, "ema_rate": 0.99}
    net = build_model(model_cfg)
    ema = ExponentialMovingAverage(net.parameters(), 0.99)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # raw weights now differ from the EMA's
    config = {"model": model_cfg, "sde": {"name": "vesde", "sigma_max": 10.0, "num_scales": 100},
              "training": {"continuous": True, "parametrization": "score"}}
    path = tmp_path / "ckpt.pth"
    save_score_model(path, net, config, ema_state=ema.state_dict(), step=7, meta={"note": "test"})
    assert torch.load(path, weights_only=True)["format"] == FORMAT
    x, t = torch.randn(3, 2), torch.tensor([0.1, 0.5, 0.9])
    raw = load_score_model(path)
    assert isinstance(raw.net, MLP) and isinstance(raw.sde, sde_lib.VESDE)
    assert raw.sde.sigma_max == 10.0
    assert torch.equal(raw(x, t), net.eval()(x, raw.labels(t)))
    averaged = load_score_model(path, use_ema=True)
    ema.copy_to(net.parameters())
    assert torch.equal(averaged(x, t), net(x, averaged.labels(t)))


def test_load_score_model_rejects_other_files(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {}}, path)
    with pytest.raises(ValueError, match="not a score-sde/score-model/v1 checkpoint"):
        load_score_model(path)
