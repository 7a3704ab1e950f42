"""DDPM's variational bound beside the probability-flow ODE's bits/dim, on one trained workdir.

    python benchmarks/bound_vs_ode.py --config configs/ddpm_digits.py --workdir runs/ddpm \
        [--num-examples 64] [--iw 8] [--set sde.schedule=cosine ...]

Rows (bits/dim on the first `--num-examples` test images, the same images in every row):
- the bound with each reverse variance the model allows (beta, posterior, learned), summed
  over all N steps (`samplers.vlb_bits_per_dim`): an upper bound on −log₂ P(x₀) of the
  discrete-time ancestral model, on the 8-bit data itself;
- the ODE's bits/dim as `--mode eval` computes it: one uniform dequantization draw per image,
  −log₂ p(x + u) (an upper bound on −log₂ P(x₀) of the *flow's* model, by Jensen);
- with `--iw K`: −log₂ of the mean of p(x + u_k) over K dequantization draws, the
  importance-weighted bound (tighter as K grows; with Rademacher probes each log p is an
  unbiased but noisy estimate, which biases this row slightly low);
- for discrete-time models: the ODE with the network evaluated at the fractional chain index
  whose log-SNR equals the continuous time's (instead of `ScoreModel`'s t·(N − 1), the
  reference code's convention), which shows what the time/label mismatch costs.
The bound and the ODE rows bound the likelihoods of two different models, so neither is
guaranteed to be the larger; the rows separate the effects that decide which is.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import samplers  # noqa: E402
from data import build_dataset, scale_images  # noqa: E402
from run.loading import load_ema_model  # noqa: E402


def load_config(path: str, overrides=()):
    """The config of `path` with `section.field=value` overrides (values parsed as Python
    literals where they parse, else kept as strings), as `--config.section.field=value`."""
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for item in overrides:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        section, field = key.rsplit(".", 1)
        config[section][field] = value
    return config


def matched_label_score(model, sde):
    """The discrete-time network at the fractional chain index with the time's log-SNR."""
    table = torch.log(sde.alphas_cumprod / (1 - sde.alphas_cumprod))   # decreasing in the index

    def score_fn(x, t):
        lam = sde.log_snr(t.double())
        right = torch.searchsorted(-table, -lam).clamp(1, sde.N - 1)
        left_lam, right_lam = table[right - 1], table[right]
        index = (right - 1) + (lam - left_lam) / (right_lam - left_lam)   # extrapolates at ends
        std = sde.marginal_coeffs(t.double())[1]
        noise = model.net(x, index.to(x.dtype))[:, :x.shape[1]]   # ε̂ (learned v dropped)
        return -noise / std.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
    return score_fn


def ode_bpd(score_fn, sde, raw, config, draws: int, seed: int) -> torch.Tensor:
    """`[draws, B]` bits/dim of `draws` dequantizations, as `--mode eval` computes each."""
    rows = []
    for k in range(draws):
        x = scale_images(raw, centered=config.data.centered, dequantize=True,
                         generator=torch.Generator().manual_seed(seed + k))
        with torch.no_grad():
            result = samplers.log_likelihood(
                score_fn, sde, x, eps=config.eval.likelihood_eps, rtol=config.eval.rtol,
                atol=config.eval.atol, divergence=config.eval.divergence,
                generator=torch.Generator().manual_seed(seed + 1000 + k))
        rows.append(samplers.bits_per_dim(result.logp.double(), x[0].numel(),
                                          centered=config.data.centered))
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num-examples", type=int, default=64)
    parser.add_argument("--iw", type=int, default=0, help="dequantization draws (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="config overrides the model was trained with")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    model, sde, step = load_ema_model(config, args.workdir, torch.device("cpu"))
    raw = build_dataset(config.data, "test").data[:args.num_examples]
    x0 = scale_images(raw, centered=True, dequantize=False)
    rows = []
    variances = ["beta", "posterior"] + (["learned"] if model.learn_variance else [])
    for variance in variances:
        tick = time.perf_counter()
        result = samplers.vlb_bits_per_dim(model, sde, x0, variance=variance,
                                           generator=torch.Generator().manual_seed(args.seed))
        rows.append((f"bound, {variance} variance", result.bpd.double(),
                     time.perf_counter() - tick))
    tick = time.perf_counter()
    ode = ode_bpd(model, sde, raw, config, max(1, args.iw), args.seed)
    rows.append(("ODE, one dequantization (as --mode eval)", ode[0], time.perf_counter() - tick))
    if args.iw > 1:
        nats = ode * x0[0].numel() * math.log(2)
        iw = -(torch.logsumexp(-nats, 0) - math.log(args.iw)) / (x0[0].numel() * math.log(2))
        rows.append((f"ODE, importance-weighted over {args.iw} dequantizations", iw, float("nan")))
    if not model.continuous:
        tick = time.perf_counter()
        matched = ode_bpd(matched_label_score(model, sde), sde, raw, config, 1, args.seed)[0]
        rows.append(("ODE, labels matched by log-SNR", matched, time.perf_counter() - tick))
    print(f"{args.config} at step {step}, {len(raw)} test images (bits/dim, mean ± s.e.m.)\n")
    print("| estimate | bits/dim | wall s |\n|---|---|---|")
    for name, bpd, wall in rows:
        print(f"| {name} | {bpd.mean().item():.3f} ± "
              f"{(bpd.std() / math.sqrt(len(bpd))).item():.3f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
