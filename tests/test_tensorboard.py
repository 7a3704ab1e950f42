"""run.tensorboard: a failing event writer warns and reopens; the run goes on."""
import logging

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from run.tensorboard import SafeWriter


class _Broken:
    def add_scalar(self, *args):
        raise OSError(28, "No space left on device")

    def close(self):
        raise OSError(28, "No space left on device")


def test_write_failures_warn_and_the_writer_is_reopened(tmp_path, caplog):
    writer = SafeWriter(tmp_path / "tb")
    writer.add_scalar("train/loss", 1.0, 1)
    writer._writer.close()
    writer._writer = _Broken()                   # the disk fills up
    with caplog.at_level(logging.WARNING):
        writer.add_scalar("train/loss", 2.0, 2)  # lost, with a warning
        writer.add_scalar("train/loss", 3.0, 3)  # reopened: written again
    writer.close()
    assert writer.failures == 1 and "training goes on" in caplog.text
    steps = set()
    for events in (tmp_path / "tb").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        steps |= {e.step for e in accumulator.Scalars("train/loss")}
    assert steps == {1, 3}


def test_an_unwritable_folder_is_not_fatal(tmp_path, caplog):
    blocker = tmp_path / "tb"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        writer = SafeWriter(blocker)
        writer.add_scalar("train/loss", 1.0, 1)
        writer.close()
    assert writer.failures >= 1
