"""Consistency distillation (training.consistency_loss, training.distill, --mode distill):
the ideal consistency function is a fixed point of the CD loss on an exact mixture, a short CD
run on the toy lowers the 2-step distance to the teacher's flow, and the mode keeps the workdir
contract end to end through `main.run`."""
import math
import os
import signal
from pathlib import Path

import pytest
import torch

import main
import sde_lib
from data.toy import toy_gaussian_mixture
from run.checkpoint import load_checkpoint
from samplers import sample
from training.consistency_loss import ConsistencyLoss, teacher_step

EPS = 1e-3
SOLVE_STEPS = 400   # steps of the converged reference solve (Heun, geometric in σ̄)


class IdealConsistency:
    """f*(x, t) = Φ_{t→eps}(x)/a(eps): the probability-flow map of the exact mixture score, by
    a converged Heun solve on a grid geometric in σ̄ (`SOLVE_STEPS` steps per point)."""

    def __init__(self, score_fn, sde):
        self.score_fn, self.sde = score_fn, sde

    def _grid(self, t: float) -> torch.Tensor:
        ends = torch.tensor([t, EPS], dtype=torch.float64)
        log_sigma = -0.5 * self.sde.log_snr(ends)
        sigmas = torch.exp(torch.linspace(log_sigma[0].item(), log_sigma[1].item(),
                                          SOLVE_STEPS + 1, dtype=torch.float64))
        grid = self.sde.t_from_log_snr(-2 * torch.log(sigmas))
        grid[0], grid[-1] = t, EPS
        return grid

    def denoise(self, x, t, y=None):
        out = torch.empty_like(x)
        a_min = self.sde.marginal_coeffs(torch.tensor([EPS], dtype=torch.float64))[0].item()
        for value in torch.unique(t).tolist():
            rows = (t == value).nonzero().squeeze(1)
            if value <= EPS:
                out[rows] = x[rows] / a_min
                continue
            out[rows] = sample(self.score_fn, self.sde, x[rows].shape, "heun", x_T=x[rows],
                               dtype=torch.float64, schedule=self._grid(value),
                               denoise=False).x / a_min
        return out


class Tweedie:
    """The teacher's denoiser E[x_0 | x_t], where a student starts (not a consistency function)."""

    def __init__(self, score_fn, sde):
        self.score_fn, self.sde = score_fn, sde

    def denoise(self, x, t, y=None):
        a, std = (c[:, None] for c in self.sde.marginal_coeffs(t))
        return (x + std ** 2 * self.score_fn(x, t)) / a


def cd_loss(student, num_scales: int, solver: str = "heun", n: int = 256) -> float:
    sde = sde_lib.VPSDE()
    mixture = toy_gaussian_mixture()
    score_fn = mixture.score_fn(sde)
    loss = ConsistencyLoss(sde, "cd", eps=EPS, metric_name="l2", num_scales=num_scales,
                           step=teacher_step(score_fn, sde, solver))
    x0 = mixture.sample(n, torch.Generator().manual_seed(0)).double()
    return loss(student(score_fn, sde), x0, torch.Generator().manual_seed(1)).mean().item()


@pytest.mark.slow
def test_the_ideal_consistency_function_is_a_fixed_point_of_the_cd_loss():
    """With the exact score, f*(x_hi, t_hi) = f*(Φ(x_hi), t_lo) for the exact flow Φ, so the loss
    of f* is only the solver's error pushed through f*. Heun's local error is O(Δ³), so the L2
    loss is O(Δ⁶): doubling the grid divides it by ≈ 2⁶ = 64 (measured 66; we require > 32,
    which a first-order step, O(Δ⁴) → 16, fails: DDIM's measured 18); the residual at Song et
    al.'s 18 points is far below the loss of a non-fixed point (the teacher's denoiser, where a
    student starts: 450× measured, 100× required)."""
    ideal_18, ideal_36 = cd_loss(IdealConsistency, 18), cd_loss(IdealConsistency, 36)
    start = cd_loss(Tweedie, 18)
    assert ideal_36 < ideal_18 / 32, (ideal_18, ideal_36)
    assert ideal_18 < start / 100, (ideal_18, start)


