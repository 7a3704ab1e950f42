"""`--mode frontier`: the sampler frontier of a trained workdir (`evaluation.frontier`), written
as `frontier/frontier.json` (every number with its settings), `frontier/frontier.md` (a table)
and `frontier/frontier.png` (quality against NFE), logged to TensorBoard.

This is the builder of the frontier: the config becomes explicit settings here. The data metric
is the one `--mode eval` uses for the data set: `fd` (`evaluation.feature_fd`) for images below
32×32, FID (Inception) for larger images, and for vectors (the toy sets) the energy distance to
the test split (`energy_to_data`), beside the energy distance to the converged flow's samples.

Writes are atomic; finished cells are kept in `frontier/progress.pth` (keyed by the checkpoint
and every setting), so a killed or signalled run continues where it stopped. The old
`frontier.json` is removed before the new run's files are written and the new one is written
last: a `frontier.json` present always belongs with the `.md` and `.png` beside it (all three
name the run's digest).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Tuple


from data import build_dataset, build_transform, describe
from evaluation import feature_fd, frontier, frontier_report
from evaluation.fid import checked_inception
from evaluation.modes import build_guidance, fd_classifier_path, fid_metrics, network_options
from evaluation.sampling import sampling_model
from run.builders import data_shape
from run.distributed import DistInfo, single_process
from run.files import atomic_write, write_json
from run.loading import load_ema_model
from run.paths import WorkdirPaths
from run.preemption import Preempted
from run.progress import Progress, settings_digest, weights_digest
from run.stored_config import read_stored


@dataclass(frozen=True)
class FrontierSettings:
    """The `frontier` section: budgets, shared draws, seed and the converged flow's tolerances."""
    nfe: Tuple[int, ...]
    num_samples: int
    seed: int
    rtol: float
    atol: float
    batch_size: int

    @classmethod
    def from_config(cls, config) -> "FrontierSettings":
        section = frontier_section(config)
        budgets = section["nfe"] if isinstance(section["nfe"], (tuple, list)) else (section["nfe"],)
        return cls(tuple(sorted(int(b) for b in budgets)), int(section["num_samples"]),
                   int(section["seed"]), float(section["rtol"]), float(section["atol"]),
                   int(config.eval.batch_size))


def frontier_section(config) -> dict:
    """`config.frontier` over `evaluation.frontier.DEFAULTS` (configs stored before the section
    lack it)."""
    given = config.get("frontier", None)
    return {**frontier.DEFAULTS,
            **(given.to_dict() if hasattr(given, "to_dict") else dict(given or {}))}


def is_student(config, paths: WorkdirPaths) -> bool:
    """A consistency student: its stored config (else the run's) names a teacher
    (`distill.teacher`)."""
    stored = read_stored(paths.config) if paths.config.is_file() else {}
    distill = stored.get("distill") or config.get("distill", None) or {}
    return bool(distill.get("teacher", ""))


def fitted_schedules(paths: WorkdirPaths) -> List[frontier.FittedSchedule]:
    """The fitted schedules stored in the workdir (unreadable files are logged and left out)."""
    found = []
    for path in paths.fitted_schedule_files():
        try:
            stored = json.loads(path.read_text())
            found.append(frontier.FittedSchedule(
                str(stored["method"]), int(stored["nfe"]), tuple(float(t) for t in stored["times"]),
                str(stored.get("model_digest", "")), path.name, dict(stored.get("options", {}))))
        except (OSError, ValueError, KeyError, TypeError) as err:
            logging.warning("left out the fitted schedule %s: not readable (%s)", path, err)
    return found


def data_metric(config, paths: WorkdirPaths, device) -> Tuple[str, Callable, dict]:
    """(name, quality(x) -> {name: value, ...}, its record) of the data set's metric."""
    data, transform = config.data, build_transform(config.data)
    if not describe(data).is_image:
        test = transform(build_dataset(data, "test").data, train=False)
        return "energy_to_data", lambda x: {
            "energy_to_data": frontier.energy_distance(x, test)}, {
            "metric": "energy distance (Székely & Rizzo 2004) to the test split",
            "num_reference": len(test)}
    if feature_fd.applies(True, data.image_size):
        train, test = build_dataset(data, "train"), build_dataset(data, "test")
        record = {}

        def fd(x):
            metrics, made = feature_fd.fd_metrics(transform.to_uint8(x), train, test,
                                                  fd_classifier_path(paths, data), paths.root)
            record.update(made, fd_floor=metrics["fd_floor"])
            return {"fd": metrics["fd"]}
        return "fd", fd, record
    inception = checked_inception(config.eval.inception_path, device)
    stats = paths.fid_stats(data.dataset, data.image_size)
    return "fid", lambda x: {"fid": fid_metrics(
        inception, x, transform, stats, lambda: build_dataset(data, "train"),
        paths.root)["fid"]}, {"metric": "FID (Inception) against the training split"}


