"""Conditional sampling: the bias of replacement, RePaint and DPS beside SMC's as K grows.

    python benchmarks/conditioning.py gmm [--num-samples 1000] [--cases ...] [--sdes vp ve]
    python benchmarks/conditioning.py digits --config configs/vp_digits.py --workdir RUN \
        [--num-images 100] [--masks bottom_half center] [--particles 8]

`gmm`: Gaussian mixtures whose observed and unobserved coordinates are coupled, with the exact
score, on VP and VE (1000 steps, eps = 1e-3, no denoising), against the exact conditional law
at eps (`models.analytic`). Per case, method and SDE: score evaluations per sample (NFE × K),
wall time, a statistic of the unobserved part (mean ± standard error) beside its exact value
(from 200 000 exact draws), and the energy two-sample test of the first 500 samples against 500
exact ones (`tests/two_sample.py`: E, and its permutation p-value; p ≤ 0.001 rejects).
Cases: x₁ = 2 (selects one mode), x₁ = 1.1283 (both modes ½), a noisy x₁ (σ_y = 0.5), and
super-resolution / colorization of a 12-dim image mixture (statistic: the fraction assigned
to the first component). Writes `benchmarks/results/conditioning_gmm.md`.

`digits`: inpainting of test digits with a trained model (`--mode train`) judged by the
noisy-data classifier of the same workdir (`--mode train_classifier`) at t = `--judge-t`:
the fraction of completions whose class is the original's label, per method, with wall time
and score evaluations per image; SMC at the config's step count against replacement at the
same and at K× its cost, RePaint (r = K, about K× cost) and DPS. Writes
`benchmarks/results/conditioning_digits.md` and a PNG grid per mask (rows: originals, inputs,
then one row per method).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import samplers  # noqa: E402
import sde_lib  # noqa: E402
from models.analytic import GaussianMixture  # noqa: E402
from samplers.conditioning.operators import AvgPool, ChannelMean, Mask  # noqa: E402
from two_sample import MIXTURE_2D, energy_test  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EPS, f64 = 1e-3, torch.float64
SDES = {"vp": sde_lib.VPSDE, "ve": sde_lib.VESDE}


class RowCounter:
    """Wraps a score function and counts the rows it evaluates (score evaluations)."""

    def __init__(self, score_fn):
        self.score_fn, self.rows = score_fn, 0

    def __call__(self, x, t):
        self.rows += x.shape[0]
        return self.score_fn(x, t)


class Case(NamedTuple):
    mixture: GaussianMixture
    operator: samplers.LinearOperator
    y: torch.Tensor                       # one observation [1, ...]
    noise_std: float
    unknown: Callable                     # x [n, ...] -> the compared coordinates [n, k]
    exact: Callable                       # sde -> the exact law of those coordinates
    statistic: Callable                   # (u [n, k], law) -> per-sample values [n]
    label: str


def image_mixture() -> GaussianMixture:
    """tests/test_condition.py's 12-dim mixture on [3, 2, 2] images."""
    generator = torch.Generator().manual_seed(7)
    means = 1.2 * torch.randn(3, 12, generator=generator, dtype=f64)
    variances = 0.05 + 0.35 * torch.rand(3, 12, generator=generator, dtype=f64)
    return GaussianMixture([0.25, 0.35, 0.4], means, variances)


def first_component(u: torch.Tensor, law) -> torch.Tensor:
    """1 where the law's most responsible component for u is its first one."""
    normal = torch.distributions.MultivariateNormal(law.means, law.covariances)
    return (normal.log_prob(u[:, None]) + torch.log(law.weights)).argmax(1).eq(0).double()


def mixture_cases() -> dict:
    """The measured cases, by name."""
    mask = Mask(torch.tensor([1.0, 0.0]))
    below = lambda u, law: (u[:, -1] < 0.25).double()                    # noqa: E731
    cases = {}
    for c in (2.0, 1.1283):
        cases[f"x1={c:g}"] = Case(
            MIXTURE_2D, mask, torch.tensor([[c, 0.0]], dtype=f64), 0.0, lambda x: x[:, 1:],
            lambda sde, c=c: MIXTURE_2D.diffused(EPS, sde).conditional([1, 0], [c, 0.0]),
            below, "P(x2 < 0.25)")
    cases["noisy x1=0.8"] = Case(
        MIXTURE_2D, mask, torch.tensor([[0.8, 0.0]], dtype=f64), 0.5, lambda x: x,
        lambda sde: MIXTURE_2D.diffused(EPS, sde).posterior([[1.0, 0.0]], [0.8], 0.5),
        below, "P(x2 < 0.25)")
    images = image_mixture()
    for name, operator in (("superres", AvgPool(2)), ("colorize", ChannelMean(3))):
        eye = torch.eye(12, dtype=f64).view(12, 3, 2, 2)
        matrix = operator(eye).flatten(1).T                                  # [m, 12]
        basis = torch.linalg.svd(matrix, full_matrices=True)[2][len(matrix):]
        midpoint = 0.5 * (images.means[0] + images.means[1])
        y = operator(midpoint.view(1, 3, 2, 2))
        cases[name] = Case(
            images, operator, y, 0.0, lambda x, basis=basis: x.flatten(1) @ basis.T,
            lambda sde, m=matrix, y=y, b=basis:
                images.diffused(EPS, sde).posterior(m, y.flatten()).linear_map(b),
            first_component, "first mode")
    return cases


