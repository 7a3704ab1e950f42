"""Class agreement of guided samples: classifier-free guidance scales of a class-conditional
model, or classifier-guidance scales of any model, judged by a noisy-data classifier.

    python benchmarks/guidance.py --config configs/cond_digits.py --workdir runs/cond \
        --classifier-workdir runs/clf [--scales 0 1 3] [--per-class 10] [--kind cfg|classifier]

Samples `--per-class` images of each class (labels i mod K) with the config's sampler, at each
scale, and prints the fraction the classifier of `--classifier-workdir` (trained with
`--mode train_classifier`) assigns to the requested class at t = `--judge-t`, the mean
confidence log p(y | x), and the wall time. With `--kind classifier` the same classifier also
guides, so its agreement is optimistic; judge with a second classifier for an unbiased figure.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bound_vs_ode import load_config  # noqa: E402
import samplers  # noqa: E402
from data import describe  # noqa: E402
from evaluation.modes import build_guidance  # noqa: E402
from evaluation.sampling import generate_samples  # noqa: E402
from run.builders import data_shape  # noqa: E402
from run.loading import load_classifier, load_ema_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--classifier-workdir", required=True)
    parser.add_argument("--kind", choices=["cfg", "classifier"], default="cfg")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--judge-t", type=float, default=0.05)
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="config overrides the model was trained with")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    device = torch.device("cpu")
    model, sde, step = load_ema_model(config, args.workdir, device)
    judge = load_classifier(config, args.classifier_workdir, device)
    classes = model.num_classes or describe(config.data).num_classes
    num = classes * args.per_class
    sampler, shape = samplers.build_sampler(config.sampling), data_shape(config)
    print(f"{args.config} at step {step}, {num} samples, judged at t = {args.judge_t}\n")
    print(f"| {args.kind} scale | agreement | mean log p(y|x) | wall s |\n|---|---|---|---|")
    for scale in args.scales:
        if args.kind == "cfg":
            config.sampling.guidance_scale = scale
            guide = None
        else:
            config.sampling.classifier_scale = scale
            guide = judge if scale > 0 else None
        tick = time.perf_counter()
        # Unguided (no classifier, unconditional model): labels only for judging.
        guidance = build_guidance(config, model, guide)
        samples = generate_samples(sampler, model, sde, shape, num, num, config.eval.seed, guidance)
        wall = time.perf_counter() - tick
        target = torch.arange(num) % classes
        with torch.no_grad():
            log_prob = judge.log_prob(samples, torch.full((num,), args.judge_t))
        agreement = (log_prob.argmax(1) == target).float().mean().item()
        confidence = log_prob.gather(1, target[:, None]).mean().item()
        print(f"| {scale:g} | {agreement:.3f} | {confidence:.3f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