def run_frontier(config, workdir, dist_info: Optional[DistInfo] = None, stop=None) -> dict:
    """Measure every cell (`evaluation.frontier`), write the three files; returns the record."""
    info = dist_info or single_process()
    if info.world_size > 1:
        raise ValueError("--mode frontier runs in one process; launch it without torchrun")
    settings, paths = FrontierSettings.from_config(config), WorkdirPaths(workdir)
    model, sde, step = load_ema_model(config, paths, info.device)
    network, guidance = sampling_model(model, **network_options(config)), build_guidance(config,
                                                                                      model)
    digest = weights_digest(model)
    metric, quality, metric_record = data_metric(config, paths, info.device)
    fitted = fitted_schedules(paths)
    methods = frontier.fast_methods(is_student(config, paths))
    cells = frontier.plan(methods, settings.nfe, fitted, digest)
    x_T = frontier.prior_draw(sde, data_shape(config), settings.num_samples, settings.seed)
    key = {"checkpoint": {"step": step, "weights": digest}, "settings": asdict(settings),
           "network": network_options(config), "metric": metric,
           "cells": [(c.label, c.budget, c.schedule_file) for c in cells.cells],
           "fitted": [asdict(f) for f in fitted], "class_label": guidance.class_label,
           "guidance_scale": guidance.guidance_scale}
    done = Progress(paths.frontier / "progress.pth", key, ("records",), paths.root)

    def run(sampler):
        return frontier.run_sampler(sampler, lambda rows: guidance.score_fn(network, rows), sde,
                                    x_T, settings.batch_size, settings.seed, info.device, stop)

    if not done.done["records"]:
        reference = frontier.reference_sampler(settings.rtol, settings.atol)
        flow, nfe, seconds = run(reference)
        measured = quality(flow)    # (fd: fills metric_record, kept with the reference)
        done.append(records={"x": flow, "nfe": nfe, "seconds": seconds,
                             "options": reference.resolved(sde.N), **measured,
                             "metric_settings": dict(metric_record)})
    records = measure_cells(cells.cells, done, run, quality, metric, sde.N, stop)
    result = assemble(key, done.done["records"][0], records, cells.skipped, metric, settings)
    write_files(paths, result)
    done.finish()
    return result


def measure_cells(cells: List[frontier.Cell], done: Progress, run, quality, metric: str,
                  sde_steps: int, stop=None) -> List[dict]:
    """The record of every cell: kept ones from `done`, the others run (`run(sampler)`) and
    kept there; `stop` ends it between cells or within a sampler step (`Preempted`)."""
    flow = done.done["records"][0]["x"]
    finished = {(r["label"], r["budget"], r["schedule_file"]): r for r in done.done["records"][1:]}
    records = []
    for index, cell in enumerate(cells):
        record = finished.get((cell.label, cell.budget, cell.schedule_file))
        if record is None:
            if stop is not None and stop.should_stop():
                raise Preempted(f"{stop.requested} after {index} of {len(cells)} frontier "
                                f"cells, which are kept; rerun the same command to continue")
            logging.info("frontier: %s at NFE %d", cell.label, cell.budget)
            x, nfe, seconds = run(cell.sampler())
            record = cell_record(cell, x, nfe, seconds, flow, quality, metric, sde_steps)
            done.append(records=record)
        records.append(record)
    return records


def cell_record(cell: frontier.Cell, x, nfe: int, seconds: float, flow, quality, metric: str,
                sde_steps: int) -> dict:
    """One cell's numbers and the settings that made them (for vectors also the energy
    distance to the flow's samples)."""
    vectors = metric == "energy_to_data"
    if nfe > cell.budget:
        raise RuntimeError(f"{cell.label} spent {nfe} score evaluations, over its budget "
                           f"{cell.budget}")
    record = {"label": cell.label, "method": cell.method, "budget": cell.budget, "nfe": nfe,
              "schedule_file": cell.schedule_file, "options": cell.sampler().resolved(sde_steps),
              "seconds": round(seconds, 4), **frontier.measure(x, flow, quality, metric)}
    if vectors:
        record["energy_to_flow"] = frontier.energy_distance(x, flow) if record["finite"] \
            else None
    return record


def assemble(key: dict, head: dict, records: List[dict], skipped: List[dict], metric: str,
             settings: FrontierSettings) -> dict:
    """The record of frontier.json."""
    reference = {"method": frontier.REFERENCE, "nfe": head["nfe"],
                 "seconds": round(head["seconds"], 4), "options": head["options"],
                 metric: head[metric]}
    best = frontier.best_per_budget(records, metric)
    return {"digest": settings_digest(key), "checkpoint": key["checkpoint"],
            "settings": {**asdict(settings), "nfe": list(settings.nfe), **key["network"],
                         "class_label": key["class_label"],
                         "guidance_scale": key["guidance_scale"]},
            "metric": metric, "metric_settings": head["metric_settings"], "reference": reference,
            "cells": records, "skipped": skipped,
            "best": {str(budget): choice for budget, choice in best.items()}}


def write_files(paths: WorkdirPaths, record: dict) -> None:
    """The three files, frontier.json last (see the module docstring), and TensorBoard."""
    paths.frontier_json.unlink(missing_ok=True)    # a link there is removed, never followed
    png = frontier_report.write_png(paths.frontier_png, record, paths.root)
    text = frontier_report.table(record).encode()
    atomic_write(paths.frontier_md, lambda f: f.write(text), paths.root)
    write_json(paths.frontier_json, record, paths.root)
    frontier_report.log_frontier(paths.tensorboard, record, png)
