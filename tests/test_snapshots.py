"""Training's snapshot grids: a fast sampler by default (`training.snapshot_sampler`), checked
by the sampling section's own checks before any work."""
import logging
from pathlib import Path

import pytest

import main
import samplers
from configs.toy_gmm import get_config as toy_config
from evaluation.modes import snapshot_sampler
from evaluation.snapshots import snapshot_sampling
from run.builders import build_score_model, build_sde

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "configs" / "toy_gmm.py")


def test_default_is_dpm_solver_at_its_own_steps():
    config = toy_config()
    config.sampling.num_steps = 7          # the main sampler's steps do not leak in
    sampler = samplers.build_sampler(snapshot_sampling(config))
    assert sampler.method == "dpm_solver" and "num_steps" not in sampler.options
    config.training.snapshot_num_steps = 5
    assert samplers.build_sampler(snapshot_sampling(config)).options["num_steps"] == 5
    config.training.snapshot_sampler, config.training.snapshot_num_steps = "sampling", 0
    assert snapshot_sampling(config) is config.sampling


def test_snapshot_draws_with_21_evaluations(tmp_path, caplog):
    config = toy_config()
    config.training.num_snapshot_samples, config.eval.batch_size = 6, 4
    model = build_score_model(config, build_sde(config))
    with caplog.at_level(logging.INFO):
        picture = snapshot_sampler(config, tmp_path)(model.eval(), 3)
    assert picture.ndim == 3 and (tmp_path / "samples" / "iter_3" / "samples.png").is_file()
    # Two batches of DPM-Solver++: 20 steps and the final Tweedie step each.
    assert "6 samples by dpm_solver, 42 score evaluations" in caplog.text


def test_snapshot_fd_in_tensorboard(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from configs.vp_digits import get_config as digits_config
    from evaluation import feature_fd

    monkeypatch.setattr(feature_fd, "TRAIN_STEPS", 30)
    config = digits_config()
    config.model.nf, config.training.num_snapshot_samples = 8, 16
    config.training.snapshot_fd, config.training.snapshot_num_steps = True, 2
    model = build_score_model(config, build_sde(config))
    snapshot_sampler(config, tmp_path)(model.eval(), 5)
    assert (tmp_path / "eval" / "fd_classifier_DIGITS_8.pth").is_file()
    scalars = {}
    for events in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        scalars.update({tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]})
    assert [e.step for e in scalars["snapshot/fd"]] == [5] and "snapshot/fd_floor" in scalars
    assert scalars["snapshot/fd"][0].value > scalars["snapshot/fd_floor"][0].value


@pytest.mark.parametrize("extra, words", [
    (["--config.training.snapshot_fd=True"], ["config.training.snapshot_fd", "below 32x32"]),
    (["--config.training.snapshot_sampler=fast"], ["config.training.snapshot_sampler",
                                                   "dpm_solver", "sampling"]),
    (["--config.training.snapshot_num_steps=-1"], ["config.training.snapshot_num_steps"]),
    (["--config.training.snapshot_sampler=sampling", "--config.training.snapshot_num_steps=5"],
     ["config.training.snapshot_num_steps", "does not apply"]),
])
def test_bad_snapshot_sampler_exits_2_before_any_work(capsys, tmp_path, extra, words):
    workdir = tmp_path / "run"
    status = main.run(["main.py", f"--config={TOY}", f"--workdir={workdir}", *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert not workdir.exists()
