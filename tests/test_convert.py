"""score_sde_pytorch checkpoints: parity with the reference's own outputs (shared fixtures).

The fixtures hold three checkpoints in the reference's format, their configs, inputs and the
reference's outputs (README in the fixture folder). Tolerances: the README observes up to
~1e-6 of the output scale between runs of the reference itself with 1 vs 2 threads or
without oneDNN; a wrong set of weights shows up at ~0.5 of the output scale.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_score_model
from models.convert import from_score_sde
from cli.convert import main
from cli.convert import main as main_cli
from models.ncsnpp import NCSNpp

FIXTURES = Path(os.environ.get(
    "SCORE_SDE_REFERENCE_FIXTURES",
    Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "score_sde_reference"))
CASES = ["ddpmpp_vp_continuous", "ncsnpp_ve_continuous", "ddpm_vp_discrete"]
RAW_RTOL = 4e-6  # of the output's max |value|


def _fixture(case):
    if not (FIXTURES / f"{case}.pth").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"reference fixtures missing under {FIXTURES} (required on CI)")
        pytest.skip(f"reference fixtures not found under {FIXTURES}")
    io = torch.load(FIXTURES / f"{case}_io.pt", weights_only=True)
    return FIXTURES / f"{case}.pth", FIXTURES / f"{case}_config.json", io


def _assert_raw_close(got, want):
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    assert err <= RAW_RTOL * scale, f"max |diff| {err:.3g} > {RAW_RTOL} × {scale:.3g}"


_MODELS = {}


def _model(case, weights):
    if (case, weights) not in _MODELS:
        ckpt, config, _ = _fixture(case)
        _MODELS[case, weights] = from_score_sde(ckpt, config, use_ema=weights == "ema")
    return _MODELS[case, weights]


@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("case", CASES)
def test_raw_network_matches_reference(case, weights):
    _, _, io = _fixture(case)
    model = _model(case, weights)
    assert not model.net.training
    with torch.no_grad():
        _assert_raw_close(model.net(io["x"], io["labels"]), io[f"raw_out_{weights}"])


@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("case", CASES)
def test_scores_match_reference(case, weights):
    _, _, io = _fixture(case)
    model = _model(case, weights)
    t = io["t"]
    labels = model.labels(t)
    torch.testing.assert_close(labels.to(io["labels"].dtype), io["labels"], rtol=1e-6, atol=0)
    with torch.no_grad():
        score = model(io["x"], t)
    want = io[f"score_{weights}"]
    if "score_std" in io:
        # The reference's float32 std loses digits to cancellation as t -> 0 (README): compare
        # score·std, and our std with the exact one separately.
        std = model.std(t, labels)
        _assert_raw_close(score * std[:, None, None, None],
                          want * io["score_std"][:, None, None, None])
        torch.testing.assert_close(std.double(), _exact_std(model, t), rtol=1e-6, atol=0)
        accurate = torch.isclose(std, io["score_std"], rtol=1e-6, atol=0)
        assert accurate[1:].all()  # away from t = 0 the two agree, and so do the scores
        _assert_raw_close(score[accurate], want[accurate])
    else:
        _assert_raw_close(score, want)


def _exact_std(model, t):
    """The std in float64: continuous VP kernel or the float64 DDPM chain."""
    sde, t = model.sde, t.double()
    if model.continuous:
        log_mean = -0.25 * t ** 2 * (sde.beta_1 - sde.beta_0) - 0.5 * t * sde.beta_0
        return torch.sqrt(1 - torch.exp(2 * log_mean))
    betas = torch.linspace(sde.beta_0 / sde.N, sde.beta_1 / sde.N, sde.N, dtype=torch.float64)
    return torch.sqrt(1 - torch.cumprod(1 - betas, 0))[(t * (sde.N - 1)).long()]


def test_ddpm_fractional_times():
    """Non-integer labels reach the DDPM network as floats; the std index is truncated."""
    _, _, io = _fixture("ddpm_vp_discrete")
    model = _model("ddpm_vp_discrete", "ema")
    t = io["t_frac"]
    labels = model.labels(t)
    torch.testing.assert_close(labels, io["labels_frac"])
    assert torch.equal(labels.long(), io["labels_frac_long"])
    with torch.no_grad():
        _assert_raw_close(model.net(io["x"], labels), io["raw_out_ema_frac"])
        score = model(io["x"], t)
    std = model.std(t, labels)
    torch.testing.assert_close(std, io["score_std_frac"], rtol=1e-4, atol=0)
    _assert_raw_close(score * std[:, None, None, None],
                      io["score_ema_frac"] * io["score_std_frac"][:, None, None, None])


def test_fixture_parameter_counts():
    for case in CASES:
        _, _, io = _fixture(case)
        net = _model(case, "ema").net
        assert sum(p.numel() for p in net.parameters()) == io["param_count"]
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        assert trainable == io["trainable_param_count"]


@pytest.mark.parametrize("weights", ["ema", "model"])
def test_cli_writes_a_checkpoint_that_reloads(tmp_path, weights, capsys):
    ckpt, config, io = _fixture("ncsnpp_ve_continuous")
    dst = tmp_path / "converted" / "checkpoint.pth"
    main([str(ckpt), str(dst), "--reference-config", str(config), "--weights", weights])
    assert "wrote" in capsys.readouterr().out
    state = torch.load(dst, weights_only=True)  # plain tensors and values only
    assert state["step"] == 3 and state["meta"]["weights"] == weights
    assert state["ema"]["num_updates"] == 3 and state["ema"]["decay"] == pytest.approx(0.999)
    model = load_score_model(dst)
    assert isinstance(model.net, NCSNpp) and model.parametrization == "score" and model.continuous
    with torch.no_grad():
        _assert_raw_close(model.net(io["x"], io["labels"]), io[f"raw_out_{weights}"])
        ema_model = load_score_model(dst, use_ema=True)  # the EMA slot holds the chosen weights
        assert torch.equal(ema_model.net(io["x"], io["labels"]), model.net(io["x"], io["labels"]))


@pytest.mark.slow
def test_cli_as_a_module(tmp_path):
    ckpt, config, io = _fixture("ddpm_vp_discrete")
    dst = tmp_path / "ddpm.pth"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "models.convert", str(ckpt), str(dst),
                    "--reference-config", str(config)], check=True, cwd=root)
    model = load_score_model(dst)
    with torch.no_grad():
        _assert_raw_close(model.net(io["x"], io["labels"]), io["raw_out_ema"])


def test_mismatched_config_is_rejected(tmp_path):
    ckpt, _, _ = _fixture("ddpm_vp_discrete")
    _, other_config, _ = _fixture("ddpmpp_vp_continuous")
    with pytest.raises(ValueError, match="ddpm_vp_discrete.pth"):
        from_score_sde(ckpt, other_config)


def test_config_mapping_errors():
    _, config, _ = _fixture("ddpmpp_vp_continuous")
    import json
    ref = json.loads(Path(config).read_text())
    bad_model = dict(ref, model=dict(ref["model"], name="ncsnv2"))
    message = r"Unsupported reference model 'ncsnv2'; expected one of \['ncsnpp', 'ddpm'\]"
    with pytest.raises(ValueError, match=message):
        from_score_sde(FIXTURES / "ddpmpp_vp_continuous.pth", bad_model)
    bad_sigmas = dict(ref, model=dict(ref["model"], sigma_max=10.0))
    with pytest.raises(ValueError, match="sigmas do not match"):
        from_score_sde(FIXTURES / "ddpmpp_vp_continuous.pth", bad_sigmas)
    with pytest.raises(ValueError, match="cannot read reference config"):
        from_score_sde(FIXTURES / "ddpmpp_vp_continuous.pth", FIXTURES / "missing.json")


def test_convert_writes_a_workdir_that_eval_and_sample_use_as_is(tmp_path, capsys):
    """Without --config, the converted workdir's config.json rebuilds the reference's model,
    SDE and sampler; its scores match the reference's recorded outputs."""
    import json
    import main
    from run.loading import load_ema_model
    from cli.config_source import config_from_stored
    ckpt, config, io = _fixture("ddpmpp_vp_continuous")
    workdir = tmp_path / "vp"
    assert main_cli([str(ckpt), str(workdir), "--reference-config", str(config)]) == 0
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["sde"]["name"] == "vpsde" and stored["data"]["dataset"] == "CIFAR10"
    model, _, step = load_ema_model(config_from_stored(stored), workdir, "cpu")
    with torch.no_grad():
        _assert_raw_close(model.net(io["x"], io["labels"]), io["raw_out_ema"])
    capsys.readouterr()
    status = main.run(["main.py", f"--workdir={workdir}", "--mode=sample",
                       "--config.sampling.method=dpm_solver", "--config.sampling.num_steps=3",
                       "--config.eval.num_samples=2", "--config.eval.batch_size=2"])
    assert status == 0, capsys.readouterr().err
    assert list(workdir.glob("samples/step_*_dpm_solver_*/samples.png"))


