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
