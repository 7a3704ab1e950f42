"""The network the samplers call (`evaluation.sampling.sampling_model`: autocast and compile),
and mixed precision end to end through `main.run`."""
import json

import pytest
import torch

import main
import models.score_model as score_model
from configs.toy_gmm import get_config
from evaluation.sampling import sampling_model
from run.builders import build_score_model, build_sde
from run.checkpoint import load_checkpoint
from tests.test_hostile import TOY


def toy_model():
    config = get_config()
    config.model.width = 32
    torch.manual_seed(0)
    model = build_score_model(config, build_sde(config), torch.device("cpu")).eval()
    for p in model.parameters():          # away from the zero initialisation of the last layer
        p.data.add_(0.1 * torch.randn_like(p))
    return model


def test_bf16_view_leaves_the_model_and_dtypes_alone():
    """bf16 keeps 8 bits of mantissa: each product's relative error is at most 2^-8, so the
    score agrees with float32 to a few per cent of its scale; it comes back as float32."""
    model = toy_model()
    x, t = torch.randn(64, 2), torch.rand(64) * 0.9 + 0.05
    with torch.no_grad():
        exact = model(x, t)
        view = sampling_model(model, "bf16")
        approx = view(x, t)
    assert model.autocast_dtype is None and view.autocast_dtype is torch.bfloat16
    assert approx.dtype == torch.float32
    assert not torch.equal(approx, exact), "autocast did not reach the network"
    scale = exact.abs().max()
    assert (approx - exact).abs().max() < 0.05 * scale
    assert sampling_model(model).autocast_dtype is None


def test_compiled_view_gives_the_same_scores(monkeypatch):
    monkeypatch.setattr(score_model, "COMPILE_BACKEND", "eager")
    model = toy_model()
    x, t = torch.randn(16, 2), torch.rand(16)
    with torch.no_grad():
        torch.testing.assert_close(sampling_model(model, compile=True)(x, t), model(x, t))
    names = list(model.state_dict())
    view = sampling_model(model, compile=True)
    assert list(model.state_dict()) == names and all(n.startswith("net.") for n in names)
    assert {p.data_ptr() for p in view.parameters()} == {p.data_ptr() for p in model.parameters()}


def test_mixed_precision_end_to_end(capsys, tmp_path):
    """Train in bf16 with two micro-batches, sample in bf16: float32 checkpoints, the
    precision recorded with the samples, a folder apart from float32's."""
    work = tmp_path / "work"
    assert main.run(["main.py", *TOY, f"--workdir={work}", "--mode=train",
                     "--config.training.precision=bf16",
                     "--config.training.grad_accum_steps=2"]) == 0
    checkpoint = load_checkpoint(work / "checkpoints" / "checkpoint_8.pth")
    assert all(v.dtype == torch.float32 for v in checkpoint["model"].values()
               if v.is_floating_point())
    folders = {}
    for precision in ("fp32", "bf16"):
        capsys.readouterr()
        assert main.run(["main.py", f"--workdir={work}", "--mode=sample",
                         f"--config.sampling.precision={precision}"]) == 0
        folders[precision] = {p.parent for p in work.glob("samples/step_8_*/settings.json")}
    new, = folders["bf16"] - folders["fp32"]
    record = json.loads((new / "settings.json").read_text())
    assert record["settings"]["precision"] == "bf16" and record["settings"]["compile"] is False


@pytest.mark.parametrize("flag", ["--config.training.precision=bf16",
                                  "--config.training.grad_accum_steps=2"])
def test_precision_and_accumulation_may_change_on_resume(capsys, tmp_path, flag):
    """Neither defines the model: a run resumed with another value continues the same one."""
    work = tmp_path / "work"
    assert main.run(["main.py", *TOY, f"--workdir={work}", "--mode=train",
                     "--config.training.n_iters=4"]) == 0
    assert main.run(["main.py", *TOY, f"--workdir={work}", "--mode=train", flag]) == 0
    assert (work / "checkpoints" / "checkpoint_8.pth").exists()
