"""Bad input: every case exits non-zero with one line naming the field, writing nothing.

The cases run `main.run` in-process (the same code path as `python main.py`).
"""
from pathlib import Path

import pytest
import torch

import main
from tests.test_datasets import write_fake_cifar10

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "configs" / "toy_gmm.py")
DIGITS = str(ROOT / "configs" / "vp_digits.py")
CLF = "--mode=train_classifier"
DDPM = str(ROOT / "configs" / "ddpm_digits.py")
IDDPM = str(ROOT / "configs" / "iddpm_digits.py")
COND = str(ROOT / "configs" / "cond_digits.py")
EDM = str(ROOT / "configs" / "edm_digits.py")

# (config file, extra flags, expected exit status, words the message must contain)
CASES = [
    (TOY, ["--config.sde.name=foo"], 2, ["config.sde", "vesde"]),
    (TOY, ["--config.sde.name=vesde", "--config.sde.sigma_min=60.0"], 2, ["sigma_min", "sigma_max"]),
    (TOY, ["--config.sde.beta_min=30.0"], 2, ["beta_min", "beta_max"]),
    (TOY, ["--config.sde.num_scales=0"], 2, ["config.sde.num_scales", ">= 1"]),
    (TOY, ["--config.sde.schedule=quadratic"], 2, ["schedule", "cosine"]),
    (TOY, ["--config.model.name=unet"], 2, ["model", "ncsnpp"]),
    (TOY, ["--config.model.width=0"], 2, ["config.model", "width"]),
    (TOY, ["--config.data.dataset=MNIST"], 2, ["config.data.dataset", "DIGITS"]),
    (TOY, ["--config.optim.lr=-0.001"], 2, ["config.optim.lr", "> 0"]),
    (TOY, ["--config.optim.optimizer=SGD"], 2, ["config.optim.optimizer", "Adam"]),
    (TOY, ["--config.optim.warmup=-1"], 2, ["config.optim.warmup"]),
    (TOY, ["--config.optim.beta1=1.5"], 2, ["config.optim.beta1"]),
    (TOY, ["--config.training.batch_size=0"], 2, ["config.training.batch_size", ">= 1"]),
    (TOY, ["--config.training.batch_size=2.5"], 2, ["batch_size"]),
    (TOY, ["--config.training.n_iters=-5"], 2, ["config.training.n_iters"]),
    (TOY, ["--config.training.snapshot_freq=0"], 2, ["config.training.snapshot_freq"]),
    (TOY, ["--config.training.nan_policy=ignore"], 2, ["nan_policy", "skip"]),
    (TOY, ["--config.training.importance_sampling=True"], 2, ["likelihood_weighting"]),
    (TOY, ["--config.model.ema_rate=1.5"], 2, ["ema_rate"]),
    (TOY, ["--config.sampling.method=foo"], 2, ["config.sampling", "pc"]),
    (TOY, ["--config.sampling.predictor=foo"], 2, ["predictor", "euler_maruyama"]),
    (TOY, ["--config.sampling.corrector=foo"], 2, ["corrector", "langevin"]),
    (TOY, ["--config.sampling.eps=0.0"], 2, ["eps"]),
    # Every sampler option is checked up front against its declaration (samplers.options).
    (TOY, ["--config.sampling.method=dpm_solver", "--config.sampling.order=7"], 2,
     ["config.sampling.order=7", "[1, 2, 3]"]),
    (TOY, ["--config.sampling.snr=-0.16"], 2, ["config.sampling.snr", "(0, 1]"]),
    (TOY, ["--config.sampling.snr=1e30"], 2, ["config.sampling.snr", "(0, 1]"]),
    (TOY, ["--config.sampling.method=ode", "--config.sampling.rtol=0.0"], 2,
     ["config.sampling.rtol", "> 0"]),
    (TOY, ["--config.sampling.method=ddim", "--config.sampling.rho=-7.0"], 2,
     ["config.sampling.rho", "> 0"]),
    (TOY, ["--config.sampling.method=heun", "--config.sampling.s_churn=-1.0"], 2,
     ["config.sampling.s_churn", ">= 0"]),
    (TOY, ["--config.sampling.n_steps_each=-1"], 2, ["config.sampling.n_steps_each", ">= 1"]),
    (TOY, ["--config.sampling.method=adaptive_sde", "--config.sampling.atol=-1.0"], 2,
     ["config.sampling.atol", "> 0"]),
    (TOY, ["--config.sampling.abstol=-1.0"], 2, ["abstol"]),   # tolerances are rtol / atol
    (TOY, ["--config.sampling.method=adaptive_sde", "--config.sampling.safety=0.0"], 2,
     ["config.sampling.safety", "(0, 1]"]),
    (TOY, ["--config.sampling.method=pc", "--config.sampling.rtol=0.1"], 2,
     ["config.sampling.rtol", "does not apply", "'ode'"]),
    (TOY, ["--config.sampling.method=dpm_solver", "--config.sampling.snr=0.2"], 2,
     ["config.sampling.snr", "does not apply", "'pc'"]),
    (TOY, ["--config.sampling.method=dpm_solver", "--config.sampling.corrector=langevin"], 2,
     ["config.sampling.corrector", "does not apply"]),
    (TOY, ["--config.sampling.eps=1.5"], 2, ["eps"]),
    (TOY, ["--config.eval.divergence=foo"], 2, ["config.eval.divergence", "rademacher"]),
    (TOY, ["--config.eval.bpd_dataset=val"], 2, ["config.eval.bpd_dataset", "test"]),
    (TOY, ["--config.eval.batch_size=0"], 2, ["config.eval.batch_size"]),
    (TOY, ["--config.eval.likelihood_eps=0.0"], 2, ["likelihood_eps"]),
    (TOY, ["--config.nonexistent.field=1"], 2, ["nonexistent"]),
    (TOY, ["--mode=fit"], 2, ["mode"]),
    (str(ROOT / "configs" / "missing.py"), [], 2, ["missing.py"]),
    # Learned variances, hybrid loss, the bound.
    (DDPM, ["--config.training.loss=l1"], 2, ["config.training.loss", "hybrid"]),
    (DDPM, ["--config.training.loss=hybrid"], 2, ["learn_variance", "hybrid"]),
    (IDDPM, ["--config.training.continuous=True"], 2, ["continuous=False", "vpsde"]),
    (IDDPM, ["--config.sde.name=vesde"], 2, ["learn_variance", "VP"]),
    (IDDPM, ["--config.training.timestep_sampling=fancy"], 2, ["timestep_sampling",
                                                               "loss_second_moment"]),
    (DDPM, ["--config.sampling.variance=large"], 2, ["config.sampling.variance", "posterior"]),
    (DDPM, ["--config.sampling.variance=learned"], 2, ["learned", "learn_variance=True"]),
    (DDPM, ["--config.eval.vlb_num_timesteps=1000"], 2, ["vlb_num_timesteps", "999"]),
    (TOY, ["--config.sde.name=vesde", "--config.eval.enable_vlb=True"], 2, ["enable_vlb",
                                                                             "vpsde"]),
    # EDM's SDE, parametrisation and loss.
    (EDM, ["--config.training.continuous=False"], 2, ["config.sde.name='edmsde'", "continuous"]),
    (DIGITS, ["--config.training.loss=edm", "--config.training.continuous=False"], 2,
     ["config.training.loss='edm'", "continuous=True"]),
    (DIGITS, ["--config.training.parametrization=edm", "--config.training.continuous=False"], 2,
     ["config.training.parametrization='edm'", "continuous=True"]),
    (EDM, ["--config.training.parametrization=v"], 2, ["config.training.parametrization",
                                                       "edm", "noise"]),
    (EDM, ["--config.training.sigma_data=0.0"], 2, ["config.training.sigma_data", "> 0"]),
    (EDM, ["--config.training.p_std=-1.0"], 2, ["config.training.p_std", "> 0"]),
    (EDM, ["--config.training.likelihood_weighting=True"], 2, ["likelihood_weighting", "'edm'"]),
    (EDM, ["--config.model.scale_by_sigma=True"], 2, ["config.model", "scale_by_sigma=False"]),
    (EDM, ["--config.sampling.eps=80.0"], 2, ["config.sampling.eps", "T=80.0"]),
    (EDM, ["--config.eval.likelihood_eps=100.0"], 2, ["likelihood_eps", "T=80.0"]),
    (EDM, ["--config.sde.sigma_min=90.0"], 2, ["sigma_min", "sigma_max"]),
    # Class labels, guidance, sample tasks.
    (COND, ["--config.sampling.class_label=10"], 2, ["class_label", "0 … 9"]),
    (COND, ["--config.training.label_dropout=1.5"], 2, ["label_dropout", "[0, 1]"]),
    (COND, ["--config.sampling.task=outpaint"], 2, ["config.sampling.task", "inpaint"]),
    (COND, ["--config.sampling.task=inpaint", "--config.sampling.mask=left"], 2,
     ["config.sampling.mask", "right_half"]),
    (COND, ["--config.sampling.task=colorize"], 2, ["colorize", "num_channels=3"]),
    (TOY, ["--config.sampling.task=inpaint"], 2, ["test images", "gaussian_mixture"]),
    (COND, ["--config.sampling.task=inpaint", "--config.sampling.condition_method=foo"], 2,
     ["config.sampling.condition_method", "smc"]),
    (COND, ["--config.sampling.task=inpaint", "--config.sampling.condition_method=smc",
            "--config.sampling.num_particles=0"], 2, ["num_particles", ">= 1"]),
    (COND, ["--config.sampling.task=colorize", "--config.data.num_channels=3",
            "--config.sampling.condition_method=smc", "--config.sampling.lookahead=future"], 2,
     ["lookahead", "tweedie"]),
    (COND, ["--config.sampling.task=superres", "--config.sampling.superres_factor=3"], 2,
     ["superres_factor", "image_size"]),
    (COND, ["--config.sampling.task=superres", "--config.sampling.condition_method=dps",
            "--config.sampling.dps_scale=-1.0"], 2, ["config.sampling.dps_scale", "> 0"]),
    (COND, ["--config.sampling.task=inpaint", "--config.sampling.condition_method=repaint",
            "--config.sampling.jump_length=0"], 2, ["jump_length", ">= 1"]),
    (COND, ["--config.sampling.condition_method=smc"], 2, ["condition_method", "inpaint"]),
    (COND, ["--config.sampling.num_particles=4"], 2, ["num_particles", "does not apply"]),
    (COND, ["--config.sampling.task=inpaint", "--config.sampling.condition_method=smc",
            "--config.sampling.dps_scale=1.0"], 2, ["dps_scale", "condition_method='smc'"]),
    (COND, ["--config.sampling.classifier_scale=-1.0"], 2, ["classifier_scale", ">= 0"]),
    (DIGITS, ["--config.sampling.class_label=3"], 2, ["class_label", "num_classes"]),
    (DIGITS, ["--config.data.image_size=7"], 2, ["config.model", "image_size"]),
    (DIGITS, ["--config.data.image_size=6"], 2, ["config.model", "attn_resolutions"]),
    (DIGITS, ["--config.data.num_channels=2"], 2, ["config.data.num_channels", "3"]),
    (DIGITS, ["--config.data.dataset=CIFAR10", "--config.data.root=/nonexistent/data",
              "--config.data.num_channels=3"], 2, ["CIFAR-10", "/nonexistent/data", "download"]),
    # Precision, accumulation, compile.
    (TOY, ["--config.training.precision=fp8"], 2, ["config.training.precision", "bf16"]),
    (TOY, ["--config.sampling.precision=half"], 2, ["config.sampling.precision", "fp16"]),
    (TOY, ["--config.training.grad_accum_steps=0"], 2, ["config.training.grad_accum_steps"]),
    (TOY, ["--config.training.grad_accum_steps=5"], 2, ["grad_accum_steps=5", "batch_size"]),
    (IDDPM, ["--config.training.grad_accum_steps=2",
             "--config.training.timestep_sampling=loss_second_moment"], 2,
     ["grad_accum_steps", "uniform"]),
    (TOY, ["--config.training.compile=maybe"], 2, ["config.training.compile"]),
    (TOY, ["--config.training.channels_last=yes"], 2, ["channels_last", "True or False"]),
    (TOY, ["--config.sampling.compile=maybe"], 2, ["config.sampling.compile", "True or False"]),
    # --mode train_classifier: the classifier section and a labelled data set.
    (TOY, [CLF, "--config.data.dataset=swiss_roll"], 2,
     ["config.data.dataset", "no class labels", "gaussian_mixture", "moons", "DIGITS"]),
    (TOY, [CLF, "--config.classifier.lr=0.0"], 2, ["config.classifier.lr", "> 0"]),
    (TOY, [CLF, "--config.classifier.eps=0.0"], 2, ["config.classifier.eps", "(0, T=1"]),
    (TOY, [CLF, "--config.classifier.eps=1.5"], 2, ["config.classifier.eps"]),
    (TOY, [CLF, "--config.classifier.eval_t=(0.0, 0.5)"], 2, ["config.classifier.eval_t"]),
    (TOY, [CLF, "--config.classifier.batch_size=0"], 2, ["config.classifier.batch_size", ">= 1"]),
    (TOY, [CLF, "--config.classifier.n_iters=-1"], 2, ["config.classifier.n_iters", ">= 0"]),
    (TOY, [CLF, "--config.classifier.width=0"], 2, ["config.classifier.width"]),
    (TOY, [CLF, "--config.classifier.eval_freq=0"], 2, ["config.classifier.eval_freq"]),
    (TOY, [CLF, "--config.classifier.dropout=1.0"], 2, ["config.classifier.dropout", "[0, 1)"]),
    (TOY, [CLF, "--config.classifier.nonlinearity=tanh"], 2,
     ["config.classifier.nonlinearity", "swish"]),
    (DIGITS, [CLF, "--config.classifier.attn_resolutions=(3,)"], 2,
     ["config.classifier", "attn_resolutions", "[8, 4, 2]"]),
    (DIGITS, [CLF, "--config.classifier.ch_mult=(1, 2, 2, 2, 2)"], 2,
     ["config.classifier", "image_size=8", "16"]),
]


