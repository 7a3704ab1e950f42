"""`--mode frontier` end to end on a tiny trained toy workdir (seconds): the three files, their
numbers against a direct run of the same sampler from the same x_T, the budgets, the printout,
fitted schedules, refusals of bad budgets, links at the output names, and resume after a stop."""
import contextlib
import io
import json
import re

import pytest
import torch

import main
import samplers
from cli.config_source import stored_workdir_config
from data import build_dataset
from evaluation import frontier
from evaluation.sampling import sample_generators
from run.loading import load_ema_model
from run.preemption import Preempted
from run.progress import weights_digest
from samplers.budget import steps_for_budget

TOY = ["--config=configs/toy_gmm.py", "--config.model.width=16", "--config.model.nf=8",
       "--config.model.num_res_blocks=1", "--config.training.n_iters=8",
       "--config.training.snapshot_freq=8", "--config.training.snapshot_freq_for_preemption=4",
       "--config.training.log_freq=4", "--config.training.eval_freq=100",
       "--config.training.batch_size=32", "--config.training.num_snapshot_samples=8",
       "--config.data.num_train=256", "--config.data.num_test=64", "--config.eval.batch_size=24"]
FRONTIER = ["--config.frontier.num_samples=48", "--config.frontier.nfe=(2,3,5)",
            "--config.frontier.rtol=1e-5", "--config.frontier.atol=1e-5"]
BEST = re.compile(r"^NFE (\d+): best (\S+) \(.*\); closest to the flow (\S+) \(")


