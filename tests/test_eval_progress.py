"""The bits/dim bar counts examples and shows the score evaluations of the batch in flight."""
import re

from configs.toy_gmm import get_config as toy_config
from data import build_dataset, build_transform
from evaluation.likelihood import KEYS, BpdSettings, ExampleProgress, evaluate_bpd
from run.builders import build_score_model, build_sde
from run.progress import Progress


def test_bar_counts_examples(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ExampleProgress, "refresh_seconds", 0.0)
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


def test_the_count_is_redrawn_at_most_once_a_second(tmp_path, capsys):
    """A pipe nobody reads (a parent waiting on the process) must not fill up."""
    config = toy_config()
    config.data.num_test = 4
    model = build_score_model(config, build_sde(config))
    settings = BpdSettings(split="test", num_examples=4, batch_size=4, repeats=1, eps=1e-3,
                           rtol=1e-5, atol=1e-5, divergence="exact")
    metrics = evaluate_bpd(model, model.sde, build_dataset(config.data, "test"),
                           build_transform(config.data), settings,
                           Progress(tmp_path / "p.pth", {"k": 1}, KEYS))
    err = capsys.readouterr().err
    assert metrics["nfe_mean"] > 50 and err.count("score evaluations") <= 5, err
