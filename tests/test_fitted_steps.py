"""`--mode fit_steps` and `sampling.time_schedule = "fitted"` end to end through `main.run` on a
tiny toy workdir: stored atomically in schedules/, reloaded by --mode sample and eval and
recorded in their settings, refused with one line (exit 2) when none is stored for the method
and NFE, when stale, or when the mode cannot use it."""
import json
import os

import numpy as np
import pytest

from tests.test_hostile import refused, run, tree

# (the toy's sampling.num_steps=4 yields to the budget: 0)
FIT = ["--config.sampling.method=dpm_solver", "--config.sampling.nfe=5",
       "--config.sampling.num_steps=0", "--config.fit_steps.num_samples=32",
       "--config.fit_steps.num_holdout=32", "--config.fit_steps.n_iters=3"]
USE = ["--config.sampling.method=dpm_solver", "--config.sampling.nfe=5",
       "--config.sampling.num_steps=0", "--config.sampling.time_schedule=fitted"]


@pytest.fixture
def fitted(tmp_path, capsys):
    """A trained toy workdir with dpm_solver's times learned at NFE 5."""
    workdir = tmp_path / "work"
    assert run(capsys, workdir, "train")[0] == 0
    status, lines = run(capsys, workdir, "fit_steps", *FIT)
    assert status == 0, lines
    return workdir


def stored(workdir):
    return json.loads((workdir / "schedules" / "dpm_solver_nfe5.json").read_text())


def sample_settings(workdir, name_part=""):
    folders = [p for p in (workdir / "samples").iterdir()
               if p.name.startswith("step_8_dpm_solver") and name_part in p.name]
    return [json.loads((p / "settings.json").read_text()) for p in folders]


def test_fit_is_stored_reloaded_and_recorded_by_sample_and_eval(fitted, capsys):
    record = stored(fitted)
    times = np.array(record["times"])
    assert record["method"] == "dpm_solver" and record["nfe"] == 5 and len(times) == 5
    assert times[0] == 1.0 and times[-1] == 1e-3 and np.all(np.diff(times) < 0)
    assert record["settings"]["num_samples"] == 32 and record["options"]["order"] == 2
    assert {"rms_default", "rms_learned", "model_digest", "fit_nfe"} <= set(record)
    assert run(capsys, fitted, "sample", *USE)[0] == 0
    assert run(capsys, fitted, "sample", *USE[:3])[0] == 0           # the default schedule
    settings = sample_settings(fitted)
    schedules = sorted(s["settings"]["options"]["schedule"] for s in settings)
    assert schedules[0].startswith("fitted:") and schedules[1] == "logsnr"
    assert all(s["nfe_total"] == 5 for s in settings)
    assert settings[0]["checkpoint"]["weights"] == record["model_digest"]
    status, _ = run(capsys, fitted, "eval", *USE, "--config.eval.enable_bpd=False",
                    "--config.eval.enable_sampling=True")
    assert status == 0
    metrics = json.loads((fitted / "eval" / "metrics.json").read_text())
    assert metrics["settings"]["sampling"]["options"]["schedule"] == schedules[0]


def test_refused_when_none_is_stored_for_that_method_and_nfe(fitted, capsys):
    line = refused(capsys, fitted, "sample", *USE, "--config.sampling.nfe=4",
                   match="no learned schedule")
    assert "nfe=4" in line and "fit_steps" in line
    refused(capsys, fitted, "sample", *USE, "--config.sampling.method=unipc",
            match="no learned schedule for method 'unipc'")
    refused(capsys, fitted, "sample", "--config.sampling.method=dpm_solver",
            "--config.sampling.time_schedule=fitted", match="config.sampling.nfe")


def test_refused_when_stale(fitted, capsys):
    path = fitted / "schedules" / "dpm_solver_nfe5.json"
    record = stored(fitted)
    record["model_digest"] = "0123456789abcdef"       # learned for another model
    path.write_text(json.dumps(record))
    refused(capsys, fitted, "sample", *USE, match="stale")
    refused(capsys, fitted, "eval", *USE, "--config.eval.enable_bpd=False",
            "--config.eval.enable_sampling=True", match="stale")
    assert not (fitted / "eval" / "metrics.json").exists()


def test_refused_when_the_method_options_differ(fitted, capsys):
    refused(capsys, fitted, "sample", *USE, "--config.sampling.order=3",
            match="learned with order=2")


@pytest.mark.parametrize("extra, match", [
    (["--config.sampling.method=pc", "--config.sampling.num_steps=0",
      "--config.sampling.nfe=5"], "no learnable time steps"),
    (["--config.sampling.method=dpm_solver"], "config.sampling.nfe"),
    (FIT[:3] + ["--config.sampling.time_schedule=fitted"], "does not apply to --mode fit_steps"),
    (FIT + ["--config.fit_steps.lr=0"], "config.fit_steps.lr"),
    (FIT + ["--config.fit_steps.n_iters=0"], "config.fit_steps.n_iters"),
])
def test_bad_fit_requests_are_refused_before_any_work(fitted, capsys, extra, match):
    refused(capsys, fitted, "fit_steps", *extra, match=match)


def test_a_link_at_the_schedule_file_is_replaced_and_its_target_kept(fitted, capsys, tmp_path):
    target = tmp_path / "precious.json"
    target.write_text("keep")
    path = fitted / "schedules" / "dpm_solver_nfe5.json"
    path.unlink()
    os.symlink(target, path)
    assert run(capsys, fitted, "fit_steps", *FIT)[0] == 0
    assert target.read_text() == "keep"
    assert not path.is_symlink() and stored(fitted)["nfe"] == 5


def test_a_schedules_folder_linking_out_is_refused(fitted, capsys, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    folder = fitted / "schedules"
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    os.symlink(outside, folder)
    before = tree(outside)
    refused(capsys, fitted, "fit_steps", *FIT, match="leads out of the workdir")
    assert tree(outside) == before


def test_a_stop_request_ends_the_fit_and_stores_nothing(fitted):
    from cli.config_source import config_from_stored
    from evaluation.fitted_steps import run_fit_steps
    from run.preemption import Preempted
    from run.stored_config import read_stored

    class Stop:
        requested = "SIGTERM"

        def should_stop(self, info=None):
            return True
    config = config_from_stored(read_stored(fitted / "config.json"), "config.json")
    config.sampling.method, config.sampling.nfe, config.sampling.num_steps = "ddim", 4, 0
    with pytest.raises(Preempted, match="nothing was stored"):
        run_fit_steps(config, fitted, stop=Stop())
    assert not (fitted / "schedules" / "ddim_nfe4.json").exists()


def test_sample_runs_on_exactly_the_stored_times(fitted, capsys):
    import torch

    from cli.config_source import config_from_stored
    from evaluation.sampling import generate_samples
    from run.loading import load_ema_model
    from run.stored_config import read_stored
    from samplers.config import ConfiguredSampler

    assert run(capsys, fitted, "sample", *USE)[0] == 0
    folder, = [p for p in (fitted / "samples").iterdir() if p.name.startswith("step_8_dpm")]
    drawn = np.load(folder / "samples.npz")["samples"]
    config = config_from_stored(read_stored(fitted / "config.json"), "config.json")
    model, sde, _ = load_ema_model(config, fitted, torch.device("cpu"))
    times = torch.tensor(stored(fitted)["times"], dtype=torch.float64)
    direct = generate_samples(ConfiguredSampler("dpm_solver", {"schedule": times}), model, sde,
                              (2,), 8, 8, 0)
    np.testing.assert_allclose(drawn, direct.numpy(), rtol=0, atol=1e-6)
