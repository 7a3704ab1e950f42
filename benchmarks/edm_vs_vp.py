"""EDM's recipe against VP's at equal training: Fréchet distance in a digits classifier's features.

    OMP_NUM_THREADS=1 python benchmarks/edm_vs_vp.py --edm-workdir /work/runs/edm_digits \
        --vp-workdir /work/runs/vp_digits_edmcmp --classifier-workdir /work/runs/digits_classifier \
        [--num-samples 1500] [--seeds 0 1 2] [--train-steps 40] [--with-vp-sampler]
        [--out-dir benchmarks/results]

Both workdirs hold a model trained by `main.py --mode train` with `configs/edm_digits.py` and
`configs/vp_digits.py` (the same network, batch, steps and optimizer; EDM's SDE, preconditioning,
loss and sampler against VP's DSM). Each row draws `--num-samples` samples (EMA weights, the
same per-sample seeds for every row), rounds them to 8 bits as the data are, and reports the
Fréchet distance (Heusel et al. 2017) between their features and the digits test split's (297
images). Features: the penultimate layer (the input of the linear head, 64-dim) of the noisy
classifier trained by `--mode train_classifier` with `configs/vp_digits.py`, evaluated at
t = `--feature-t` (1e-3: the clean-image end; its test accuracy is 0.99 at t = 0.05
already). Rows:
- edm_digits with its config's sampler: Heun, 18 levels σ = 80 … 0.002 (ρ = 7), 35 evaluations;
- vp_digits with the same Heun sampler (through σ = std/a), down to its config's eps = 1e-3
  (σ ≈ 0.01) and down to σ = 0.002 (t = 4e-5), 35 evaluations;
- with `--with-vp-sampler`, vp_digits with its config's own sampler (Euler–Maruyama, 500
  steps + denoising: 501 evaluations; ~15× the time of the others).
The floor is the distance of as many training images as samples (at most the 1500 there are)
to the test split. Mean ± standard deviation over `--seeds` (sample seeds). Training cost: one
optimizer step of each config (its loss, batch and network, fresh weights) timed in
alternating blocks of `--train-steps` steps, reported as the ratio EDM / VP measured in this
run. Writes `edm_vs_vp.md`, `.json` and a PNG grid of the first 64 samples per row under
`--out-dir`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bound_vs_ode import load_config  # noqa: E402
import samplers  # noqa: E402
from data import build_dataset, scale_images, to_uint8_images  # noqa: E402
from evaluation.fid import feature_statistics, frechet_distance  # noqa: E402
from evaluation.images import save_image_grid  # noqa: E402
from evaluation.sampling import generate_samples  # noqa: E402
from run.builders import data_shape  # noqa: E402
from run.distributed import single_process  # noqa: E402
from run.loading import load_classifier, load_ema_model  # noqa: E402
from training.state import build_train_state  # noqa: E402
from training.step import TrainStep  # noqa: E402


def vp_time_of_sigma(sde, sigma: float) -> float:
    """The VP time whose σ̄ = std/a is `sigma`."""
    return sde.t_from_log_snr(torch.tensor([-2 * np.log(sigma)], dtype=torch.float64)).item()


def features(classifier, images_uint8: torch.Tensor, t: float, batch: int = 500) -> np.ndarray:
    """Penultimate features `[N, D]` (float64) of uint8 images `[N, C, H, W]` at time t."""
    captured = []
    hook = classifier.net.head.register_forward_hook(
        lambda module, inputs, out: captured.append(inputs[0]))
    try:
        with torch.no_grad():
            for i in range(0, len(images_uint8), batch):
                x = scale_images(images_uint8[i:i + batch], centered=True, dequantize=False)
                classifier.log_prob(x, torch.full((len(x),), t))
    finally:
        hook.remove()
    return torch.cat(captured).double().numpy()


def fd_to(reference, feats: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(feats), *reference)


def rows(edm_config, vp_config, vp_sde, with_vp_sampler: bool):
    """(label, config, sampler options that override its config) per row."""
    heun = dict(method="heun", num_steps=17, time_schedule="edm", rho=7.0, s_churn=0.0,
                noise_removal=True)
    table = [
        ("edm_digits: heun 18 (σ 80 → 0.002)", "edm", dict(edm_config.sampling)),
        ("vp_digits: heun 18 (to t = 1e-3, σ ≈ 0.01)", "vp", dict(heun, eps=1e-3)),
        ("vp_digits: heun 18 (to σ = 0.002)", "vp",
         dict(heun, eps=vp_time_of_sigma(vp_sde, 0.002))),
    ]
    if with_vp_sampler:
        table.append(("vp_digits: its config (euler_maruyama 500 + denoise)", "vp",
                      dict(vp_config.sampling)))
    return table


def train_step_seconds(configs: dict, steps: int, rounds: int = 3) -> dict:
    """Seconds per optimizer step of each config (fresh weights, its loss and batch size),
    timed in `rounds` alternating blocks of `steps` steps after one untimed warm-up step; the
    median block per config."""
    info = single_process(torch.device("cpu"))
    runs = {}
    for name, config in configs.items():
        torch.manual_seed(config.training.seed)
        state = build_train_state(config, info.device)
        data = build_dataset(config.data, "train").data
        stepper = TrainStep(state.model, state.loss_fn, state.optimizer, state.ema, info,
                            grad_clip=config.optim.grad_clip, scaler=state.scaler)
        runs[name] = (state, stepper, data, config)
    times = {name: [] for name in configs}
    for block in range(rounds + 1):
        for name, (state, stepper, data, config) in runs.items():
            count = 1 if block == 0 else steps
            tick = time.perf_counter()
            for _ in range(count):
                index = torch.randint(len(data), (config.training.batch_size,),
                                      generator=state.generator)
                batch = scale_images(data[index], centered=config.data.centered,
                                     dequantize=config.data.uniform_dequantization,
                                     generator=state.generator)
                float(stepper.step(batch, None, config.optim.lr, state.generator).loss)
            if block:
                times[name].append((time.perf_counter() - tick) / count)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_row(label: str, name: str, sampling: dict, models: dict, configs: dict,
                classifier, reference, args, out: Path, index: int) -> dict:
    """FD (mean ± sd over the seeds), NFE per sample and sampling seconds of one table row."""
    model, sde, step = models[name]
    sampler = samplers.build_sampler(sampling)
    shape = data_shape(configs[name])
    distances, wall = [], 0.0
    for seed in args.seeds:
        tick = time.perf_counter()
        x = generate_samples(sampler, model, sde, shape, args.num_samples, 500, seed)
        wall += time.perf_counter() - tick
        images = to_uint8_images(x, centered=True)
        distances.append(fd_to(reference, features(classifier, images, args.feature_t)))
        if seed == args.seeds[0]:
            save_image_grid(images[:64], out / f"edm_vs_vp_{index}_{name}_{sampler.method}.png",
                            nrow=8)
    with torch.no_grad():   # the sampler's evaluations per sample (one batch of 2)
        nfe = sampler(model, sde, (2,) + shape, generator=torch.Generator().manual_seed(0)).nfe
    row = dict(label=label, step=step, nfe=nfe, fd=statistics.mean(distances),
               fd_sd=statistics.stdev(distances) if len(distances) > 1 else 0.0,
               fd_runs=distances, sample_wall_s=wall / len(args.seeds))
    print(f"{label}: NFE {nfe}, FD {row['fd']:.3f} ± {row['fd_sd']:.3f}", flush=True)
    return row


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edm-workdir", required=True)
    parser.add_argument("--vp-workdir", required=True)
    parser.add_argument("--classifier-workdir", required=True)
    parser.add_argument("--num-samples", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--feature-t", type=float, default=1e-3)
    parser.add_argument("--train-steps", type=int, default=40,
                        help="steps per timed block of each config (0: no training timing)")
    parser.add_argument("--with-vp-sampler", action="store_true",
                        help="add vp_digits' own sampler (501 evaluations) as a row")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    configs = {"edm": load_config(str(ROOT / "configs" / "edm_digits.py")),
               "vp": load_config(str(ROOT / "configs" / "vp_digits.py"))}
    train_s = train_step_seconds(configs, args.train_steps) if args.train_steps > 0 else {}
    if train_s:
        print(f"training step: EDM {train_s['edm'] * 1e3:.0f} ms, VP {train_s['vp'] * 1e3:.0f} "
              f"ms, EDM / VP = {train_s['edm'] / train_s['vp']:.3f}", flush=True)
    models = {"edm": load_ema_model(configs["edm"], args.edm_workdir, device),
              "vp": load_ema_model(configs["vp"], args.vp_workdir, device)}
    classifier = load_classifier(configs["vp"], args.classifier_workdir, device)
    test = build_dataset(configs["vp"].data, "test").data
    train = build_dataset(configs["vp"].data, "train").data[:args.num_samples]
    reference = feature_statistics(features(classifier, test, args.feature_t))
    floor = fd_to(reference, features(classifier, train, args.feature_t))
    steps = {name: step for name, (_, _, step) in models.items()}
    print(f"steps: {steps}; {args.num_samples} samples per run, seeds {args.seeds}; "
          f"features at t = {args.feature_t}; {len(train)} training images vs the test split: "
          f"{floor:.3f}\n", flush=True)
    results = [measure_row(label, name, sampling, models, configs, classifier, reference, args,
                           out, index)
               for index, (label, name, sampling) in enumerate(
                   rows(configs["edm"], configs["vp"], models["vp"][1], args.with_vp_sampler))]
    write(out, results, floor, len(train), args, steps, train_s)


def write(out: Path, results, floor: float, num_floor: int, args, steps, train_s) -> None:
    command = "OMP_NUM_THREADS=1 python benchmarks/edm_vs_vp.py " + " ".join(sys.argv[1:])
    lines = [f"`{command}`\n",
             f"Fréchet distance in the digits classifier's penultimate features (t = "
             f"{args.feature_t}) to the test split (297 images), {args.num_samples} samples per "
             f"run, mean ± sd over seeds {args.seeds}; training steps {steps}. Floor ({num_floor} "
             f"training images): {floor:.3f}.\n",
             "| model: sampler | steps | NFE | FD | s / run |", "|---|---|---|---|---|"]
    for row in results:
        lines.append(f"| {row['label']} | {row['step']} | {row['nfe']} | {row['fd']:.3f} ± "
                     f"{row['fd_sd']:.3f} | {row['sample_wall_s']:.0f} |")
    if train_s:
        lines.append(f"\nTraining step (batch 64, fresh weights, median of 3 alternating blocks "
                     f"of {args.train_steps}): EDM {train_s['edm'] * 1e3:.0f} ms, VP "
                     f"{train_s['vp'] * 1e3:.0f} ms; EDM / VP = "
                     f"{train_s['edm'] / train_s['vp']:.3f}.")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (out / "edm_vs_vp.md").write_text(text)
    (out / "edm_vs_vp.json").write_text(json.dumps(
        dict(floor=floor, rows=results, num_samples=args.num_samples, seeds=args.seeds,
             train_step_s=train_s), indent=2))


if __name__ == "__main__":
    main()
