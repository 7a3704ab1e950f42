"""The command line as a researcher meets it: help, show_config, typos, a workdir that describes
itself (eval and sample without --config), sample provenance, refused options, TensorBoard
images and eval scalars, and training on a folder of PNGs."""
import json
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import main
from cli.threads import default_threads, set_threads
from tests.test_folder import write_pngs

TINY_IMAGES = ["--config=configs/image_folder.py", "--config.data.image_size=8",
               "--config.model.nf=8", "--config.model.ch_mult=(1, 2)",
               "--config.model.attn_resolutions=(4,)", "--config.model.num_res_blocks=1",
               "--config.training.n_iters=4", "--config.training.snapshot_freq=4",
               "--config.training.batch_size=8", "--config.training.log_freq=2",
               "--config.training.num_snapshot_samples=4", "--config.sampling.num_steps=4",
               "--config.eval.batch_size=4", "--config.eval.bpd_num_examples=4",
               "--config.eval.num_samples=4", "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2"]
PROGRESS_BAR = re.compile(r"^\w+:\s+\d+%\|")


def run(capsys, *args):
    capsys.readouterr()
    status = main.run(["main.py", *args])
    out, err = capsys.readouterr()
    return status, out, [line for line in err.splitlines()
                         if line.strip() and not PROGRESS_BAR.match(line)]


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull", "--helpshort"])
def test_help_lists_modes_flags_overrides_and_where_fields_are(capsys, flag):
    status, out, err = run(capsys, flag)
    assert status == 0 and not err
    for words in ("train_classifier", "show_config", "fid_stats", "--workdir", "--threads",
                  "--config.<section>.<field>=value", "configs/vp_digits.py",
                  "exit status"):
        assert words in out, words


def test_show_config_gives_values_and_descriptions(capsys):
    status, out, _ = run(capsys, "--config=configs/vp_digits.py", "--mode=show_config",
                         "--config.sampling.method=ode")
    assert status == 0
    lines = {line.split(" = ")[0]: line for line in out.splitlines()}
    assert "'ode'" in lines["sampling.method"] and "# see samplers.SAMPLERS" in lines[
        "sampling.method"]
    assert "# learning rate after warm-up" in lines["optim.lr"]
    assert lines["data.dataset"].startswith("data.dataset = 'DIGITS'")


def test_a_typo_is_one_clean_line_with_the_suggestion(capsys, tmp_path):
    status, _, err = run(capsys, "--config=configs/toy_gmm.py", f"--workdir={tmp_path}",
                         "--config.sampling.methd=ode")
    assert status == 2 and err == ['error: unknown config field \'methd\': did you mean '
                                   '"method" instead of "methd"?']


def test_inapplicable_options_are_refused(capsys, tmp_path):
    for flags, words in ((["--config.sampling.method=heun", "--config.sampling.order=3"],
                          "config.sampling.order=3 does not apply to method 'heun'"),
                         (["--config.sampling.guidance_scale=3.0"],
                          "does nothing on an unconditional model")):
        status, _, err = run(capsys, "--config=configs/toy_gmm.py", f"--workdir={tmp_path}",
                             "--mode=sample", *flags)
        assert status == 2 and len(err) == 1 and words in err[0], err


