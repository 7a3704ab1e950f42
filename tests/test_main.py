"""main.py end to end: train → eval → sample on tiny configs, and sampler flags."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from absl import flags
from ml_collections import config_flags

import samplers
import sde_lib
from models.analytic import GaussianMixture
from tests.test_datasets import write_fake_cifar10

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--config.training.n_iters=6", "--config.training.snapshot_freq=3",
              "--config.training.snapshot_freq_for_preemption=2", "--config.training.log_freq=2",
              "--config.training.eval_freq=3", "--config.training.batch_size=8",
              "--config.training.num_snapshot_samples=4", "--config.sampling.num_steps=5",
              "--config.eval.batch_size=4", "--config.eval.bpd_num_examples=4",
              "--config.eval.num_samples=4", "--config.eval.atol=1e-3", "--config.eval.rtol=1e-3"]


def run_main(*args, check=True):
    result = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"main.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def _tiny_image_flags(root):
    return ["--config.data.dataset=CIFAR10", f"--config.data.root={root}",
            "--config.data.image_size=8", "--config.model.nf=8", "--config.model.ch_mult=(1, 2)",
            "--config.model.attn_resolutions=(4,)"]


@pytest.mark.slow
def test_train_eval_sample_on_fake_cifar10(tmp_path):
    """The whole job on a tiny CIFAR10 written in the real pickle format."""
    write_fake_cifar10(tmp_path / "data", num_per_batch=8)
    workdir = tmp_path / "run"
    common = ["--config", "configs/vp_digits.py", "--workdir", str(workdir), *TINY_TRAIN,
              *_tiny_image_flags(tmp_path / "data"), "--config.data.num_channels=3"]
    run_main(*common, "--mode", "train")
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["checkpoint_3.pth",
                                                                          "checkpoint_6.pth"]
    assert (workdir / "checkpoints-meta" / "checkpoint.pth").exists()
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert (workdir / "samples" / "iter_6" / "samples.png").exists()
    run_main(*common, "--mode", "eval")
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["num_examples"] == 4
    assert np.isfinite(metrics["bpd"]) and metrics["bpd"] > 0 and metrics["nfe_mean"] > 0
    run_main(*common, "--mode", "sample", "--config.sampling.method=ode",   # steps: none
             "--config.sampling.num_steps=0", "--config.sampling.rtol=1e-3",
             "--config.sampling.atol=1e-3")
    images = np.load(next((workdir / "samples").glob("step_6_ode_*/samples.npz")))["samples"]
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8


@pytest.mark.slow
def test_toy_train_resume_eval(tmp_path):
    workdir = tmp_path / "toy"
    common = ["--config", "configs/toy_gmm.py", "--workdir", str(workdir), *TINY_TRAIN]
    run_main(*common, "--mode", "train", "--config.training.n_iters=4")
    run_main(*common, "--mode", "train")  # resumes at step 4 and runs to 6
    state = torch.load(workdir / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    assert state["step"] == 6
    run_main(*common, "--mode", "eval", "--config.eval.divergence=exact")
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert {"step", "bpd", "bpd_sem", "nfe_mean", "num_examples", "nll", "exact_nll"} <= set(metrics)


@pytest.mark.slow
def test_missing_checkpoint_is_one_clear_line(tmp_path):
    result = run_main("--config", "configs/toy_gmm.py", "--workdir", str(tmp_path), "--mode", "eval",
                      check=False)
    assert result.returncode == 1
    assert "no checkpoint" in result.stderr and "Traceback" not in result.stderr


SAMPLER_FLAGS = [
    ["--config.sampling.method=pc", "--config.sampling.predictor=reverse_diffusion",
     "--config.sampling.corrector=langevin", "--config.sampling.snr=0.1", "--config.sampling.n_steps_each=2"],
    ["--config.sampling.method=pc", "--config.sampling.predictor=ancestral",
     "--config.sampling.corrector=ald", "--config.sampling.noise_removal=False"],
    ["--config.sampling.method=pc", "--config.sampling.predictor=euler_maruyama",
     "--config.sampling.probability_flow=True"],
    ["--config.sampling.method=ode", "--config.sampling.rtol=1e-4", "--config.sampling.atol=1e-4"],
]


@pytest.mark.parametrize("overrides", SAMPLER_FLAGS, ids=lambda f: "-".join(x.split("=")[1] for x in f))
def test_sampler_options_are_reachable_from_flags(overrides):
    argv = ["main.py", f"--config={ROOT / 'configs' / 'toy_gmm.py'}", "--config.sampling.num_steps=20",
            *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=flag_values, lock_config=True,
                                    sys_argv=argv)
    flag_values(argv)
    config = flag_values.config
    for flag in overrides:
        field, value = flag[len("--config.sampling."):].split("=")
        expected = value if isinstance(config.sampling[field], str) else ast.literal_eval(value)
        assert config.sampling[field] == expected
    sde = sde_lib.build_sde(config.sde)
    gm = GaussianMixture([1.0], [[0.5, -0.5]], [0.3])
    sampler = samplers.build_sampler(config.sampling)
    result = sampler(gm.score_fn(sde), sde, (16, 2), generator=torch.Generator().manual_seed(0))
    assert result.x.shape == (16, 2) and torch.isfinite(result.x).all() and result.nfe > 0


FAST_SAMPLER_FLAGS = [
    ["--config.sampling.method=ddim", "--config.sampling.eta=0.5", "--config.sampling.time_schedule=quadratic"],
    ["--config.sampling.method=heun", "--config.sampling.s_churn=1.0", "--config.sampling.rho=5.0"],
    ["--config.sampling.method=dpm_solver", "--config.sampling.order=3"],
    ["--config.sampling.method=adaptive_sde", "--config.sampling.rtol=0.05", "--config.sampling.atol=0.01"],
]


@pytest.mark.parametrize("overrides", FAST_SAMPLER_FLAGS, ids=lambda f: f[0].split("=")[1])
def test_fast_sampler_options_are_reachable_from_flags(overrides):
    test_sampler_options_are_reachable_from_flags(overrides)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ddpm_digits", "iddpm_digits"])
def test_ddpm_and_hybrid_training_report_the_bound(tmp_path, config):
    """L_simple (fixed variances) and L_hybrid (learned variances) train, resume, report the
    variational bound beside the ODE's bits/dim, and sample ancestrally with their variance."""
    workdir = tmp_path / config
    common = ["--config", f"configs/{config}.py", "--workdir", str(workdir), *TINY_TRAIN,
              "--config.sde.num_scales=50", "--config.eval.bpd_num_examples=3",
              "--config.model.nf=8", "--config.training.snapshot_sampling=False",
              "--config.eval.vlb_num_timesteps=0", "--config.training.timestep_sampling="
              + ("loss_second_moment" if config == "iddpm_digits" else "uniform")]
    run_main(*common, "--mode", "train", "--config.training.n_iters=4")
    run_main(*common, "--mode", "train")
    state = torch.load(workdir / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    if config == "iddpm_digits":   # the timestep sampler's history went through the resume
        assert int(state["loss"]["sampler"]["counts"].sum()) == 6 * 8
    run_main(*common, "--mode", "eval")
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert metrics["vlb_exact"] and metrics["vlb_num_examples"] == 3
    assert metrics["vlb_variance"] == ("learned" if config == "iddpm_digits" else "beta")
    assert np.isfinite(metrics["vlb_bpd"]) and np.isfinite(metrics["bpd"])
    run_main(*common, "--mode", "sample")
    images = np.load(next((workdir / "samples").glob("step_6_ancestral_*/samples.npz")))["samples"]
    assert images.shape == (4, 8, 8, 1)


@pytest.mark.parametrize("mode", ["fid_stats", "sample", "train"])
def test_out_of_memory_is_one_line_in_every_mode(mode):
    import main
    status, message = main._classify(MemoryError("cannot allocate 8 GiB"), mode)
    assert status == 1 and "\n" not in message and message.startswith("error: out of memory")