TOY = ["--config.model.width=16", "--config.model.nf=8", "--config.model.num_res_blocks=1",
       "--config.training.snapshot_freq=4", "--config.training.snapshot_freq_for_preemption=2",
       "--config.training.log_freq=2", "--config.training.eval_freq=100",
       "--config.training.batch_size=32", "--config.data.num_train=256",
       "--config.data.num_test=64", "--config.training.num_snapshot_samples=8"]


def run(capsys, *argv):
    """main.run in this process: (exit status, stderr lines other than progress bars)."""
    capsys.readouterr()
    status = main.run(["main.py", *argv])
    return status, [line for line in capsys.readouterr().err.splitlines()
                    if line.strip() and "it/s]" not in line and "%|" not in line]


def distill(capsys, student, teacher, *extra):
    return run(capsys, f"--workdir={student}", "--mode=distill",
               f"--config.distill.teacher={teacher}", "--config.distill.n_iters=8",
               "--config.distill.num_scales=6", *extra)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("distill") / "teacher"
    assert main.run(["main.py", "--config=configs/toy_gmm.py", *TOY, f"--workdir={workdir}",
                     "--mode=train", "--config.training.n_iters=8"]) == 0
    return workdir


@pytest.mark.parametrize("make, words", [
    (lambda root, teacher: root / "absent", "no trained workdir there"),
    (lambda root, teacher: _config_only(root, teacher), "no checkpoint there"),
    (lambda root, teacher: teacher, "the student's own --workdir"),
])
def test_a_bad_teacher_is_refused_with_one_line_before_any_work(teacher, tmp_path, capsys, make,
                                                                words):
    bad = make(tmp_path, teacher)
    student = teacher if bad == teacher else tmp_path / "student"
    before = sorted(p.name for p in tmp_path.iterdir())
    if bad == teacher:   # the teacher's own workdir as the student: it is no student
        status, lines = run(capsys, f"--workdir={teacher}", "--mode=distill",
                            f"--config.distill.teacher={teacher}")
        words = "not a consistency student"
    else:
        status, lines = distill(capsys, student, bad)
    assert status == 2 and len(lines) == 1 and words in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before      # nothing created


def _config_only(root: Path, teacher: Path) -> Path:
    untrained = root / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text((teacher / "config.json").read_text())
    return untrained


def test_consistency_sampling_is_refused_on_a_model_that_is_no_student(teacher, capsys):
    status, lines = run(capsys, f"--workdir={teacher}", "--mode=sample",
                        "--config.sampling.method=consistency")
    assert status == 2 and len(lines) == 1 and "needs a consistency student" in lines[0], lines


@pytest.mark.slow
def test_distill_then_sample_and_a_student_cannot_teach(teacher, tmp_path, capsys):
    student = tmp_path / "student"
    status, lines = distill(capsys, student, teacher)
    assert status == 0, lines
    stored = (student / "config.json").read_text()
    assert '"teacher_digest": "' in stored and '"method": "consistency"' in stored
    status, lines = run(capsys, f"--workdir={student}", "--mode=sample",
                        "--config.sampling.num_steps=2", "--config.eval.num_samples=8")
    assert status == 0, lines
    (run_folder,) = (student / "samples").glob("step_8_consistency_*")
    assert (run_folder / "samples.npz").is_file()
    # The student's σ_min is part of its meaning; sampling must end there.
    status, lines = distill(capsys, student, teacher, "--config.distill.eps=0.002")
    assert status == 2 and len(lines) == 1 and "distill.eps" in lines[0], lines
    status, lines = run(capsys, f"--workdir={student}", "--mode=sample",
                        "--config.sampling.eps=0.002")
    assert status == 2 and len(lines) == 1 and "config.distill.eps" in lines[0], lines
    status, lines = distill(capsys, tmp_path / "grandchild", student)
    assert status == 2 and "itself a consistency student" in lines[0], lines
    # A teacher whose weights changed since the student began is refused on resume.
    changed = tmp_path / "changed"
    assert main.run(["main.py", f"--workdir={changed}", "--config=configs/toy_gmm.py", *TOY,
                     "--mode=train", "--config.training.n_iters=4"]) == 0
    status, lines = distill(capsys, student, changed, "--config.distill.n_iters=12")
    assert status == 2 and len(lines) == 1 and "weights changed" in lines[0], lines


