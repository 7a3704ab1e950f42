"""TensorBoard event files that never end a run: a failing write warns, reopens the writer and
training goes on (a full disk or a removed folder costs scalars, not the run)."""
from __future__ import annotations

import logging
from pathlib import Path


class SafeWriter:
    """`SummaryWriter.add_scalar` / `close` for `log_dir`, failures turned into warnings."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self._writer = None
        self.failures = 0
        self._open()

    def _open(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter   # 0.3 s of imports: only if used
            self._writer = SummaryWriter(str(self.log_dir))
        except Exception as err:  # noqa: BLE001 — logging must not end the run
            self._fail("open", err)

    def _fail(self, what: str, err: Exception) -> None:
        self.failures += 1
        self._writer = None
        logging.warning("TensorBoard %s failed in %s (%s); training goes on, the writer is "
                        "reopened at the next scalar", what, self.log_dir, err)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is None:
            self._open()
            if self._writer is None:
                return
        try:
            self._writer.add_scalar(tag, value, step)
        except Exception as err:  # noqa: BLE001
            self._fail("write", err)

    def add_image(self, tag: str, image, step: int) -> None:
        """An HWC uint8 picture (a sample grid or a scatter plot)."""
        if self._writer is None:
            self._open()
            if self._writer is None:
                return
        try:
            self._writer.add_image(tag, image, step, dataformats="HWC")
        except Exception as err:  # noqa: BLE001
            self._fail("write", err)

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as err:  # noqa: BLE001
                self._fail("close", err)


class NullWriter:
    """Stands in for the writer on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def add_image(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