def run(workdir, mode, *extra):
    """main.run in this process: (status, stdout, stderr lines)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main.run(["main.py", *TOY, f"--workdir={workdir}", f"--mode={mode}", *extra])
    return status, out.getvalue(), [line for line in err.getvalue().splitlines()
                                    if line.strip() and not re.match(r"^\w+:\s+\d+%\|", line)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("frontier") / "work"
    assert run(workdir, "train")[0] == 0
    return workdir


@pytest.fixture(scope="module")
def done(trained):
    status, out, err = run(trained, "frontier", *FRONTIER)
    assert status == 0, err
    return trained, out, json.loads((trained / "frontier" / "frontier.json").read_text())


def load(workdir):
    config = stored_workdir_config(["main.py", f"--workdir={workdir}"])
    model, sde, _ = load_ema_model(config, workdir, "cpu")
    return config, model, sde


def batched(model, sde, x_T, method, batch, seed, **options):
    chunks = []
    for start in range(0, len(x_T), batch):
        rows = range(start, min(start + batch, len(x_T)))
        chunks.append(samplers.sample(model, sde, (len(rows), 2), method, x_T=x_T[start:rows.stop],
                                      generator=sample_generators(seed + 1, rows, "cpu"),
                                      **options).x)
    return torch.cat(chunks)


def test_the_three_files_exist_and_every_method_is_run_or_skipped(done):
    workdir, _, record = done
    for name in ("frontier.json", "frontier.md", "frontier.png"):
        assert (workdir / "frontier" / name).is_file()
    assert not (workdir / "frontier" / "progress.pth").exists()
    assert (workdir / "frontier" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert record["digest"] in (workdir / "frontier" / "frontier.md").read_text()
    ran = {(c["method"], c["budget"]) for c in record["cells"]}
    skipped = {(s["method"], s["budget"]) for s in record["skipped"]}
    assert ran | skipped == {(m, b) for m in frontier.fast_methods(False) for b in (2, 3, 5)}
    assert not ran & skipped and ("heun", 2) in skipped and ("dpm_solver", 2) in ran
    assert all("too small" in s["reason"] for s in record["skipped"])
    for cell in record["cells"]:
        assert 1 <= cell["nfe"] <= cell["budget"], cell
        assert cell["options"]["nfe"] == cell["budget"] and cell["seconds"] >= 0
        assert f"| {cell['label']} |" in (workdir / "frontier" / "frontier.md").read_text()
    assert record["reference"]["options"]["rtol"] == 1e-5 and record["reference"]["nfe"] > 5


@pytest.mark.parametrize("method", ["dpm_solver", "euler_maruyama"])
def test_a_cell_matches_a_direct_run_from_the_same_x_T(done, method):
    workdir, _, record = done
    config, model, sde = load(workdir)
    settings = record["settings"]
    x_T = frontier.prior_draw(sde, (2,), settings["num_samples"], settings["seed"])
    batch, seed = settings["batch_size"], settings["seed"]
    flow = batched(model, sde, x_T, "ode", batch, seed, rtol=1e-5, atol=1e-5)
    x = batched(model, sde, x_T, method, batch, seed, nfe=5)
    cell = next(c for c in record["cells"] if c["method"] == method and c["budget"] == 5)
    test = build_dataset(config.data, "test").data.float()
    assert cell["rms_to_flow"] == pytest.approx(frontier.rms(x, flow), rel=1e-5, abs=1e-7)
    assert cell["energy_to_data"] == pytest.approx(frontier.energy_distance(x, test), rel=1e-5)
    assert cell["energy_to_flow"] == pytest.approx(frontier.energy_distance(x, flow), rel=1e-5,
                                                   abs=1e-8)
    assert record["reference"]["energy_to_data"] == pytest.approx(
        frontier.energy_distance(flow, test), rel=1e-5)


def test_the_printed_best_per_budget_agrees_with_the_json(done):
    _, out, record = done
    printed = {int(m[1]): {"by_data": m[2], "by_flow": m[3]}
               for m in map(BEST.match, out.splitlines()) if m}
    assert printed == {int(b): best for b, best in record["best"].items()}
    for budget, best in printed.items():
        here = [c for c in record["cells"] if c["budget"] == budget]
        assert best["by_data"] == min(here, key=lambda c: c["energy_to_data"])["label"]
        assert best["by_flow"] == min(here, key=lambda c: c["rms_to_flow"])["label"]


@pytest.mark.parametrize("value", ["()", "(0,5)", "(2,2)", "(2.5,3)", "(-1,)"])
def test_bad_budgets_are_refused_with_one_line(trained, value):
    status, out, err = run(trained, "frontier", f"--config.frontier.nfe={value}")
    assert status == 2 and len(err) == 1 and "config.frontier.nfe" in err[0], err


def test_bad_sample_counts_and_tolerances_are_refused(trained):
    for flag in ("--config.frontier.num_samples=1", "--config.frontier.rtol=0.0",
                 "--config.frontier.atol=-1.0"):
        status, _, err = run(trained, "frontier", flag)
        assert status == 2 and len(err) == 1 and flag.split("=")[0][2:] in err[0], err


def test_fitted_schedules_run_at_their_budget_and_stale_ones_are_skipped(trained, done):
    _, model, sde = load(trained)
    folder = trained / "schedules"
    folder.mkdir(exist_ok=True)
    times = torch.linspace(1.0, 1e-3, 4).tolist()   # 3 intervals: dpm_solver, 3 + 1 NFE
    for name, digest in (("dpm_solver_nfe5.json", weights_digest(model)),
                         ("ddim_nfe5.json", "0123456789abcdef"),
                         ("unipc_nfe3.json", weights_digest(model))):   # 3 steps cost 4
        method, nfe = name[:-5].split("_nfe")
        options = {"order": 1} if method == "dpm_solver" else {}   # learned with these
        (folder / name).write_text(json.dumps({"method": method, "nfe": int(nfe),
                                               "times": times, "model_digest": digest,
                                               "options": options}))
    (folder / "heun_nfe5.json").write_text("{not json")
    try:
        status, _, err = run(trained, "frontier", *FRONTIER)
        assert status == 0, err
        record = json.loads((trained / "frontier" / "frontier.json").read_text())
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    fitted = [c for c in record["cells"] if c["label"] == "dpm_solver+fitted"]
    assert len(fitted) == 1 and fitted[0]["budget"] == 5 and fitted[0]["nfe"] == 4
    assert fitted[0]["schedule_file"] == "dpm_solver_nfe5.json"
    assert fitted[0]["options"]["order"] == 1      # the times run with what they were fitted for
    stale = [s for s in record["skipped"] if s["label"] == "ddim+fitted"]
    assert len(stale) == 1 and "another model" in stale[0]["reason"]
    over = [s for s in record["skipped"] if s["label"] == "unipc+fitted"]
    assert len(over) == 1 and "cost 4 evaluations, over nfe=3" in over[0]["reason"]
    assert not any(c["label"] == "heun+fitted" for c in record["cells"] + record["skipped"])


def test_links_at_the_output_names_are_replaced_never_followed(trained, done):
    outside = trained.parent / "outside"
    outside.mkdir(exist_ok=True)
    for name in ("frontier.json", "frontier.md", "frontier.png"):
        target = outside / name
        target.write_text("precious")
        link = trained / "frontier" / name
        link.unlink()
        link.symlink_to(target)
    status, _, err = run(trained, "frontier", *FRONTIER)
    assert status == 0, err
    for name in ("frontier.json", "frontier.md", "frontier.png"):
        assert (outside / name).read_text() == "precious"
        assert not (trained / "frontier" / name).is_symlink()
        assert (trained / "frontier" / name).is_file()


def test_a_stopped_run_keeps_the_old_files_whole_and_resumes(trained, done, monkeypatch):
    before = {name: (trained / "frontier" / name).read_bytes()
              for name in ("frontier.json", "frontier.md", "frontier.png")}
    real, calls = frontier.run_sampler, []

    def stopping(sampler, *args, **kwargs):
        calls.append(sampler.method)
        if len(calls) == 4:
            raise Preempted("SIGTERM during a sampler step")
        return real(sampler, *args, **kwargs)
    monkeypatch.setattr(frontier, "run_sampler", stopping)
    other = [*FRONTIER, "--config.frontier.seed=3"]
    status, _, err = run(trained, "frontier", *other)
    assert status == 3, err
    assert {name: (trained / "frontier" / name).read_bytes() for name in before} == before
    assert (trained / "frontier" / "progress.pth").exists()
    calls.clear()
    monkeypatch.setattr(frontier, "run_sampler", lambda *a, **k: calls.append(1) or real(*a, **k))
    status, _, err = run(trained, "frontier", *other)
    assert status == 0, err
    record = json.loads((trained / "frontier" / "frontier.json").read_text())
    assert record["settings"]["seed"] == 3
    assert len(calls) == len(record["cells"]) - 2   # the reference and two cells were kept
    assert not (trained / "frontier" / "progress.pth").exists()


def test_the_config_defaults_are_the_frontier_defaults():
    from configs.default import get_default_config
    assert get_default_config().frontier.to_dict() == frontier.DEFAULTS


def test_a_diverged_cell_gets_none_and_never_wins():
    flow = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    bad = flow.clone()
    bad[3, 1] = float("nan")
    quality = lambda x: {"energy_to_data": frontier.energy_distance(x, flow)}  # noqa: E731
    good = frontier.measure(flow + 0.1, flow, quality, "energy_to_data")
    diverged = frontier.measure(bad, flow, quality, "energy_to_data")
    assert diverged == {"finite": False, "rms_to_flow": None, "energy_to_data": None}
    assert good["finite"] and good["rms_to_flow"] == pytest.approx(0.1)
    cells = [{"label": "bad", "budget": 5, **diverged}, {"label": "good", "budget": 5, **good}]
    assert frontier.best_per_budget(cells, "energy_to_data") == {
        5: {"by_data": "good", "by_flow": "good"}}


def test_the_energy_distance_is_zero_for_one_set_and_grows_with_a_shift():
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    assert frontier.energy_distance(x, x) == pytest.approx(0, abs=1e-12)
    shifts = [frontier.energy_distance(x + torch.tensor([s, 0.0]), x) for s in (0.5, 1.0, 2.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_a_frontier_folder_linking_out_of_the_workdir_is_refused(tmp_path, trained, done):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = tmp_path / "frontier.moved"
    (trained / "frontier").rename(moved)
    (trained / "frontier").symlink_to(outside, target_is_directory=True)
    try:
        status, _, err = run(trained, "frontier", *FRONTIER)
    finally:
        (trained / "frontier").unlink()
        moved.rename(trained / "frontier")
    assert status == 2 and len(err) == 1 and "leads out of the workdir" in err[0], err
    assert not list(outside.iterdir())


def test_the_numbers_and_the_plot_are_in_tensorboard(done):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    workdir, _, record = done
    scalars, images = {}, []
    for events in (workdir / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags = accumulator.Tags()
        for tag in tags["scalars"]:
            if tag.startswith("frontier/"):
                scalars.setdefault(tag, set()).update(
                    (e.step, e.value) for e in accumulator.Scalars(tag))
        if "frontier" in tags["images"]:
            images += accumulator.Images("frontier")
    for cell in record["cells"]:
        for key in ("energy_to_data", "rms_to_flow"):
            logged = scalars[f"frontier/{cell['label']}/{key}"]
            assert any(step == cell["nfe"] and value == pytest.approx(cell[key], rel=1e-6)
                       for step, value in logged), (cell, key)
    assert images and images[0].step == record["checkpoint"]["step"]


def test_a_student_is_told_by_its_stored_config(tmp_path):
    from evaluation.frontier_mode import is_student
    from run.paths import WorkdirPaths
    from configs.default import get_default_config
    paths = WorkdirPaths(tmp_path)
    assert not is_student(get_default_config(), paths)
    (tmp_path / "config.json").write_text(json.dumps({"distill": {"teacher": "/runs/toy"}}))
    assert is_student(get_default_config(), paths)
    (tmp_path / "config.json").write_text(json.dumps({"distill": {"teacher": ""}}))
    assert not is_student(get_default_config(), paths)


def test_the_consistency_sampler_is_planned_on_students_only():
    """As registered (1…8 steps, one evaluation each): planned on a student only, at every
    budget by `nfe=` (at 10 it takes its 8 steps, never more evaluations than the budget)."""
    assert "consistency" not in frontier.fast_methods(False)
    assert frontier.fast_methods(True)[-1] == "consistency"
    planned = frontier.plan(["consistency"], (2, 10), [], "")
    assert [(c.label, c.budget) for c in planned.cells] == [("consistency", 2),
                                                            ("consistency", 10)]
    assert not planned.skipped
    steps = [steps_for_budget("consistency", c.budget, {})["num_steps"] for c in planned.cells]
    assert steps == [2, 8]