def _run(capsys, config, extra, workdir):
    args = ["main.py", f"--config={config}", *extra]
    if workdir is not None:
        args.append(f"--workdir={workdir}")
    status = main.run(args)
    err = capsys.readouterr().err.strip()
    return status, err


def _listing(path: Path):
    """The workdir's files, but its lock file (which every run takes)."""
    if not path.exists():
        return None
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.name != ".lock")


@pytest.mark.parametrize("config, extra, status, words", CASES,
                         ids=[" ".join(c[1]) or Path(c[0]).name for c in CASES])
def test_bad_config(capsys, tmp_path, config, extra, status, words):
    workdir = tmp_path / "run"
    got_status, err = _run(capsys, config, extra, workdir)
    assert got_status == status, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not workdir.exists()


def test_missing_workdir_flag(capsys):
    status, err = _run(capsys, TOY, [], None)
    assert status == 2 and "workdir" in err


def test_unwritable_workdir(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    status, err = _run(capsys, TOY, [], blocker / "run")
    assert status == 2 and "--workdir" in err and "writable" in err


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_corrupt_checkpoint_for_eval(capsys, tmp_path, damage):
    workdir = tmp_path / "run"
    meta = workdir / "checkpoints-meta" / "checkpoint.pth"
    meta.parent.mkdir(parents=True)
    if damage == "truncate":
        torch.save({"model": {"w": torch.randn(1000)}}, meta)
        meta.write_bytes(meta.read_bytes()[:300])
    elif damage == "garbage":
        meta.write_bytes(b"\x00" * 64)
    else:
        import os
        import pickle

        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))
        torch.save({"model": Payload()}, meta, pickle_module=pickle)
    before = _listing(workdir)
    status, err = _run(capsys, TOY, ["--mode=eval"], workdir)
    assert status == 2 and "checkpoint.pth" in err and len(err.splitlines()) == 1, err
    assert "none of the 1 checkpoints" in err
    assert _listing(workdir) == before and not (tmp_path / "pwned").exists()


