"""Tables and the plot of benchmarks/peers.py from its records (dicts with sde, method, budget,
error, nfe and, when timed, overhead and us_per_nfe)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Set


def fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def tables(records: List[dict], budgets: List[int]) -> str:
    """Markdown: per SDE, error (NFE where it differs) per budget, mean overhead and µs/NFE."""
    lines = []
    for sde_name in dict.fromkeys(r["sde"] for r in records):
        rows = [r for r in records if r["sde"] == sde_name]
        lines += [f"\n### {sde_name}: variance error at NFE budget", "",
                  "| method | " + " | ".join(str(b) for b in budgets) + " | overhead | µs/NFE |",
                  "|---|" + "---:|" * (len(budgets) + 2)]
        for method in dict.fromkeys(r["method"] for r in rows if r["budget"] is not None):
            cells, ratios, micro = [], [], []
            for budget in budgets:
                r = next(r for r in rows if r["method"] == method and r["budget"] == budget)
                cell = fmt(r["error"]) + ("" if r["nfe"] == budget else f" ({r['nfe']})")
                cells.append(cell if "failed" not in r["note"] else "failed")
                if "overhead" in r:
                    ratios.append(r["overhead"])
                    micro.append(r["us_per_nfe"])
            mean = (lambda v: sum(v) / len(v) if v else float("nan"))
            lines.append(f"| {method} | " + " | ".join(cells)
                         + f" | {fmt(mean(ratios))} | {fmt(mean(micro))} |")
        lines += ["", f"### {sde_name}: adaptive and reference", "",
                  "| method | NFE | error | overhead | µs/NFE | note |", "|---|---:|---:|---:|---:|---|"]
        for r in rows:
            if r["budget"] is None:
                lines.append(f"| {r['method']} | {r['nfe']} | {fmt(r['error'])} | "
                             f"{fmt(r.get('overhead'))} | {fmt(r.get('us_per_nfe'))} | {r['note']} |")
    return "\n".join(lines)


def best_by_budget(records: List[dict], budgets: List[int], names: Set[str]) -> str:
    """The best method of `names` (the project's) and the best other one (a peer), per SDE and
    budget (lowest error)."""
    lines = ["", "### best project method vs best peer", "",
             "| sde | NFE | project | error | peer | error | peer / project |",
             "|---|---:|---|---:|---|---:|---:|"]
    for sde_name in dict.fromkeys(r["sde"] for r in records):
        for budget in budgets:
            rows = [r for r in records if r["sde"] == sde_name and r["budget"] == budget
                    and math.isfinite(r["error"])]
            mine = [r for r in rows if r["method"] in names]
            peers = [r for r in rows if r["method"] not in names]
            if not mine or not peers:
                continue
            a, b = min(mine, key=lambda r: r["error"]), min(peers, key=lambda r: r["error"])
            lines.append(f"| {sde_name} | {budget} | {a['method']} | {fmt(a['error'])} | "
                         f"{b['method']} | {fmt(b['error'])} | {b['error'] / a['error']:.2f} |")
    return "\n".join(lines)


def plot(records: List[dict], path: Path, names: Set[str]) -> None:
    """Error against NFE per SDE: the methods of `names` (the project's) solid, peers dashed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("skipping the plot: matplotlib is not installed")
        return
    sde_names = list(dict.fromkeys(r["sde"] for r in records))
    fig, axes = plt.subplots(1, len(sde_names), figsize=(5 * len(sde_names), 4), squeeze=False)
    for ax, sde_name in zip(axes[0], sde_names):
        rows = [r for r in records if r["sde"] == sde_name and r["budget"] is not None]
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["nfe"], r["error"]) for r in rows
                         if r["method"] == method and math.isfinite(r["error"]))
            if pts:
                ax.plot(*zip(*pts), "-o" if method in names else "--x", label=method, ms=3)
        floor = next(r["error"] for r in records if r["sde"] == sde_name and r["nfe"] == 0)
        ax.axhline(floor, color="k", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", title=sde_name, xlabel="NFE",
               ylabel="per-component variance error")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
