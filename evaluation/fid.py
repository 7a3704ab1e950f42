"""FID and Inception Score from an Inception-v3 network read from a local TorchScript file.

The network is the one the StyleGAN2-ADA / EDM metrics use (`inception-2015-12-05.pt`):
`net(images_uint8 [B, 3, H, W], return_features=True) -> [B, 2048]` pool features, and
`net(images_uint8) -> [B, 1008]` class probabilities. `config.eval.inception_path` is its path,
or "auto": downloaded once from `INCEPTION_URL` into the cache folder (`SCORE_SDE_CACHE`, else
~/.cache/score-sde), checked (it must load and give 2048 features and 1008 probabilities),
and its SHA-256 recorded beside it and verified at every later use (against
`INCEPTION_SHA256` as well, where that is pinned). Offline, the error says which file to put
where. TorchScript files hold no Python code, so loading one runs nothing but tensor ops.
FID (Heusel et al. 2017): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).
IS (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), averaged over splits.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import scipy.linalg
import torch


class InceptionError(RuntimeError):
    """The Inception network file is missing or unusable."""


INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_SHA256: Optional[str] = None   # pin the expected digest here where it is known
FEATURES, CLASSES = 2048, 1008   # pool features and class probabilities per image
IS_SPLITS = 10                   # the Inception Score's splits (Salimans et al. 2016)
MIN_SAMPLES_PER_SPLIT = 2        # fewer: a split's marginal is its one sample, KL = 0


def cache_dir() -> Path:
    """Where downloaded files live: `SCORE_SDE_CACHE`, else ~/.cache/score-sde."""
    return Path(os.environ.get("SCORE_SDE_CACHE", Path.home() / ".cache" / "score-sde"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_network(path: Path) -> None:
    """The file must be a TorchScript Inception giving 2048 features and 1008 probabilities."""
    check_network(load_inception(path, "cpu"), path)


def check_network(net, path) -> None:
    """`net` must give 2048 pool features and 1008 class probabilities per image, as the FID
    Inception does; any other network's numbers would not be FID or IS."""
    device = next(iter(net.parameters()), torch.empty(0)).device
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8, device=device)
    try:
        with torch.no_grad():
            features, probs = net(images, return_features=True), net(images)
        shapes = tuple(features.shape), tuple(probs.shape)
    except Exception as err:   # noqa: BLE001 — a TorchScript module of another signature
        raise InceptionError(f"{path} is a TorchScript module but not the FID Inception: "
                             f"{str(err).strip().splitlines()[-1] if str(err).strip() else err!r}"
                             ) from None
    if shapes != ((2, FEATURES), (2, CLASSES)):
        raise InceptionError(f"{path} is a TorchScript module but not the FID Inception "
                             f"(features {shapes[0]}, outputs {shapes[1]}; expected "
                             f"{(2, FEATURES)} and {(2, CLASSES)})")


def checked_inception(setting: str, device) -> torch.jit.ScriptModule:
    """The network of `config.eval.inception_path` ("auto" or a path), loaded on `device` and
    checked (`check_network`) for every setting, before any work starts."""
    path = resolve_inception(setting)
    net = load_inception(path, device)
    check_network(net, path)
    return net


def resolve_inception(setting: str, timeout: float = 60.0) -> Path:
    """The Inception file of `config.eval.inception_path`: the path itself, or for "auto" the
    cached download (see the module docstring)."""
    if setting != "auto":
        return Path(setting).expanduser()
    target = cache_dir() / INCEPTION_FILE
    recorded = target.with_name(target.name + ".sha256")
    if target.is_file():
        expected = INCEPTION_SHA256 or (recorded.read_text().strip() if recorded.is_file()
                                        else None)
        if expected is None or _sha256(target) == expected:
            return target
        raise InceptionError(f"{target} does not match its recorded SHA-256; delete it to "
                             f"download it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(INCEPTION_URL, timeout=timeout) as response, \
                open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise InceptionError(f"could not download the FID Inception network from "
                             f"{INCEPTION_URL} ({err}): download it on a machine that is online "
                             f"and place it at {target}, or set config.eval.inception_path to "
                             f"its path") from None
    digest = _sha256(partial)
    try:
        if INCEPTION_SHA256 is not None and digest != INCEPTION_SHA256:
            raise InceptionError(f"the download from {INCEPTION_URL} has SHA-256 {digest}, not "
                                 f"{INCEPTION_SHA256}; it was deleted")
        _check_network(partial)
    except InceptionError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    recorded.write_text(digest + "\n")
    return target


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


def inception_score(probs: np.ndarray, splits: int = IS_SPLITS) -> Tuple[float, float]:
    """Mean and std over `splits` of exp(E KL(p(y|x) ‖ p(y))); `probs` `[N, K]` with at least
    `MIN_SAMPLES_PER_SPLIT` rows per split (ValueError otherwise, never a NaN)."""
    if len(probs) < splits * MIN_SAMPLES_PER_SPLIT:
        raise ValueError(f"the Inception Score needs at least {splits * MIN_SAMPLES_PER_SPLIT} "
                         f"samples ({splits} splits), got {len(probs)}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