def test_wrong_format_dataset_file(capsys, tmp_path):
    folder = write_fake_cifar10(tmp_path / "data")
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    workdir = tmp_path / "run"
    status, err = _run(capsys, DIGITS, ["--config.data.dataset=CIFAR10", f"--config.data.root={tmp_path / 'data'}",
                                        "--config.data.num_channels=3"], workdir)
    assert status == 1 and "data_batch_3" in err and len(err.splitlines()) == 1, err
    assert _listing(workdir) == ["config.json"]   # the run started: it remembers its config


def test_classifier_section_is_checked_only_for_its_mode(tmp_path):
    """A score-model run does not depend on the classifier section (nor on labels)."""
    from cli.validate import validate
    argv = ["main.py", f"--config={TOY}", "--config.classifier.lr=-1.0", "--workdir=x"]
    flag_values = main._define_flags(argv)
    flag_values(argv)
    validate(flag_values.config, "train", tmp_path)
    with pytest.raises(ValueError, match="config.classifier.lr"):
        validate(flag_values.config, "train_classifier", tmp_path)


def test_class_conditional_model_needs_labeled_data(tmp_path):
    from configs.toy_gmm import get_config
    from cli.validate import ConfigError, validate

    config = get_config()
    config.model.num_classes = 2
    config.data.dataset = "swiss_roll"
    with pytest.raises(ConfigError, match="num_classes=2 needs a data set with class labels"):
        validate(config, "train", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed where CUDA is")
@pytest.mark.parametrize("field", ["training", "sampling"])
def test_fp16_needs_a_gpu(capsys, tmp_path, field):
    code, err = _run(capsys, TOY, [f"--config.{field}.precision=fp16"], tmp_path / "w")
    assert code == 2 and f"config.{field}.precision='fp16' needs a CUDA GPU" in err
    assert len(err.strip().splitlines()) == 1
