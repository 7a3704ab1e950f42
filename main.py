"""score-sde command line.

    python main.py --config configs/vp_digits.py --workdir runs/digits --mode train
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode eval
    python main.py --config configs/vp_digits.py --workdir runs/digits --mode sample \
        --config.sampling.method=ode

Every config field can be overridden as --config.<section>.<field>=value.
"""
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples, eval results and logs.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
flags.DEFINE_string("eval_folder", "eval", "Sub-directory of workdir for eval results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    from evaluation.fid import InceptionError
    from training.checkpoint import CheckpointError
    from training.datasets import DatasetError

    logging.getLogger().setLevel(logging.INFO)
    try:
        if FLAGS.mode == "train":
            from training.train import train
            train(FLAGS.config, FLAGS.workdir)
        elif FLAGS.mode == "eval":
            from evaluation.run import run_eval
            metrics = run_eval(FLAGS.config, FLAGS.workdir, FLAGS.eval_folder)
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in metrics.items()))
        else:
            from evaluation.run import run_sample
            print(f"samples written to {run_sample(FLAGS.config, FLAGS.workdir)}")
    except (ValueError, DatasetError, CheckpointError, InceptionError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