def _convert_cli(*args):
    """`python -m models.convert ...` from the repository: (exit status, stdout, stderr lines)."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "models.convert", *map(str, args)], cwd=root,
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr.strip().splitlines()


def _digests(folder):
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".lock"}


@pytest.mark.slow
def test_the_converter_never_mixes_with_a_workdir_that_holds_a_model(tmp_path):
    """A workdir holding a config or checkpoints is refused (one line, exit 2, unchanged);
    --force clears what the project wrote and converts as into an empty workdir; a held lock
    and a link out of the workdir are refused as for every other entry point."""
    ckpt, config, _ = _fixture("ddpm_vp_discrete")
    other, other_config, _ = _fixture("ddpmpp_vp_continuous")
    workdir = tmp_path / "w"
    assert _convert_cli(ckpt, workdir, "--reference-config", config)[0] == 0
    (workdir / "checkpoints").mkdir()
    (workdir / "checkpoints" / "checkpoint_4.pth").write_bytes(b"a trained snapshot")
    (workdir / "notes.txt").write_text("the user's")
    before = _digests(workdir)
    status, _, err = _convert_cli(other, workdir, "--reference-config", other_config)
    assert status == 2 and len(err) == 1 and "already holds a model" in err[0], err
    assert _digests(workdir) == before
    from run.lock import WorkdirLock
    with WorkdirLock(workdir, "train"):
        status, _, err = _convert_cli(other, workdir, "--reference-config", other_config,
                                      "--force")
        assert status == 2 and len(err) == 1 and "in use by a train run" in err[0], err
    assert _digests(workdir) == before
    status, out, err = _convert_cli(other, workdir, "--reference-config", other_config, "--force")
    assert status == 0 and err == [] and "removed config.json, checkpoints" in out, err
    assert sorted(_digests(workdir)) == ["checkpoints-meta/checkpoint.pth", "config.json",
                                         "notes.txt"]
    assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "ncsnpp"


@pytest.mark.slow
def test_the_converter_never_writes_through_a_link(tmp_path):
    ckpt, config, _ = _fixture("ddpm_vp_discrete")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    (outside / "x.v1.tmp").write_text("a draft")
    before = _digests(outside)
    for name, match in ((".lock", ".lock is a symbolic link"),
                        ("checkpoints-meta", "leads out of the workdir")):
        workdir = tmp_path / f"w_{name.strip('.')}"
        workdir.mkdir()
        (workdir / name).symlink_to(outside / "keep.txt" if name == ".lock" else outside)
        status, _, err = _convert_cli(ckpt, workdir, "--reference-config", config, "--force")
        assert status == 2 and len(err) == 1 and match in err[0], err
    workdir = tmp_path / "w_files"     # links at the files it writes: replaced, or cleared
    (workdir / "checkpoints-meta").mkdir(parents=True)
    (workdir / "config.json").symlink_to(outside / "keep.txt")
    (workdir / "checkpoints-meta" / "checkpoint.pth.ab.tmp").symlink_to(outside / "x.v1.tmp")
    status, _, err = _convert_cli(ckpt, workdir, "--reference-config", config)
    assert status == 2 and "already holds a model (config.json)" in err[0], err
    assert _convert_cli(ckpt, workdir, "--reference-config", config, "--force")[0] == 0
    assert not (workdir / "config.json").is_symlink()
    assert _digests(outside) == before