def gmm_methods(args, noisy: bool):
    """(label, method, options) rows."""
    rows = [] if noisy else [("replacement", "replacement", dict(corrector="none")),
                             ("replacement+Langevin", "replacement", {}),
                             ("RePaint j=10 r=10", "repaint", {})]
    rows += [(f"DPS ζ={s:g}", "dps", dict(dps_scale=s)) for s in (0.3, 1.0)]
    rows = [] if args.smc_only else rows
    for lookahead in args.lookaheads:
        suffix = "" if lookahead == "predictive" else f", {lookahead}"
        rows += [(f"SMC K={k}{suffix}", "smc", dict(num_particles=k, lookahead=lookahead))
                 for k in args.ks]
    return rows


def measure(case: Case, sde, method: str, options: dict, n: int, law, exact_draws):
    """One row's numbers: (evals per sample, wall s, mean ± se, E, p)."""
    y = case.y.expand((n,) + case.y.shape[1:])
    score_fn = RowCounter(case.mixture.score_fn(sde))
    tick = time.perf_counter()
    result = samplers.condition(score_fn, sde, y, case.operator,
                                noise_std=case.noise_std, method=method, denoise=False,
                                dtype=f64, generator=torch.Generator().manual_seed(0), **options)
    wall = time.perf_counter() - tick
    u = case.unknown(result.x)
    values = case.statistic(u, law)
    energy, p_value = energy_test(u[:500], exact_draws[:500])
    se = values.std().item() / math.sqrt(n)
    return score_fn.rows // n, wall, values.mean().item(), se, energy, p_value


def run_gmm(args) -> str:
    lines = ["| case | SDE | method | evals/sample | wall s | statistic | exact | E ×1e3 | p |",
             "|---|---|---|---|---|---|---|---|---|"]
    cases = mixture_cases()
    for name in args.cases:
        case = cases[name]
        for sde_name in args.sdes:
            sde = SDES[sde_name]()
            law = case.exact(sde)
            exact_draws = law.sample(200_000, torch.Generator().manual_seed(1))
            exact = case.statistic(exact_draws, law).mean().item()
            exact_draws = law.sample(500, torch.Generator().manual_seed(2))
            for label, method, options in gmm_methods(args, case.noise_std > 0):
                evals, wall, mean, se, energy, p = measure(case, sde, method, options,
                                                           args.num_samples, law, exact_draws)
                lines.append(f"| {name} | {sde_name} | {label} | {evals} | {wall:.1f} | "
                             f"{case.label} {mean:.4f} ± {se:.4f} | {exact:.4f} | "
                             f"{1e3 * energy:.2f} | {p:.4f} |")
                print(lines[-1], flush=True)
    return "\n".join(lines)


# --- digits: inpainting judged by a classifier ---------------------------------------------------

