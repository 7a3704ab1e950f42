"""The bits/dim bar counts examples and shows the score evaluations of the batch in flight."""
import re

from configs.toy_gmm import get_config as toy_config
from data import build_dataset, build_transform
from evaluation.likelihood import KEYS, BpdSettings, evaluate_bpd
from run.builders import build_score_model, build_sde
from run.progress import Progress


def test_bar_counts_examples(tmp_path, capsys):
    config = toy_config()
    config.data.num_test = 10
    model = build_score_model(config, build_sde(config))
    settings = BpdSettings(split="test", num_examples=10, batch_size=4, repeats=2, eps=1e-3,
                           rtol=1e-2, atol=1e-2, divergence="exact")
    done = Progress(tmp_path / "progress.pth", {"k": 1}, KEYS)
    metrics = evaluate_bpd(model, model.sde, build_dataset(config.data, "test"),
                           build_transform(config.data), settings, done)
    assert metrics["num_evaluations"] == 20 and len(done.done["nfe"]) == 6
    err = capsys.readouterr().err
    assert "bpd: 100%" in err and "20/20" in err and "example" in err
    # Within a batch: the network's forward passes so far (4 examples, then 8, ...).
    assert re.search(r" 4/20 .*\d+ score evaluations in this batch", err), err
