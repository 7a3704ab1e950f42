"""The fast samplers beside their peers on a trained model: Fréchet distance in the features of
a digits classifier against the test set.

    OMP_NUM_THREADS=1 python benchmarks/peers_trained.py --workdir runs/vp_digits \
        [--classifier-workdir runs/vp_digits] [--n 500] [--nfe 5 10 20]
        [--out benchmarks/results/peers_trained]

The score is the EMA network of `--workdir` (its config.json), the features those of the noisy
classifier trained there with `--mode train_classifier` (the input of its last linear layer,
at t = `--feature-t`); every method starts from the same prior draw of `--n` samples and the
same score, with the runners of `benchmarks/peers.py`. FD = the Fréchet distance between the
features of the samples and of the 297 test images; its floor, the FD of as many training
images, and the converged probability-flow ODE's (RK45, tolerance 1e-5) are printed with it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from data.datasets import load_digits  # noqa: E402
from data.transforms import scale_images  # noqa: E402
from evaluation.fid import feature_statistics, frechet_distance  # noqa: E402
from peers import peer_methods, project, project_methods, project_ode  # noqa: E402
from run.loading import load_classifier, load_ema_model  # noqa: E402

KEEP = ("dpm_solver 2M", "dpm_solver 3M", "dpm_solver 2M +UniC", "unipc bh1 p2", "unipc bh2 p2",
        "unipc bh2 p3", "unipc bh2 p2 fitted", "dpm_solver 2M (edm steps)",
        "unipc bh2 p2 (edm steps)", "ddim (logsnr)", "dpm_solver_sde 2M",
        "dpm_solver_sde 2M (edm steps)", "k-diffusion euler",
        "k-diffusion dpmpp_2m", "k-diffusion dpmpp_2m_sde", "k-diffusion dpmpp_3m_sde",
        "diffusers DPM++2M", "diffusers UniPC bh2", "DPM-Solver ref 2M", "DPM-Solver ref 3M")


class Features:
    """The classifier's penultimate features `[B, C]` (float64 numpy) of images at time t."""

    def __init__(self, classifier, t: float):
        self.classifier, self.t, self.store = classifier, t, []
        classifier.net.head.register_forward_pre_hook(lambda _, inputs: self.store.append(
            inputs[0].detach()))

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.store.clear()
        with torch.no_grad():
            for chunk in images.float().split(250):
                self.classifier.logits(chunk, self.t)
        return torch.cat(self.store).double().numpy()


def fd(features: np.ndarray, reference) -> float:
    if not np.isfinite(features).all():
        return float("nan")
    return frechet_distance(*feature_statistics(features), *reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--classifier-workdir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--feature-t", type=float, default=1e-3)
    parser.add_argument("--dpm-solver-path", default="/work/peers/dpm-solver")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/peers_trained")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = ml_collections.ConfigDict(json.loads((args.workdir / "config.json").read_text()))
    model, sde, step = load_ema_model(config, args.workdir, torch.device("cpu"))
    classifier = load_classifier(config, args.classifier_workdir or args.workdir)
    features = Features(classifier, args.feature_t)
    centered = config.data.centered
    test = features(scale_images(load_digits("test"), centered=centered, dequantize=False))
    reference = feature_statistics(test)
    train = scale_images(load_digits("train")[:len(test)], centered=centered, dequantize=False)
    shape = (args.n, config.data.num_channels, config.data.image_size, config.data.image_size)
    x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)

    def score(x, t):
        with torch.no_grad():
            return model(x.float(), t.float()).to(x.dtype)

    lines = [f"{args.workdir} at step {step}; {args.n} samples; FD in the classifier's features "
             f"at t = {args.feature_t} against the {len(test)} test images",
             f"floor (as many training images): {fd(features(train), reference):.3g}"]
    x, nfe, _ = project_ode(rtol=1e-5, atol=1e-5)(score, sde, x_T, None)
    lines.append(f"converged probability-flow ODE (RK45, 1e-5): NFE {nfe}, FD "
                 f"{fd(features(x), reference):.3g}")
    methods = {**project_methods(), **peer_methods(args),   # the project's on Karras steps too
               "dpm_solver 2M (edm steps)": project("dpm_solver", order=2, schedule="edm"),
               "unipc bh2 p2 (edm steps)": project("unipc", order=2, variant="bh2",
                                                   schedule="edm"),
               "dpm_solver_sde 2M (edm steps)": project("dpm_solver_sde", order=2,
                                                        schedule="edm")}
    methods = {name: methods[name] for name in KEEP if name in methods}
    lines += ["", "| method | " + " | ".join(f"FD @ {b}" for b in args.nfe) + " |",
              "|---|" + "---:|" * len(args.nfe)]
    records = []
    for name, runner in methods.items():
        cells = []
        for budget in args.nfe:
            try:
                x, nfe, _ = runner(score, sde, x_T, budget)
                value = fd(features(x), reference)
            except Exception as error:   # a peer failing is a result
                value, nfe = float("nan"), 0
                print(f"{name} @ {budget}: failed: {error}", file=sys.stderr)
            records.append(dict(method=name, budget=budget, nfe=nfe, fd=value))
            cells.append(f"{value:.3g}" + ("" if nfe == budget else f" ({nfe})"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
