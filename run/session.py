"""Opening a workdir for one run; every entry point (each mode of `main.py`, the converter)
enters it before any side effect. In this order:

1. resolve the workdir (`~` expanded once) and every output folder, `--eval_folder` included,
   refusing one that leads out of the workdir (`run.workdir.resolve_workdir`; touches nothing);
2. take the lock (rank 0), never through a link (`run.lock`);
3. only then sweep the stale temporaries of killed runs, never through a link;
4. compare the config with the stored one (a `config=None` session, the converter's, skips it).

    with open_workdir(config, workdir, mode, info, eval_folder) as session:
        train(config, session.paths.root, info, stop=session.stop)

Every refusal is raised before any work starts: `WorkdirLocked`, `ConfigMismatch`,
`OutsideWorkdirError` (bad input, exit 2).
"""
from __future__ import annotations

import logging
from typing import Optional

from run.builders import build_sde, stored_config
from run.checkpoint import load_latest
from run.distributed import DistInfo, all_gather_objects
from run.files import write_json
from run.lock import WorkdirLock, WorkdirLocked
from run.preemption import StopRequest
from run.stored_config import check_matches, read_stored
from run.workdir import resolve_workdir, sweep_temporaries

# Modes whose first run defines the workdir's model (and writes config.json).
DEFINING_MODES = ("train", "eval", "sample", "distill")


class Session:
    """A run's hold on its workdir: `paths`, `stop` (the signal flag), and the lock (rank 0)."""

    def __init__(self, config, workdir, mode: str, info: DistInfo, eval_folder: str = "eval"):
        self.config, self.mode, self.info = config, mode, info
        self.paths = resolve_workdir(workdir, eval_folder)
        self.stop = StopRequest()
        self._lock: Optional[WorkdirLock] = None

    def __enter__(self) -> "Session":
        self._acquire()
        try:
            if self.config is not None:
                self._check_config()
        except BaseException:
            self._release()
            raise
        self.stop.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.__exit__(*exc)
        self._release()

    def _acquire(self) -> None:
        """Rank 0 takes the lock for the job; every rank learns whether it could."""
        refusal = None
        if self.info.is_main:
            try:
                self._lock = WorkdirLock(self.paths.root, self.mode).acquire()
                if self._lock.taken_over:
                    logging.warning("took over the lock of %s, which ended without releasing it",
                                    self._lock.taken_over)
                sweep_temporaries(self.paths)
            except WorkdirLocked as err:
                refusal = str(err)
        refusals = [r for r in all_gather_objects(self.info, refusal) if r]
        if refusals:
            raise WorkdirLocked(refusals[0])

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_config(self) -> None:
        """Compare the model-defining fields with config.json (else the latest checkpoint's);
        rank 0 writes config.json when the workdir has none and this mode defines it."""
        current = stored_config(self.config, build_sde(self.config))
        where, stored = self._stored()
        defines_model = self.mode != "train_classifier"
        check_matches(current, stored, where, model=defines_model)
        if (self.info.is_main and self.mode in DEFINING_MODES
                and not self.paths.config.exists()
                and (self.mode in ("train", "distill") or stored is not None)):
            write_json(self.paths.config, current, root=self.paths.root)

    def _stored(self):
        """(where, stored config) of the workdir: config.json, else the latest checkpoint's."""
        if self.paths.config.exists():
            return str(self.paths.config), read_stored(self.paths.config)
        latest = load_latest(self.paths)
        if latest is not None and isinstance(latest[1].get("config"), dict):
            return f"checkpoint {latest[0]}", latest[1]["config"]
        return "", None


def open_workdir(config, workdir, mode: str, info: DistInfo, eval_folder: str = "eval"
                 ) -> Session:
    """The `Session` context of one run (see the module docstring); the workdir and its output
    folders are resolved and checked here, before the context is entered."""
    return Session(config, workdir, mode, info, eval_folder)
