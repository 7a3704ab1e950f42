"""The frontier's report: a Markdown table, a plot of quality against NFE (one line per method,
log axes), TensorBoard scalars and the best method per budget, all from the record that
`frontier/frontier.json` holds (`evaluation.frontier_mode`)."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import List, Optional

from run.files import atomic_write
from run.tensorboard import SafeWriter


def _number(value) -> str:
    return "diverged" if value is None else ("inf" if math.isinf(value) else f"{value:.4g}")


def table(record: dict) -> str:
    """`frontier.md`: one row per method, one column per budget, each cell "metric / RMS"."""
    metric, budgets = record["metric"], record["settings"]["nfe"]
    by_cell = {(c["label"], c["budget"]): c for c in record["cells"]}
    labels = sorted({c["label"] for c in record["cells"]} | {s["label"] for s in record["skipped"]})
    floor = record["metric_settings"].get(f"{metric}_floor")
    lines = [f"# Sampler frontier (checkpoint step {record['checkpoint']['step']}, run "
             f"{record['digest']})", "",
             f"Each cell: {metric} against the data / RMS distance to the converged flow "
             f"({record['reference']['method']} at rtol={record['settings']['rtol']:g}, "
             f"atol={record['settings']['atol']:g}; its own {metric}: "
             f"{_number(record['reference'][metric])}"
             + (f"; the floor of exact data at this sample size: {_number(floor)}"
                if floor is not None else "") + "), from the same "
             f"{record['settings']['num_samples']} draws x_T; — where a method cannot run "
             f"at that budget (see frontier.json's `skipped`).", "",
             "| method | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for label in labels:
        row = []
        for budget in budgets:
            cell = by_cell.get((label, budget))
            row.append("—" if cell is None else
                       f"{_number(cell[metric])} / {_number(cell['rms_to_flow'])}")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "Best per budget (by the data metric; by the distance to the flow):", ""]
    lines += best_lines(record)
    return "\n".join(lines) + "\n"


def best_lines(record: dict) -> List[str]:
    """One line per budget: the best method by the data metric and by the distance to the flow
    (the lines the frontier mode prints)."""
    metric, by_cell = record["metric"], {(c["label"], c["budget"]): c for c in record["cells"]}
    lines = []
    for budget, best in record["best"].items():
        data, flow = by_cell[(best["by_data"], int(budget))], by_cell[(best["by_flow"],
                                                                        int(budget))]
        lines.append(f"NFE {budget}: best {best['by_data']} ({metric} {_number(data[metric])}); "
                     f"closest to the flow {best['by_flow']} (RMS "
                     f"{_number(flow['rms_to_flow'])})")
    return lines


def plot_png(record: dict) -> bytes:
    """`frontier.png`: the data metric and the RMS distance to the flow against the NFE spent,
    one line per method, log axes (matplotlib's Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    metric = record["metric"]
    for axes, key, title in zip(figure.subplots(1, 2), (metric, "rms_to_flow"),
                                (f"{metric} against the data", "RMS to the converged flow")):
        for index, label in enumerate(sorted({c["label"] for c in record["cells"]})):
            points = sorted((c["nfe"], c[key]) for c in record["cells"] if c["label"] == label
                            and c[key] is not None and math.isfinite(c[key]) and c[key] > 0)
            if points:   # 10 colours, then the same colours dashed, then dotted
                axes.plot(*zip(*points), marker="os^"[index // 10 % 3], label=label,
                          ls=("-", "--", ":")[index // 10 % 3], color=f"C{index % 10}")
        if key == metric and record["reference"].get(metric, 0) > 0:
            axes.axhline(record["reference"][metric], color="k", ls="--",
                         label=f"converged flow ({record['reference']['nfe']} NFE)")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(record["settings"]["nfe"], [str(b) for b in record["settings"]["nfe"]])
        axes.minorticks_off()
        axes.set_xlabel("score evaluations (NFE)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    figure.axes[0].legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_png(path: Path, record: dict, root: Optional[Path]) -> Path:
    png = plot_png(record)
    return atomic_write(path, lambda f: f.write(png), root)


def log_frontier(tensorboard_dir: Path, record: dict, png: Path) -> None:
    """TensorBoard: `frontier/<method>/<metric>` at step = the NFE spent (a curve per method),
    and the plot as the image `frontier` at the checkpoint's step."""
    import numpy as np
    from PIL import Image

    writer = SafeWriter(tensorboard_dir)
    try:
        for cell in record["cells"]:
            for key in (record["metric"], "rms_to_flow"):
                if cell[key] is not None and math.isfinite(cell[key]):
                    writer.add_scalar(f"frontier/{cell['label']}/{key}", cell[key], cell["nfe"])
        with Image.open(png) as picture:
            writer.add_image("frontier", np.asarray(picture.convert("RGB")),
                             record["checkpoint"]["step"])
    finally:
        writer.close()