def _final(workdir: Path) -> dict:
    return load_checkpoint(workdir / "checkpoints" / "checkpoint_8.pth")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cd", "ect"])
def test_sigterm_then_resume_is_bit_identical(teacher, tmp_path, capsys, monkeypatch, method):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert distill(capsys, whole, teacher, f"--config.distill.method={method}")[0] == 0
    from training.consistency_loss import ConsistencyLoss
    original = ConsistencyLoss.after_backward

    def stop_at_three(self, gather):
        original(self, gather)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(ConsistencyLoss, "after_backward", stop_at_three)
    status, lines = distill(capsys, stopped, teacher, f"--config.distill.method={method}")
    assert status == 3 and len(lines) == 1 and "step 3" in lines[0], lines
    monkeypatch.setattr(ConsistencyLoss, "after_backward", original)
    assert distill(capsys, stopped, teacher, f"--config.distill.method={method}")[0] == 0
    a, b = _final(whole), _final(stopped)
    assert a["loss"] == b["loss"] == {"step": 8}
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_links_at_the_names_distill_writes_leave_their_targets_intact(teacher, tmp_path, capsys):
    """Links planted at checkpoint names a run will write: a new student's are refused as
    unreadable (one line); a resumed run writes past them; the targets never change."""
    student = tmp_path / "student"
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (student / "checkpoints").mkdir(parents=True)
    (student / "checkpoints" / "checkpoint_4.pth").symlink_to(outside)
    status, lines = distill(capsys, student, teacher)
    assert status == 2 and len(lines) == 1 and "readable" in lines[0], lines
    (student / "checkpoints" / "checkpoint_4.pth").unlink()
    assert distill(capsys, student, teacher, "--config.distill.n_iters=4")[0] == 0
    for name in ("checkpoints/checkpoint_8.pth", "checkpoints-meta/checkpoint.pth.tmp"):
        (student / name).symlink_to(outside)
    status, lines = distill(capsys, student, teacher)
    assert status == 0, lines
    assert outside.read_text() == "precious"
    assert load_checkpoint(student / "checkpoints-meta" / "checkpoint.pth")["step"] == 8


@pytest.mark.slow
def test_a_short_cd_run_on_the_toy_lowers_the_two_step_distance(tmp_path, capsys):
    """Energy distance of 2-step consistency samples to the teacher's converged flow (RK45,
    1e-5, from another prior draw): the student at its start (the teacher's weights in the
    consistency parametrisation) against the student after 400 CD steps."""
    from cli.config_source import config_from_stored
    from run.builders import build_score_model
    from run.loading import load_ema_model
    from run.stored_config import read_stored
    from two_sample import energy_test

    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main.run(["main.py", "--config=configs/toy_gmm.py", f"--workdir={teacher}",
                     "--mode=train", "--config.training.n_iters=1000",
                     "--config.training.snapshot_sampling=False"]) == 0
    assert distill(capsys, student, teacher, "--config.distill.n_iters=400",
                   "--config.distill.num_scales=18")[0] == 0

    def loaded(workdir):
        config = config_from_stored(read_stored(workdir / "config.json"))
        return config, *load_ema_model(config, workdir, torch.device("cpu"))[:2]
    _, teacher_model, sde = loaded(teacher)
    config, trained, _ = loaded(student)
    start = build_score_model(config, sde).eval()
    start.net.load_state_dict(teacher_model.net.state_dict())
    n = 1000
    draws = [sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(s),
                                dtype=torch.float64) for s in (0, 1)]
    flow = sample(lambda x, t: teacher_model(x.float(), t.float()).double(), sde, (n, 2), "ode",
                  x_T=draws[1], rtol=1e-5, atol=1e-5, dtype=torch.float64).x

    def two_step(model):
        with torch.no_grad():
            x = sample(lambda x, t: model(x.float(), t.float()).double(), sde, (n, 2),
                       "consistency", num_steps=2, x_T=draws[0], dtype=torch.float64,
                       generator=torch.Generator().manual_seed(2)).x
        return energy_test(x, flow, num_permutations=0)[0]
    before, after = two_step(start), two_step(trained)
    assert after < 0.7 * before, (before, after)
