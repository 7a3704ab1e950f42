"""Sample quality against the number of score evaluations, for every sampler on VP, sub-VP and VE.

    python benchmarks/quality_vs_nfe.py [--num-samples 2000] [--nfe 10 20 50 100 1000]
        [--sdes vp subvp ve] [--out-dir benchmarks/results] [--threads 1] [--no-overhead]

Ground truth: the 16-D, 3-component Gaussian mixture of the sampler tests (`tests/two_sample.py`)
with its exact score, so every error below is the sampler's. Each run draws `--num-samples`
samples of p_eps (eps = 1e-3, no final denoising) and reports
- E(x): the energy distance (Székely & Rizzo 2004; `tests/two_sample.energy_test`) to as many
  exact samples of p_eps (global structure: mode weights and places);
- E(log p): the energy distance between the exact log-densities log p_eps of both sets (local
  structure: blur and scale errors, which E(x) misses at this size; as in the sampler tests);
- log p: the mean exact log-density of the samples (nats);
each averaged over `--repeats` runs with different seeds and reference sets, beside its null
level: the same metric for exact samples against exact samples (mean ± sd, `--null-reps` pairs).
Fixed-step samplers run at each NFE of `--nfe` (Heun at NFE = 2N − 2, PC at 2 per step); the
adaptive SDE solver runs at several `reltol` and is placed at its mean evaluations per sample.
Overhead: wall / (NFE × unit) as in `benchmarks/samplers.py`: its exact
1×8×8 image-mixture score plus a small conv net, timed inside the run; batch 64, 100 NFE.
Writes `quality_vs_nfe.md`, `.json` and `.png` under `--out-dir`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sde_lib  # noqa: E402
from samplers import sample  # noqa: E402
from two_sample import EPS, MIXTURE_16D, energy_test, exact_samples  # noqa: E402

SDES = {"vp": sde_lib.VPSDE, "subvp": sde_lib.subVPSDE, "ve": sde_lib.VESDE,
        "vp_cosine": lambda: sde_lib.VPSDE(schedule="cosine")}
# label -> (method, options for a given NFE, or None where that NFE cannot be met exactly)
FIXED_STEP = {
    "euler_maruyama": ("euler_maruyama", lambda n: dict(num_steps=n)),
    "ancestral": ("ancestral", lambda n: dict(num_steps=n)),
    "pc (rd + langevin)": ("pc", lambda n: dict(num_steps=n // 2) if n % 2 == 0 else None),
    "ddim": ("ddim", lambda n: dict(num_steps=n)),
    "ddim eta=1": ("ddim", lambda n: dict(num_steps=n, eta=1.0)),
    "heun": ("heun", lambda n: dict(num_steps=n // 2) if n % 2 == 0 else None),
    "dpm_solver-1": ("dpm_solver", lambda n: dict(num_steps=n, order=1)),
    "dpm_solver-2": ("dpm_solver", lambda n: dict(num_steps=n, order=2)),
    "dpm_solver-3": ("dpm_solver", lambda n: dict(num_steps=n, order=3)),
}
RELTOLS = (0.2, 0.1, 0.05, 0.02, 0.01)


def exact_set(sde, n: int, seed: int) -> torch.Tensor:
    return exact_samples(MIXTURE_16D, sde, EPS, n, torch.Generator().manual_seed(seed))


def energy(x: torch.Tensor, y: torch.Tensor) -> float:
    return energy_test(x, y, num_permutations=0)[0]


METRICS = ("E(x)", "E(log p)", "log p")   # what `quality` returns, in this order


def log_density(x: torch.Tensor, sde) -> torch.Tensor:
    """Exact log p_eps(x) `[n, 1]` (nats), for the energy distance between log-densities."""
    return MIXTURE_16D.log_prob(x.to(torch.float64), EPS, sde)[:, None]


def quality(x, sde, reference):
    """(E on x, E on log p_eps(x), mean log p_eps(x)) of samples `x` against exact `reference`."""
    x, log_p = x.to(torch.float64), log_density(x, sde)
    return energy(x, reference), energy(log_p, log_density(reference, sde)), log_p.mean().item()


def mean_quality(values):
    """Average each metric over repeats."""
    return tuple(statistics.mean(v) for v in zip(*values))


def null_level(sde, n, reps):
    """`quality` of exact sets against independent exact sets: mean and sd of each metric."""
    values = [quality(exact_set(sde, n, 30_000 + 2 * r), sde, exact_set(sde, n, 30_001 + 2 * r))
              for r in range(reps)]
    return [(statistics.mean(v), statistics.stdev(v)) for v in zip(*values)]


def run_fixed(sde, references, n, nfes, seed):
    """(E, log p) per sampler and NFE, averaged over one run per reference set (seeds differ)."""
    rows = {}
    for label, (method, options) in FIXED_STEP.items():
        rows[label] = {}
        for nfe in (nfe for nfe in nfes if options(nfe) is not None):
            values = []
            for r, reference in enumerate(references):
                result = sample(MIXTURE_16D.score_fn(sde), sde, (n, 16), method, denoise=False,
                                generator=torch.Generator().manual_seed(seed + r), **options(nfe))
                assert result.nfe == nfe, (label, nfe, result.nfe)
                values.append(quality(result.x, sde, reference))
            rows[label][nfe] = mean_quality(values)
    return rows


def run_adaptive(sde, references, n, seed):
    rows = []
    for reltol in RELTOLS:
        values, nfe, calls, syncs = [], [], [], []
        for r, reference in enumerate(references):
            result = sample(MIXTURE_16D.score_fn(sde), sde, (n, 16), "adaptive_sde", rtol=reltol,
                            denoise=False, generator=torch.Generator().manual_seed(seed + r))
            stats = result.info
            values.append(quality(result.x, sde, reference))
            nfe.append(stats["nfe_per_sample"].double().mean().item())
            calls.append(result.nfe)
            syncs.append(stats["syncs"])
        rows.append(dict(reltol=reltol, nfe=statistics.mean(nfe), calls=statistics.mean(calls),
                         syncs=statistics.mean(syncs), quality=mean_quality(values)))
    return rows


def _samplers_benchmark():
    """`benchmarks/samplers.py` (its module name clashes with the `samplers` package, hence the
    import by path), for its timed score and overhead definition."""
    path = ROOT / "benchmarks" / "samplers.py"
    spec = importlib.util.spec_from_file_location("benchmark_samplers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overhead(sde, nfe=100, batch=64, repeats=5):
    """Overhead ratio wall / (NFE × unit) per fixed-step sampler, as in `benchmarks/samplers.py`.

    The score is its exact 1×8×8 image-mixture score plus `ConvScoreNet` (zero output layer), the
    unit the mean time of one evaluation timed inside the same run; median of `repeats` runs.
    """
    bench = _samplers_benchmark()
    torch.set_flush_denormal(True)   # as there: denormals would slow the net at VE's large σ
    mixture, net = bench.image_mixture(), bench.ConvScoreNet().eval()
    ratios = {label: [] for label in FIXED_STEP}
    with torch.no_grad():
        for _ in range(repeats):
            for label, (method, options) in FIXED_STEP.items():
                score_fn = bench.Timed(bench.timed_score(mixture, sde, net))
                start = time.perf_counter()
                result = sample(score_fn, sde, (batch,) + bench.IMAGE, method, denoise=False,
                                generator=torch.Generator().manual_seed(0), **options(nfe))
                wall = time.perf_counter() - start
                ratios[label].append(wall / (result.nfe * score_fn.unit()))
    return {label: statistics.median(values) for label, values in ratios.items()}


def _cell(values) -> str:
    return f"{values[0]:.4f} · {values[1]:.4f} · {values[2]:.2f}"


def markdown(results, nfes) -> str:
    lines = []
    for name, res in results.items():
        (ex, ex_sd), (elp, elp_sd), (log_p, _) = res["null"]
        lines += [f"\n### {name}: E(x) · E(log p) · mean log p, means of {res['repeats']} runs\n",
                  f"Exact vs exact: E(x) {ex:.4f} ± {ex_sd:.4f} · E(log p) {elp:.4f} ± {elp_sd:.4f}"
                  f" · log p {log_p:.2f}\n",
                  "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " | overhead |",
                  "|---" * (len(nfes) + 2) + "|"]
        for label, row in res["fixed"].items():
            cells = [_cell(row[n]) if n in row else "–" for n in nfes]
            ratio = res.get("overhead", {}).get(label)
            cells.append(f"{ratio:.3f}" if ratio else "–")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "| adaptive_sde reltol | NFE / sample | calls | syncs | "
                      "E(x) · E(log p) · log p |", "|---|---|---|---|---|"]
        for row in res["adaptive"]:
            cells = (row["reltol"], f"{row['nfe']:.0f}", f"{row['calls']:.0f}",
                     f"{row['syncs']:.0f}", _cell(row["quality"]))
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines += targets(res)
    return "\n".join(lines)


def targets(res) -> list:
    """The targets. A run "reaches" EM-1000 on a distance when it is not above EM-1000's by
    more than 2 standard errors of a difference of two means of `repeats` values (2·sd·√(2/R));
    reported for E(x) alone (the two-sample distance) and for E(x) and E(log p) together."""
    fixed, null = res["fixed"], res["null"]
    em = fixed["euler_maruyama"].get(1000)
    if em is None:
        return []
    bars = [em[k] + 2 * null[k][1] * (2 / res["repeats"]) ** 0.5 for k in (0, 1)]
    criteria = {"E(x)": lambda v: v[0] <= bars[0],
                "E(x) and E(log p)": lambda v: v[0] <= bars[0] and v[1] <= bars[1]}
    lines = [f"\nEM-1000: {_cell(em)}; reaching it: E(x) ≤ {bars[0]:.4f}, "
             f"E(log p) ≤ {bars[1]:.4f}."]
    for name, reaches in criteria.items():
        firsts = []
        for label in ("dpm_solver-2", "dpm_solver-3"):
            first = next((n for n in sorted(fixed[label]) if reaches(fixed[label][n])), None)
            firsts.append(f"{label} at NFE {first}")
        reached = [row for row in res["adaptive"] if reaches(row["quality"])]
        best = min(reached, key=lambda row: row["nfe"]) if reached else None
        adaptive = (f"adaptive_sde at {best['nfe']:.0f}/sample = {best['nfe'] / 1000:.2f} of EM's "
                    f"(reltol {best['reltol']})" if best else
                    "adaptive_sde: not at the tolerances run")
        lines.append(f"- by {name}, first reaching it: " + ", ".join(firsts) + f"; {adaptive}")
    if "overhead" in res:
        label, ratio = max(res["overhead"].items(), key=lambda item: item[1])
        lines.append(f"- largest fixed-step overhead ratio: {ratio:.3f} ({label})")
    return lines


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ylabels = ("energy distance E(x)", "energy distance E(log p_eps(x))",
               "mean log p_eps(x) (nats)")
    fig, axes = plt.subplots(3, len(results), figsize=(5 * len(results), 11), squeeze=False)
    for col, (name, res) in enumerate(results.items()):
        for index, ylabel in enumerate(ylabels):
            ax = axes[index][col]
            for label, values in res["fixed"].items():
                nfe, metrics = zip(*sorted(values.items()))
                ax.plot(nfe, [m[index] for m in metrics], marker="o", ms=3, label=label)
            adaptive = sorted(res["adaptive"], key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in adaptive], [r["quality"][index] for r in adaptive], "k--s",
                    ms=4, label="adaptive_sde (mean NFE)")
            mean, sd = res["null"][index]
            ax.axhline(mean, color="grey", lw=1, label="exact vs exact (mean, + 2 sd)")
            if index < 2:
                ax.axhline(mean + 2 * sd, color="grey", lw=1, ls=":")
                ax.set_yscale("log")
            else:
                ax.set_ylim(mean - 3, mean + 2)
            ax.set_xscale("log")
            ax.set_xlabel("NFE (score evaluations per sample)")
            ax.set_ylabel(ylabel)
            ax.set_title(name)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--sdes", nargs="+", default=["vp", "subvp", "ve"], choices=sorted(SDES))
    parser.add_argument("--repeats", type=int, default=3, help="runs (seeds) averaged per entry")
    parser.add_argument("--null-reps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.sdes:
        sde = SDES[name]()
        references = [exact_set(sde, args.num_samples, 10_000 + r) for r in range(args.repeats)]
        results[name] = dict(
            repeats=args.repeats, null=null_level(sde, args.num_samples, args.null_reps),
            fixed=run_fixed(sde, references, args.num_samples, args.nfe, args.seed),
            adaptive=run_adaptive(sde, references, args.num_samples, args.seed))
        if not args.no_overhead:
            results[name]["overhead"] = overhead(sde)
        print(f"{name} done", file=sys.stderr, flush=True)
    table = markdown(results, args.nfe)
    print(table)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "quality_vs_nfe.md").write_text(table + "\n")
    plot(results, args.out_dir / "quality_vs_nfe.png")
    for res in results.values():   # JSON keys must be strings
        res["fixed"] = {label: {str(n): v for n, v in row.items()}
                        for label, row in res["fixed"].items()}
    (args.out_dir / "quality_vs_nfe.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out_dir / 'quality_vs_nfe.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
