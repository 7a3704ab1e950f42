"""log_likelihood on every SDE: accuracy, NFE, overhead, and speed beside score_sde_pytorch.

    python benchmarks/likelihood.py [--reference PATH/TO/score_sde_pytorch] [--batch 64]
        [--threads 1] [--sdes vp subvp ve vp_cosine] [--tolerances 1e-3 1e-4 1e-5]

Ground truth and network as in benchmarks/samplers.py: the 1×8×8 image mixture (d = 64) and the
exact score plus a zero-output convolutional network, here wrapped as score_sde_pytorch's
models are (a `model(x, labels)` whose output the score function rescales: labels 999·t and
score = −output/σ_t for VP and sub-VP, labels σ_t and score = output for VE), so that this
project and the reference evaluate the very same function.

Table 1 (exact divergence, default tolerances 1e-5): |log p − exact| in nats per dimension
against the exact value log p_eps(x) − log p_T(z) + prior_logp(z) (the flow ends at the true
p_T, not the prior), NFE and wall time.

Table 2 (Rademacher probes, as the reference): at each tolerance, NFE, wall time, overhead =
wall / (NFE × unit), the unit being one forward plus one VJP, timed inside the run (`Timed` of
benchmarks/samplers.py) around our score function and around the reference's model (its
rescaling wrapper is internal to it, so counts as its overhead; it evaluates the model twice per
step, once without and once with the probe's VJP), and the solver error, |log p − log p at rtol =
atol = 1e-8 with the same probes| per dimension (probes: same generator seed here; the same
global seed for the reference, which draws them from the global RNG). The reference column is
present when `--reference` points at a checkout of score_sde_pytorch; its code is imported from
there, never copied.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sde_lib  # noqa: E402
from samplers import log_likelihood  # noqa: E402

_spec = importlib.util.spec_from_file_location("benchmark_samplers",
                                               ROOT / "benchmarks" / "samplers.py")
problems = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(problems)

EPS = 1e-5
TIGHT = 1e-8
SDES = {"vp": sde_lib.VPSDE, "subvp": sde_lib.subVPSDE, "ve": sde_lib.VESDE,
        "vp_cosine": lambda: sde_lib.VPSDE(schedule="cosine")}


class ReferenceConventionModel(nn.Module):
    """`model(x, labels)` whose score, rescaled the reference's way, is mixture score + network."""

    def __init__(self, mixture, sde, net: nn.Module):
        super().__init__()
        self.mixture, self.sde, self.net = mixture, sde, net
        self.variance_exploding = isinstance(sde, sde_lib.VESDE)

    def time(self, labels: torch.Tensor) -> torch.Tensor:
        if self.variance_exploding:                       # labels = σ_t
            log_ratio = math.log(self.sde.sigma_max / self.sde.sigma_min)
            return torch.log(labels / self.sde.sigma_min) / log_ratio
        return labels / 999                               # labels = 999·t

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.time(labels)
        score = self.mixture.score(x, t, self.sde) + self.net(x, t)
        if self.variance_exploding:
            return score
        return -score * self.sde.marginal_coeffs(t)[1].to(x.dtype)[:, None, None, None]


def score_function(model: ReferenceConventionModel, call=None):
    """This project's score_fn for `model` (evaluated through `call`, default the model itself),
    with the same rescaling as the reference's get_score_fn."""
    sde, call = model.sde, call or model

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if model.variance_exploding:
            return call(x, sde.marginal_coeffs(t)[1].to(x.dtype))
        std = sde.marginal_coeffs(t)[1].to(x.dtype)[:, None, None, None]
        return -call(x, t * 999) / std
    return score_fn


def load_reference(path: Path):
    """score_sde_pytorch's `likelihood` and `sde_lib`, imported from `path` beside ours."""
    names = ("sde_lib", "models", "likelihood")
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in names}
    sys.path.insert(0, str(path))
    try:
        reference_sde_lib = importlib.import_module("sde_lib")
        reference_likelihood = importlib.import_module("likelihood")
    finally:
        sys.path.remove(str(path))
        for key in [k for k in sys.modules if k.split(".")[0] in names]:
            sys.modules["score_sde_reference." + key] = sys.modules.pop(key)
        sys.modules.update(ours)
    return reference_sde_lib, reference_likelihood


def reference_sde(reference_sde_lib, sde):
    if isinstance(sde, sde_lib.VESDE):
        return reference_sde_lib.VESDE(sigma_min=sde.sigma_min, sigma_max=sde.sigma_max, N=sde.N)
    cls = reference_sde_lib.VPSDE if isinstance(sde, sde_lib.VPSDE) else reference_sde_lib.subVPSDE
    return cls(beta_min=sde.beta_0, beta_max=sde.beta_1, N=sde.N)


