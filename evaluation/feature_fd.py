"""A sample-quality number for small images (below 32×32, where Inception does not apply): the
Fréchet distance (Heusel et al. 2017, the FID formula) in the features of a small CNN that this
module trains on the data set's own training split.

The classifier learns the class labels where the set has them, else the rotation of the image
by 0/90/180/270° (a label-free task, Gidaris et al. 2018; non-square images: upright or
upside down). It trains deterministically (fixed seed, fixed batch order, seconds on a CPU) and
is cached in the eval folder with the SHA-256 digest of its weights and of the data it learned
from: a cached classifier whose weights no longer match its digest, or that learned other data,
is trained again. The distance compares the samples' features with the test split's; its floor
is the same distance for as many training images as samples (the value a perfect model would
get at that sample size, since the Fréchet distance is biased upwards for small samples).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from evaluation.fid import feature_statistics, frechet_distance
from run.files import atomic_write

FEATURE_DIM = 32          # the penultimate layer's width: the features the distance uses
INCEPTION_SIZE = 32       # images of at least this side get FID instead
TRAIN_STEPS, BATCH, LR, SEED = 800, 128, 2e-3, 0


def applies(is_image: bool, image_size: int) -> bool:
    """Whether samples of this data get `fd`: images smaller than 32×32."""
    return is_image and image_size < INCEPTION_SIZE


class FeatureNet(nn.Module):
    """uint8 images `[B, C, H, W]` → features `[B, FEATURE_DIM]` → logits `[B, K]`."""

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, FEATURE_DIM))
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(FEATURE_DIM, num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.float() / 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def pretext(images: torch.Tensor, labels: Optional[torch.Tensor], generator: torch.Generator
            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images, targets): the class labels, or each image turned by a random multiple of 90°
    (flipped upside down or not, for non-square images) and that multiple as its target."""
    if labels is not None:
        return images, labels
    square = images.shape[-1] == images.shape[-2]
    turns = torch.randint(4 if square else 2, (len(images),), generator=generator)
    turned = torch.stack([torch.rot90(x, int(k) * (1 if square else 2), dims=(-2, -1))
                          for x, k in zip(images, turns)])
    return turned, turns


def train_feature_net(images: torch.Tensor, labels: Optional[torch.Tensor]) -> FeatureNet:
    """A `FeatureNet` trained on uint8 `images` (and `labels`, or rotations): Adam, a fixed
    seed and batch order, `TRAIN_STEPS` steps."""
    generator = torch.Generator().manual_seed(SEED)
    num_classes = int(labels.max()) + 1 if labels is not None else 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = FeatureNet(images.shape[1], num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    net.train()
    for _ in range(TRAIN_STEPS):
        rows = torch.randint(len(images), (min(BATCH, len(images)),), generator=generator)
        x, y = pretext(images[rows], None if labels is None else labels[rows], generator)
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def digest(tensors) -> str:
    """SHA-256 (hex) of tensors' bytes, in order."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


@torch.no_grad()
def features(net: FeatureNet, images: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """float64 features `[N, FEATURE_DIM]` of uint8 images."""
    return torch.cat([net.features(images[i:i + batch]) for i in range(0, len(images), batch)]
                     ).double().numpy()


@torch.no_grad()
def accuracy(net: FeatureNet, images: torch.Tensor, labels: Optional[torch.Tensor]) -> float:
    """The classifier's accuracy on its own task (labels, or rotations drawn with a fixed seed)."""
    x, y = pretext(images, labels, torch.Generator().manual_seed(SEED + 1))
    return float((net(x).argmax(1) == y).double().mean())


def load_or_train(path: Path, train_set, test_set, root: Optional[Path] = None) -> dict:
    """The cached classifier of `path` (weights, digests, task, test accuracy, the test split's
    feature statistics), trained and written there when missing, damaged or of other data."""
    data_digest = digest([train_set.data] + ([train_set.labels]
                                              if train_set.labels is not None else []))
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            net = FeatureNet(cached["channels"], cached["num_classes"])
            net.load_state_dict(cached["weights"])
            if cached["digest"] == digest(cached["weights"].values()) \
                    and cached["data_digest"] == data_digest:
                return {**cached, "net": net.eval()}
            logging.warning("%s does not match its digest or this data set; training it again",
                            path)
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            logging.warning("%s is not readable (%s); training it again", path, err)
    net = train_feature_net(train_set.data, train_set.labels)
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    mu, sigma = feature_statistics(features(net, test_set.data))
    cached = {"weights": weights, "digest": digest(weights.values()), "data_digest": data_digest,
              "channels": int(train_set.data.shape[1]),
              "num_classes": int(net.head[-1].out_features),
              "task": "labels" if train_set.labels is not None else "rotation",
              "test_accuracy": accuracy(net, test_set.data, None if train_set.labels is None
                                        else test_set.labels),
              "mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}
    atomic_write(path, lambda f: torch.save(cached, f), root)
    return {**cached, "net": net}


def fd_metrics(samples: torch.Tensor, train_set, test_set, path: Path,
               root: Optional[Path] = None) -> Tuple[dict, dict]:
    """({"fd", "fd_floor"}, the record of how they were made) for uint8 `samples`
    `[N, C, H, W]`: the classifier of `load_or_train`, the test split as reference, and the
    floor from N training images drawn with a fixed seed."""
    cached = load_or_train(path, train_set, test_set, root)
    net, reference = cached["net"], (cached["mu"].numpy(), cached["sigma"].numpy())
    n = min(len(samples), len(train_set))
    rows = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(SEED))[:n]
    metrics = {"fd": frechet_distance(*feature_statistics(features(net, samples)), *reference),
               "fd_floor": frechet_distance(
                   *feature_statistics(features(net, train_set.data[rows])), *reference)}
    record = {"classifier": path.name, "digest": cached["digest"],
              "data_digest": cached["data_digest"], "task": cached["task"],
              "test_accuracy": cached["test_accuracy"], "feature_dim": FEATURE_DIM,
              "num_samples": len(samples), "num_floor": n, "num_reference": len(test_set)}
    return metrics, record
