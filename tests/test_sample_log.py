"""A sample run's grid, NFE and wall time in TensorBoard."""
import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evaluation.sample_log import log_sample_run


def test_grid_and_scalars_under_the_run_folder(tmp_path):
    folder = tmp_path / "samples" / "step_7_dpm_solver_abc123"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(folder / "samples.png")
    tag = log_sample_run(tmp_path / "tensorboard", folder / "samples.png", 42, 1.5, step=7)
    assert tag == "sample/step_7_dpm_solver_abc123"
    events, = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    image, = accumulator.Images(tag)
    assert (image.step, image.width, image.height) == (7, 12, 10)
    assert [(e.step, e.value) for e in accumulator.Scalars(f"{tag}/nfe")] == [(7, 42.0)]
    assert [e.value for e in accumulator.Scalars(f"{tag}/wall_seconds")] == [1.5]
