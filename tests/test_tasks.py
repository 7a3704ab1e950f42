"""evaluation.tasks and class-conditional / guided `--mode sample`: masks, the known pixels,
the PF-ODE interpolation's end points, and the whole path through main.run on tiny models."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import main
import sde_lib
from configs.cond_digits import get_config as cond_digits_config
from data import build_dataset, build_transform
import samplers
from evaluation.modes import build_guidance, sample_settings, task_settings
from evaluation.sampling import Guidance
from evaluation.tasks import MASKS, make_mask, run_task
from run.builders import build_score_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config.training.n_iters=4", "--config.training.snapshot_freq=4",
        "--config.training.snapshot_freq_for_preemption=4", "--config.training.log_freq=2",
        "--config.training.eval_freq=4", "--config.training.batch_size=8",
        "--config.training.num_snapshot_samples=10", "--config.model.nf=8",
        "--config.sampling.num_steps=4", "--config.eval.batch_size=10",
        "--config.eval.num_samples=10"]


@pytest.mark.parametrize("kind", MASKS)
def test_masks_hide_part_of_each_image(kind):
    mask = make_mask(kind, (4, 1, 8, 8), torch.Generator().manual_seed(0))
    assert mask.shape == (4, 1, 8, 8) and set(mask.unique().tolist()) == {0.0, 1.0}
    if kind == "right_half":
        assert mask[..., :4].all() and not mask[..., 4:].any()


def test_sample_labels_cycle_or_repeat_the_class():
    assert Guidance(num_classes=10).labels(range(8, 13)).tolist() == [8, 9, 0, 1, 2]
    assert Guidance(num_classes=10, class_label=3).labels(range(0, 3)).tolist() == [3, 3, 3]
    assert Guidance(num_classes=0).labels(range(0, 3)) is None


def _tiny_model(config):
    config.model.nf = 8
    sde = sde_lib.build_sde(config.sde)
    torch.manual_seed(0)
    return build_score_model(config, sde).eval(), sde


@pytest.mark.parametrize("task", ["inpaint", "interpolate"])
def test_tasks_on_an_untrained_model(tmp_path, task):
    """Inpainting keeps the known pixels exactly; interpolation's end points are the test images
    themselves (the PF-ODE is invertible whatever the score, up to the solver's tolerance)."""
    config = cond_digits_config()
    model, sde = _tiny_model(config)
    config.sampling.task, config.sampling.num_steps = task, 4
    config.sampling.corrector = "langevin"
    config.sampling.rtol = config.sampling.atol = 1e-6
    config.eval.num_samples = 4
    transform, guidance = build_transform(config.data), build_guidance(config, model)
    with torch.no_grad():
        path = run_task(task_settings(config), model, sde, transform, tmp_path / "out", guidance)
    assert path.exists() and path.suffix == ".png"
    rows = np.load(tmp_path / "out" / f"{task}.npz")
    if task == "inpaint":
        original, result = rows["original"].astype(int), rows["result"].astype(int)
        assert (result[:, :, :4] == original[:, :, :4]).all()      # the known left half
        assert (result[:, :, 4:] != original[:, :, 4:]).any()
    else:
        first, second = rows["pair0"].astype(int), rows["pair1"].astype(int)
        assert first.shape == (8, 8, 8, 1)                             # 8 steps per pair
        test = build_dataset(config.data, "test").data[:4].permute(0, 2, 3, 1).numpy().astype(int)
        # uint8 rounding of an ODE round trip at tolerance 1e-6: at most one level off.
        assert np.abs(first[0] - test[0]).max() <= 1 and np.abs(first[-1] - test[1]).max() <= 1
        assert np.abs(second[0] - test[2]).max() <= 1


def test_task_settings_take_the_condition_methods_options():
    """The task's options are those of its condition method that the config sets, and the
    sample run's settings record the method and them."""
    config = cond_digits_config()
    config.sampling.task, config.sampling.num_steps = "inpaint", 7
    settings = task_settings(config)
    assert settings.condition_method == "replacement"
    assert settings.options == dict(predictor=config.sampling.predictor,
                                    corrector=config.sampling.corrector, snr=config.sampling.snr,
                                    n_steps=config.sampling.n_steps_each,
                                    probability_flow=config.sampling.probability_flow,
                                    eps=config.sampling.eps, num_steps=7,
                                    denoise=config.sampling.noise_removal)
    config.sampling.condition_method, config.sampling.num_particles = "smc", 5
    config.sampling.lookahead = "tweedie"
    settings = task_settings(config)
    assert settings.condition_method == "smc"
    assert settings.options == dict(predictor=config.sampling.predictor, num_particles=5,
                                    lookahead="tweedie", eps=config.sampling.eps, num_steps=7,
                                    denoise=config.sampling.noise_removal)
    record = sample_settings(config, samplers.build_sampler(config.sampling), 4)
    # The record resolves every option of the method (the config's over the defaults).
    assert record["condition"] == {"method": "smc", "options": {
        **samplers.METHOD_OPTIONS["smc"], **settings.options}}


@pytest.mark.parametrize("task,method", [("inpaint", "smc"), ("inpaint", "repaint"),
                                         ("inpaint", "dps"), ("superres", "replacement"),
                                         ("superres", "smc")])
def test_condition_methods_in_the_tasks_on_an_untrained_model(tmp_path, task, method):
    """Every condition method runs in the tasks; inpainting keeps the known pixels exactly
    (except DPS, which does not reach the observation); super-resolution shows the observed
    low-resolution images upsampled in its second row."""
    config = cond_digits_config()
    model, sde = _tiny_model(config)
    config.sampling.task, config.sampling.num_steps = task, 4
    config.sampling.condition_method, config.sampling.num_particles = method, 3
    config.sampling.jump_length = config.sampling.jump_n_sample = 2
    config.eval.num_samples = 2
    transform, guidance = build_transform(config.data), build_guidance(config, model)
    with torch.no_grad():
        path = run_task(task_settings(config), model, sde, transform, tmp_path / "out", guidance)
    assert path.exists()
    rows = np.load(tmp_path / "out" / f"{task}.npz")
    original, shown, result = (rows[key].astype(int) for key in ("original", "input", "result"))
    assert result.shape == original.shape == (2, 8, 8, 1)
    if task == "inpaint" and method != "dps":
        assert (result[:, :, :4] == original[:, :, :4]).all()
    if task == "superres":
        assert (shown[:, ::2, ::2] == shown[:, 1::2, 1::2]).all()     # 2×2 blocks


def _run(args):
    assert main.run(["main.py", *args]) == 0


@pytest.mark.slow
def test_class_conditional_training_and_guided_sampling(tmp_path):
    """cond_digits trains with label dropout, samples one class per grid column with and without
    classifier-free guidance, inpaints, and an unconditional model samples with a classifier."""
    work = tmp_path / "cond"
    common = ["--config", str(ROOT / "configs" / "cond_digits.py"), "--workdir", str(work), *TINY]
    _run([*common, "--mode", "train"])
    assert (work / "samples" / "iter_4" / "samples.png").exists()
    for scale in ("1.0", "2.5"):
        _run([*common, "--mode", "sample", f"--config.sampling.guidance_scale={scale}"])
    images = np.load(next(work.glob("samples/step_4_pc_cfg2.5_*/samples.npz")))["samples"]
    assert images.shape == (10, 8, 8, 1)
    _run([*common, "--mode", "sample", "--config.sampling.task=inpaint",
          "--config.sampling.mask=center", "--config.eval.num_samples=3"])
    assert next(work.glob("samples/step_4_pc_inpaint_center_cfg1_*/inpaint.png")).exists()
    _run([*common, "--mode", "sample", "--config.sampling.task=superres",
          "--config.sampling.condition_method=smc", "--config.sampling.num_particles=2",
          "--config.eval.num_samples=2"])
    folder = next(work.glob("samples/step_4_pc_superres_smc_cfg1_*"))
    record = json.loads((folder / "settings.json").read_text())["settings"]
    assert record["condition"]["method"] == "smc" and record["superres_factor"] == 2
    assert record["condition"]["options"]["num_particles"] == 2
    assert (folder / "superres.png").exists()

    plain = tmp_path / "plain"
    common = ["--config", str(ROOT / "configs" / "vp_digits.py"), "--workdir", str(plain), *TINY]
    _run([*common, "--mode", "train", "--config.training.snapshot_sampling=False"])
    _run([*common, "--mode", "train_classifier", "--config.classifier.n_iters=4",
          "--config.classifier.nf=8", "--config.classifier.eval_freq=4",
          "--config.classifier.eval_num_examples=16"])
    _run([*common, "--mode", "sample", "--config.sampling.classifier_scale=2.0",
          "--config.sampling.class_label=7"])
    assert next(plain.glob("samples/step_4_pc_clf2_*/samples.png")).exists()
    assert json.loads((plain / "classifier" / "metrics.json").read_text())["step"] == 4


def test_classifier_guidance_without_a_classifier_is_one_clear_line(tmp_path, capsys):
    work = tmp_path / "run"
    common = ["--config", str(ROOT / "configs" / "vp_digits.py"), "--workdir", str(work), *TINY]
    _run([*common, "--mode", "train", "--config.training.n_iters=1",
          "--config.training.snapshot_sampling=False"])
    capsys.readouterr()
    status = main.run(["main.py", *common, "--mode", "sample",
                       "--config.sampling.classifier_scale=1.0"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "train_classifier" in err