@pytest.mark.slow
def test_a_folder_of_pngs_end_to_end_without_config_after_training(capsys, tmp_path):
    """Train on PNGs made here, then evaluate and sample from the workdir alone (its config.json),
    with three methods: each run in its own folder with its settings, NFE and time."""
    write_pngs(tmp_path / "pngs", per_class=12)
    work = tmp_path / "work"
    status, _, err = run(capsys, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
                         f"--workdir={work}", "--mode=train")
    assert status == 0, err
    stored = json.loads((work / "config.json").read_text())
    assert stored["data"]["dataset"] == "image_folder" and stored["model"]["nf"] == 8
    assert run(capsys, f"--workdir={work}", "--mode=eval")[0] == 0
    folders = set()
    for method in ("pc", "ode", "dpm_solver"):
        extra = ["--config.sampling.rtol=1e-2", "--config.sampling.atol=1e-2",
                 "--config.sampling.num_steps=0"] if method == "ode" else []   # ode: adaptive
        status, out, err = run(capsys, f"--workdir={work}", "--mode=sample",
                               f"--config.sampling.method={method}", *extra)
        assert status == 0, err
        assert re.search(r"4 samples, \d+ score evaluations per batch \(\d+ in all\), "
                         r"[\d.]+ s", out), out
        folder, = {p.parent for p in work.glob(f"samples/step_4_{method}_*/samples.png")}
        folders.add(folder)
        record = json.loads((folder / "settings.json").read_text())
        assert record["settings"]["method"] == method and record["checkpoint"]["step"] == 4
        assert record["nfe_total"] > 0 and record["wall_seconds"] > 0
        with np.load(folder / "samples.npz") as archive:
            assert archive["samples"].shape == (4, 8, 8, 3)
            assert json.loads(str(archive["settings"]))["settings"] == record["settings"]
    assert len(folders) == 3
    # Other settings: another folder; the same settings again: the same folder.
    run(capsys, f"--workdir={work}", "--mode=sample", "--config.sampling.num_steps=5")
    run(capsys, f"--workdir={work}", "--mode=sample", "--config.sampling.method=pc")
    assert len(list(work.glob("samples/step_4_*"))) == 4
    # TensorBoard: the snapshot grid as an image, training scalars, eval metrics at the step.
    tags = {"images": set(), "scalars": {}}
    for events in (work / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags["images"] |= set(accumulator.Tags()["images"])
        for tag in accumulator.Tags()["scalars"]:
            tags["scalars"][tag] = [e.step for e in accumulator.Scalars(tag)]
    assert "samples" in tags["images"]
    for folder in folders:   # every sample run: its grid, NFE and wall time
        assert {f"sample/{folder.name}/nfe", f"sample/{folder.name}/wall_seconds"} \
            <= set(tags["scalars"]) and f"sample/{folder.name}" in tags["images"]
    assert tags["scalars"]["eval/bpd"] == [4] and "eval/nfe_mean" in tags["scalars"]
    assert "train/loss" in tags["scalars"]


def test_class_conditional_data_and_labels_from_the_folder(capsys, tmp_path):
    write_pngs(tmp_path / "pngs", per_class=8)
    work = tmp_path / "work"
    status, _, err = run(capsys, *TINY_IMAGES, f"--config.data.path={tmp_path / 'pngs'}",
                         "--config.model.num_classes=2", "--config.training.snapshot_sampling=False",
                         f"--workdir={work}", "--mode=train")
    assert status == 0, err
    status, _, err = run(capsys, f"--workdir={work}", "--mode=sample")
    folder, = work.glob("samples/step_4_pc_cfg1_*")
    assert json.loads((folder / "settings.json").read_text())["labels"] == [0, 1, 0, 1]


def test_threads_default_and_override():
    assert default_threads() >= 1
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


def test_a_workdir_alone_resumes_training_and_refuses_model_changes(capsys, tmp_path):
    """After the first run, --workdir alone is enough for every mode; a typo there is one line;
    overrides without any config are refused naming --config."""
    from tests.test_hostile import TOY

    work = tmp_path / "work"
    status, out, err = run(capsys, *TOY, f"--workdir={work}", "--config.training.n_iters=4")
    assert status == 0 and "trained to step 4 of 4" in out, err
    status, out, err = run(capsys, f"--workdir={work}", "--mode=train",
                           "--config.training.n_iters=6")
    assert status == 0 and "trained to step 6 of 6" in out, err
    status, _, err = run(capsys, f"--workdir={work}", "--mode=train", "--config.model.width=64")
    assert status == 2 and len(err) == 1 and "model.width" in err[0], err
    status, _, err = run(capsys, f"--workdir={work}", "--mode=sample",
                         "--config.sampling.methd=ode")
    assert status == 2 and err == ['error: unknown config field \'methd\': did you mean '
                                   '"method" instead of "methd"?'], err
    status, _, err = run(capsys, f"--workdir={tmp_path / 'empty'}", "--mode=train",
                         "--config.model.width=64")
    assert status == 2 and len(err) == 1 and "--config is required" in err[0], err
