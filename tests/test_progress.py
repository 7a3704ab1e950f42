"""run.progress: finished batches resume only for the same key; digests of settings and weights."""
import torch

from run.progress import Progress, batches, settings_digest, weights_digest


def test_progress_resumes_for_its_key_only(tmp_path):
    path = tmp_path / "bpd_progress_0of1.pth"
    key = {"step": 4, "weights": "abc", "divergence": "exact", "batch_size": 10}
    done = Progress(path, key, ("bpd", "nfe"))
    done.append(bpd=torch.ones(3), nfe=12)
    done.append(bpd=torch.zeros(3), nfe=14)
    again = Progress(path, dict(key), ("bpd", "nfe"))
    assert len(again) == 2 and again.done["nfe"] == [12, 14]
    for change in ({"divergence": "rademacher"}, {"batch_size": 5}, {"weights": "abd"}):
        assert len(Progress(path, {**key, **change}, ("bpd", "nfe"))) == 0
    again.finish()
    assert not path.exists() and len(Progress(path, key, ("bpd", "nfe"))) == 0


def test_a_corrupt_progress_file_starts_afresh(tmp_path):
    path = tmp_path / "vlb_progress_0of1.pth"
    path.write_bytes(b"garbage")
    assert len(Progress(path, {"step": 1}, ("bpd",))) == 0


def test_digests_follow_the_content():
    assert settings_digest({"a": 1, "b": [1, 2]}) == settings_digest({"b": [1, 2], "a": 1})
    assert settings_digest({"a": 1}) != settings_digest({"a": 2})
    net = torch.nn.Linear(3, 2)
    first = weights_digest(net)
    with torch.no_grad():
        net.bias[0] += 1e-6
    assert weights_digest(net) != first


def test_batches_cover_every_example_once():
    assert batches(7, 3) == [(0, 3), (3, 6), (6, 7)]
