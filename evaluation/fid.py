"""FID and Inception Score from an Inception-v3 network read from a local TorchScript file.

The network is the one the StyleGAN2-ADA / EDM metrics use (`inception-2015-12-05.pt`):
`net(images_uint8 [B, 3, H, W], return_features=True) -> [B, 2048]` pool features, and
`net(images_uint8) -> [B, 1008]` class probabilities. Point `config.eval.inception_path` at it;
TorchScript files hold no Python code, so loading one runs nothing but tensor ops.
FID (Heusel et al. 2017): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).
IS (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), averaged over splits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import scipy.linalg
import torch


class InceptionError(RuntimeError):
    """The Inception network file is missing or unusable."""


def load_inception(path, device) -> torch.jit.ScriptModule:
    path = Path(path).expanduser()
    if not str(path) or not path.is_file():
        raise InceptionError(
            f"config.eval.inception_path={str(path)!r} is not a file: FID/IS need the TorchScript "
            f"Inception-v3 of the StyleGAN2-ADA metrics (inception-2015-12-05.pt) saved locally")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise InceptionError(f"{path} is not a TorchScript module: {str(err).splitlines()[0]}") from None


@torch.no_grad()
def inception_outputs(net, images: torch.Tensor, batch_size: int = 250) -> Tuple[np.ndarray, np.ndarray]:
    """Pool features `[N, 2048]` and class probabilities `[N, K]` of uint8 images `[N, C, H, W]`."""
    device = next(iter(net.parameters()), torch.empty(0)).device
    features, probs = [], []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size].to(device)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        features.append(net(batch, return_features=True).double().cpu())
        probs.append(net(batch).double().cpu())
    return torch.cat(features).numpy(), torch.cat(probs).numpy()


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean `[D]` and covariance `[D, D]` (unbiased) of features `[N, D]`."""
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularise slightly
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def inception_score(probs: np.ndarray, splits: int = 10) -> Tuple[float, float]:
    """Mean and std over `splits` of exp(E KL(p(y|x) ‖ p(y)))."""
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
