"""evaluation.fid: the Fréchet distance on known Gaussians, IS bounds, and the network loader."""
import numpy as np
import pytest
import torch

from evaluation.fid import (InceptionError, feature_statistics, frechet_distance, inception_outputs,
                            inception_score, load_inception)


def test_frechet_distance_of_commuting_gaussians():
    """For covariances with shared eigenvectors, FD = ‖Δμ‖² + Σᵢ(√λᵢ − √νᵢ)²."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    lam, nu = rng.uniform(0.5, 3, 5), rng.uniform(0.1, 2, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    sigma1, sigma2 = q @ np.diag(lam) @ q.T, q @ np.diag(nu) @ q.T
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(lam) - np.sqrt(nu)) ** 2).sum()
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_in_1d_and_from_samples():
    assert frechet_distance(0.0, 4.0, 1.0, 1.0) == pytest.approx(1 + (2 - 1) ** 2)
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (200_000, 2))
    b = rng.normal([1, 0], [2, 1], (200_000, 2))
    fd = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert fd == pytest.approx(1 + 1, abs=0.05)


def test_inception_score_bounds():
    k = 10
    assert inception_score(np.full((100, k), 1 / k), splits=2)[0] == pytest.approx(1.0)
    confident = np.eye(k)[np.arange(100) % k]
    assert inception_score(confident, splits=2)[0] == pytest.approx(k, rel=1e-6)


class _FakeInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.float().mean(dim=(2, 3))
        return pooled if return_features else torch.softmax(self.proj(pooled), dim=1)


def test_torchscript_network_is_loaded_and_run(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    net = load_inception(path, "cpu")
    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    features, probs = inception_outputs(net, images, batch_size=3)
    assert features.shape == (7, 3) and probs.shape == (7, 4)
    np.testing.assert_allclose(features[:, 0], images.float().mean(dim=(1, 2, 3)).numpy(), rtol=1e-6)


def test_missing_or_invalid_network_file(tmp_path):
    with pytest.raises(InceptionError, match="inception_path"):
        load_inception(tmp_path / "absent.pt", "cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InceptionError, match="bad.pt"):
        load_inception(bad, "cpu")


class _ShapedInception(torch.nn.Module):
    """A stand-in with the real network's output shapes: 2048 features, 1008 probabilities."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(3, 2048)
        self.head = torch.nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = self.features(x.float().mean(dim=(2, 3)))
        return pooled if return_features else torch.softmax(self.head(pooled), dim=1)


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server over `tmp_path / "www"` (the network is never used)."""
    import functools
    import http.server
    import threading
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_auto_inception_downloads_once_checks_and_verifies(tmp_path, file_server, monkeypatch):
    import evaluation.fid as fid
    root, url = file_server
    torch.jit.script(_ShapedInception()).save(str(root / "inception.pt"))
    monkeypatch.setenv("SCORE_SDE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fid, "INCEPTION_URL", f"{url}/inception.pt")
    path = fid.resolve_inception("auto")
    assert path == tmp_path / "cache" / fid.INCEPTION_FILE and path.is_file()
    recorded = path.with_name(path.name + ".sha256").read_text().strip()
    assert recorded == fid._sha256(root / "inception.pt")
    (root / "inception.pt").unlink()                       # cached: no second download
    assert fid.resolve_inception("auto") == path
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")   # tampered with
    with pytest.raises(InceptionError, match="does not match its recorded SHA-256"):
        fid.resolve_inception("auto")
    assert fid.resolve_inception(str(tmp_path / "mine.pt")) == tmp_path / "mine.pt"


def test_auto_inception_refuses_a_wrong_download(tmp_path, file_server, monkeypatch):
    import evaluation.fid as fid
    root, url = file_server
    torch.jit.script(_FakeInception()).save(str(root / "other.pt"))   # the wrong network
    (root / "garbage.pt").write_bytes(b"<html>not found</html>")
    monkeypatch.setenv("SCORE_SDE_CACHE", str(tmp_path / "cache"))
    for name, message in (("other.pt", "not the FID Inception"),
                          ("garbage.pt", "not a TorchScript module")):
        monkeypatch.setattr(fid, "INCEPTION_URL", f"{url}/{name}")
        with pytest.raises(InceptionError, match=message):
            fid.resolve_inception("auto")
        assert not list((tmp_path / "cache").iterdir())          # nothing kept
    monkeypatch.setattr(fid, "INCEPTION_SHA256", "0" * 64)        # a pinned digest
    torch.jit.script(_ShapedInception()).save(str(root / "inception.pt"))
    monkeypatch.setattr(fid, "INCEPTION_URL", f"{url}/inception.pt")
    with pytest.raises(InceptionError, match="has SHA-256 .* not 0000"):
        fid.resolve_inception("auto")


def test_offline_says_which_file_to_place_where(tmp_path, monkeypatch):
    import evaluation.fid as fid
    monkeypatch.setenv("SCORE_SDE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fid, "INCEPTION_URL", "http://127.0.0.1:9/inception.pt")  # refused
    with pytest.raises(InceptionError, match=r"place it at .*cache/inception-2015-12-05\.pt"):
        fid.resolve_inception("auto", timeout=5)