def digits_methods(config, ks):
    """(label, method, options) rows: SMC per K, and the others at about the largest K's cost."""
    steps, k = config.sampling.num_steps, max(ks)
    pc = dict(eps=config.sampling.eps, snr=config.sampling.snr)
    rows = [("replacement", "replacement", dict(num_steps=steps, **pc)),
            ("replacement, 2x steps", "replacement", dict(num_steps=steps * 2, **pc)),
            (f"replacement, {k // 2}x steps", "replacement", dict(num_steps=steps * k // 2, **pc)),
            (f"RePaint j=10 r={k}", "repaint", dict(num_steps=steps, jump_n_sample=k)),
            ("DPS ζ=1", "dps", dict(num_steps=steps))]
    rows += [(f"SMC K={n}", "smc", dict(num_steps=steps, num_particles=n)) for n in ks]
    return rows + [(f"SMC K={k}, Tweedie look-ahead", "smc",
                    dict(num_steps=steps, num_particles=k, lookahead="tweedie"))]


def inpaint_digits(model, sde, x, mask, method, options, seed: int = 0):
    """Completions `[n, C, H, W]`, wall seconds and score evaluations per image."""
    generators = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in range(len(x))]
    score_fn = RowCounter(model)
    tick = time.perf_counter()
    result = samplers.inpaint(score_fn, sde, x, mask, method=method, generator=generators,
                              **options)      # DPS enables autograd where it needs it
    return result.x.detach(), time.perf_counter() - tick, score_fn.rows // len(x)


def run_digits(args) -> None:
    from benchmarks.bound_vs_ode import load_config
    from data import build_dataset
    from data.transforms import scale_images, to_uint8_images
    from evaluation.images import save_image_grid
    from evaluation.tasks import make_mask
    from run.loading import load_classifier, load_ema_model
    config = load_config(args.config, args.set)
    model, sde, step = load_ema_model(config, args.workdir, "cpu")
    model.requires_grad_(False)
    judge = load_classifier(config, args.classifier_workdir or args.workdir, "cpu")
    data = build_dataset(config.data, "test")
    x = scale_images(data.data[:args.num_images], centered=config.data.centered, dequantize=False)
    labels, centered = data.labels[:args.num_images], config.data.centered
    t_judge = torch.full((len(x),), args.judge_t)
    agree = lambda images: judge.log_prob(images, t_judge).argmax(1).eq(labels)  # noqa: E731
    lines = [f"# Digits inpainting, {args.config} at step {step}\n",
             f"`python benchmarks/conditioning.py {' '.join(sys.argv[1:])}`; classifier at "
             f"t = {args.judge_t}; originals: "
             f"{agree(x).float().mean():.3f} agree with their labels\n",
             "| mask | method | evals/image | wall s | agreement ± se | known-pixel RMSE |",
             "|---|---|---|---|---|---|"]
    for kind in args.masks:
        mask = make_mask(kind, x.shape, torch.Generator().manual_seed(0))
        rows = [x[:16], (x * mask + (1 - mask) * (0.0 if centered else 0.5))[:16]]
        for label, method, options in digits_methods(config, args.particles):
            if args.only and label not in args.only:
                continue
            images, wall, evals = inpaint_digits(model, sde, x, mask, method, options)
            rate = agree(images).float().mean().item()
            se = math.sqrt(rate * (1 - rate) / len(x))
            rmse = ((images - x) * mask).pow(2).sum().div(mask.expand_as(x).sum()).sqrt()
            lines.append(f"| {kind} | {label} | {evals} | {wall:.0f} | {rate:.3f} ± {se:.3f} | "
                         f"{rmse:.3f} |")
            print(lines[-1], flush=True)
            rows.append(images[:16])
        grid = torch.cat([to_uint8_images(r, centered=centered) for r in rows])
        if not args.only:
            save_image_grid(grid, RESULTS / f"conditioning_digits_{kind}.png", nrow=16)
    (RESULTS / args.output).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gmm = commands.add_parser("gmm")
    gmm.add_argument("--num-samples", type=int, default=1000)
    gmm.add_argument("--cases", nargs="+", default=list(mixture_cases()))
    gmm.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    gmm.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    gmm.add_argument("--lookaheads", nargs="+", default=["predictive"],
                     choices=["predictive", "tweedie"])
    gmm.add_argument("--smc-only", action="store_true")
    gmm.add_argument("--output", default="conditioning_gmm.md")
    digits = commands.add_parser("digits")
    digits.add_argument("--config", required=True)
    digits.add_argument("--workdir", required=True)
    digits.add_argument("--classifier-workdir", default=None)
    digits.add_argument("--num-images", type=int, default=100)
    digits.add_argument("--masks", nargs="+", default=["bottom_half", "center"])
    digits.add_argument("--particles", type=int, nargs="+", default=[8])
    digits.add_argument("--judge-t", type=float, default=0.05)
    digits.add_argument("--only", nargs="*", default=[], metavar="LABEL",
                        help="run only the rows with these labels")
    digits.add_argument("--output", default="conditioning_digits.md")
    digits.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.command == "gmm":
        table = run_gmm(args)
        header = (f"# Conditioning on coupled Gaussian mixtures\n\n`python benchmarks/"
                  f"conditioning.py {' '.join(sys.argv[1:])}`\n\n")
        (RESULTS / args.output).write_text(header + table + "\n")
    else:
        with torch.no_grad():
            run_digits(args)


if __name__ == "__main__":
    main()