def ours(score_fn, sde, x, tol, divergence="rademacher"):
    start = time.perf_counter()
    result = log_likelihood(score_fn, sde, x, eps=EPS, rtol=tol, atol=tol, divergence=divergence,
                            generator=torch.Generator().manual_seed(0))
    return result.logp, result.z, result.nfe, time.perf_counter() - start


def reference(reference_likelihood, ref_sde, model, x, tol):
    likelihood_fn = reference_likelihood.get_likelihood_fn(
        ref_sde, lambda v: v, hutchinson_type="Rademacher", rtol=tol, atol=tol, eps=EPS)
    torch.manual_seed(0)                               # the reference draws probes globally
    start = time.perf_counter()
    bpd, z, nfe = likelihood_fn(model, x)
    wall = time.perf_counter() - start
    num_dims = x[0].numel()                            # its offset: 7 − inverse_scaler(−1) = 8
    return -(bpd.double() - 8) * num_dims * math.log(2), z, nfe, wall


def accuracy_table(mixture, net, sdes, x) -> None:
    d = mixture.dim
    print("| SDE | NFE | wall s | |log p − exact| (nats/dim) |\n|---|---:|---:|---:|")
    for name in sdes:
        sde = SDES[name]()
        score_fn = score_function(ReferenceConventionModel(mixture, sde, net))
        logp, z, nfe, wall = ours(score_fn, sde, x, 1e-5, divergence="exact")
        z = z.double().flatten(1)
        exact = (mixture.log_prob(x.double().flatten(1), EPS, sde)
                 - mixture.log_prob(z, sde.T, sde) + sde.prior_logp(z))
        error = ((logp - exact).abs().mean() / d).item()
        print(f"| {name} | {nfe} | {wall:.2f} | {error:.1e} |", flush=True)


def speed_table(mixture, net, sdes, x, tolerances, reference_modules) -> None:
    d = mixture.dim
    columns = "NFE | wall s | overhead | solver error"
    header = f"| SDE | tol | ours: {columns} |"
    if reference_modules:
        header += f" reference: {columns} | wall ours/ref |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in sdes:
        sde = SDES[name]()
        model = ReferenceConventionModel(mixture, sde, net).eval()
        score_fn = score_function(model)
        # Timed: our score function; the reference's model (its score wrapper is internal).
        runs = {"ours": (score_fn, lambda tol, timed: ours(timed, sde, x, tol))}
        if reference_modules and name != "vp_cosine":
            ref_sde = reference_sde(reference_modules[0], sde)
            runs["reference"] = (model, lambda tol, timed: reference(
                reference_modules[1], ref_sde, timed, x, tol))
        tight = {key: run(TIGHT, timed)[0] for key, (timed, run) in runs.items()}
        for tol in tolerances:
            row = f"| {name} | {tol:g} |"
            walls = {}
            for key, (unit_of, run) in runs.items():
                timed = problems.Timed(unit_of)
                logp, _, nfe, wall = run(tol, timed)
                walls[key] = wall
                error = ((logp - tight[key]).abs().mean() / d).item()
                overhead = wall / (nfe * timed.unit())
                row += f" {nfe} | {wall:.2f} | {overhead:.3f} | {error:.1e} |"
            if "reference" in walls:
                row += f" {walls['ours'] / walls['reference']:.2f} |"
            elif reference_modules:
                row += " – | – | – | – | – |"
            print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--accuracy-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    parser.add_argument("--tolerances", nargs="+", type=float, default=[1e-3, 1e-4, 1e-5])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Flush denormals: at VE's large σ the network's SiLU outputs underflow, and denormal
    # arithmetic would make its evaluations there several times slower than the unit.
    torch.set_flush_denormal(True)
    mixture, net = problems.image_mixture(), problems.ConvScoreNet().eval()
    shape = problems.IMAGE
    x = mixture.sample(args.batch, torch.Generator().manual_seed(0), dtype=torch.float32)
    x = x.view(args.batch, *shape)
    reference_modules = None
    if args.reference is not None:
        if (args.reference / "likelihood.py").exists():
            reference_modules = load_reference(args.reference)
        else:
            print(f"(no likelihood.py under {args.reference}: reference columns skipped)")
    print(f"d = {mixture.dim}, batch {args.batch}, eps = {EPS}, {args.threads} thread(s)\n")
    print("Exact divergence, rtol = atol = 1e-5, "
          f"batch {args.accuracy_batch} (d vector–Jacobian products per evaluation):\n")
    accuracy_table(mixture, net, args.sdes, x[:args.accuracy_batch])
    print("\nRademacher probes:\n")
    speed_table(mixture, net, args.sdes, x, args.tolerances, reference_modules)


if __name__ == "__main__":
    main()
