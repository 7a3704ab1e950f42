"""One map of every path in a workdir; nothing else in the project spells a workdir path.

    config.json                       the resolved config of the run that first used the workdir
    .lock                             held by the run using the workdir (`run.lock`)
    checkpoints/checkpoint_<step>.pth snapshots every `snapshot_freq` steps (older runs: <k>)
    checkpoints-meta/checkpoint.pth   the preemption checkpoint training resumes from
    tensorboard/                      training's event files
    samples/iter_<step>/              snapshot samples written during training
    samples/<run>/                    `--mode sample` runs (with per-batch progress while running)
    <eval>/metrics.json               `--mode eval` results (folder `eval` unless --eval_folder)
    <eval>/<name>_progress_<r>of<w>.pth   resumable per-rank progress of an evaluation
    <eval>/samples_<step>/            eval-time samples; <eval>/fid_stats_<set>_<size>.npz
    classifier/checkpoint.pth, classifier/metrics.json, classifier/tensorboard/
    schedules/<method>_nfe<nfe>.json  learned step times of a solver (`--mode fit_steps`)
    frontier/frontier.json, .md, .png  `--mode frontier` (and its progress while running)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from data.index_cache import INDEX_FOLDER

PathLike = Union[str, Path]


@dataclass(frozen=True)
class WorkdirPaths:
    """The paths of workdir `root`; `eval_folder` names the eval results' sub-folder."""
    root: Path
    eval_folder: str = "eval"

    def __init__(self, root: PathLike, eval_folder: str = "eval"):
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "eval_folder", eval_folder)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def output_folders(self):
        """The folders runs write into (checked against symbolic links leading out)."""
        return (self.checkpoints, self.checkpoints_meta, self.tensorboard, self.samples,
                self.eval, self.classifier, self.data_index, self.schedules, self.frontier)

    @property
    def data_index(self) -> Path:
        """The index of a streamed data set (names, labels, image sizes), keyed by its listing."""
        return self.root / INDEX_FOLDER

    # --- training ---------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def snapshot(self, step: int) -> Path:
        return self.checkpoints / f"checkpoint_{step}.pth"

    @property
    def checkpoints_meta(self) -> Path:
        return self.root / "checkpoints-meta"

    @property
    def preemption(self) -> Path:
        return self.checkpoints_meta / "checkpoint.pth"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def snapshot_samples(self, step: int) -> Path:
        return self.samples / f"iter_{step}"

    def sample_run(self, name: str) -> Path:
        return self.samples / name

    def snapshot_steps(self):
        """(number, path) of every snapshot file, newest (largest number) first."""
        found = []
        for path in self.checkpoints.glob("checkpoint_*.pth"):
            index = path.stem[len("checkpoint_"):]
            if index.isdigit():
                found.append((int(index), path))
        return sorted(found, reverse=True)

    # --- evaluation -------------------------------------------------------------------------
    @property
    def eval(self) -> Path:
        return self.root / self.eval_folder

    @property
    def metrics(self) -> Path:
        return self.eval / "metrics.json"

    def progress(self, name: str, rank: int, world_size: int) -> Path:
        return self.eval / f"{name}_progress_{rank}of{world_size}.pth"

    def eval_samples(self, step: int) -> Path:
        return self.eval / f"samples_{step}"

    def fid_stats(self, dataset: str, image_size: int) -> Path:
        return self.eval / f"fid_stats_{dataset}_{image_size}.npz"

    # --- learned step placement -------------------------------------------------------------
    @property
    def schedules(self) -> Path:
        return self.root / "schedules"

    def fitted_schedule(self, method: str, nfe: int) -> Path:
        """The learned times of sampling method `method` at a budget of `nfe` evaluations."""
        return self.schedules / f"{method}_nfe{nfe}.json"

    # --- the guidance classifier ------------------------------------------------------------
    @property
    def classifier(self) -> Path:
        return self.root / "classifier"

    @property
    def classifier_checkpoint(self) -> Path:
        return self.classifier / "checkpoint.pth"

    @property
    def classifier_metrics(self) -> Path:
        return self.classifier / "metrics.json"

    @property
    def classifier_tensorboard(self) -> Path:
        return self.classifier / "tensorboard"


    # --- the sampler frontier -----------------------------------------------------------------
    @property
    def frontier(self) -> Path:
        return self.root / "frontier"

    @property
    def frontier_json(self) -> Path:
        return self.frontier / "frontier.json"

    @property
    def frontier_md(self) -> Path:
        return self.frontier / "frontier.md"

    @property
    def frontier_png(self) -> Path:
        return self.frontier / "frontier.png"

    def fitted_schedule_files(self):
        """The stored fitted schedules, `schedules/<method>_nfe<nfe>.json`."""
        return sorted(self.schedules.glob("*_nfe*.json"))


def workdir_paths(workdir: Union[PathLike, WorkdirPaths]) -> WorkdirPaths:
    """`workdir` as a `WorkdirPaths` (itself if it already is one)."""
    return workdir if isinstance(workdir, WorkdirPaths) else WorkdirPaths(workdir)
