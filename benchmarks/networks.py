"""Time DDPM++ cont. and NCSN++ cont. (Song et al. 2021) on CPU, beside score_sde_pytorch.

    python benchmarks/networks.py [--reference PATH/TO/score_sde_pytorch] [--batch-size 8]
        [--repeats 5] [--threads 2] [--variants eager channels_last compile]

For each network: forward (eval mode, no autograd: sampling) and forward + backward
(train mode: training) per batch of 32×32 images, median over interleaved repeats, for this
project's implementation in each variant and, when `--reference` points at a checkout of
score_sde_pytorch, for the reference with the same weights (copied across with the
converter, and checked to give the same outputs). Ratios are ours / reference (≤ 1 is faster).
Without `--reference` only our timings are printed.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_model, get_preset  # noqa: E402
from models.reference_layout import convert_reference_state_dict  # noqa: E402

DATA_FIELDS = ("image_size", "num_channels", "centered")


def _import_package(name: str, directory: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_reference(path: Path) -> Dict[str, type]:
    """The reference's network classes, imported from its checkout without touching ours.

    Its `models` package is imported as `score_sde_reference_models`. Its `op` package builds
    CUDA extensions at import time; on CPU tensors the reference calls its pure-PyTorch
    upfirdn2d anyway, so the extension loader is replaced by a no-op while importing.
    """
    import torch.utils.cpp_extension as cpp_extension

    saved = cpp_extension.load
    cpp_extension.load = lambda *args, **kwargs: types.SimpleNamespace()
    try:
        _import_package("op", path / "op")
        _import_package("score_sde_reference_models", path / "models")
        ncsnpp = importlib.import_module("score_sde_reference_models.ncsnpp")
        ddpm = importlib.import_module("score_sde_reference_models.ddpm")
    finally:
        cpp_extension.load = saved
    return {"ncsnpp": ncsnpp.NCSNpp, "ddpm": ddpm.DDPM}


def reference_net(classes: Dict[str, type], preset: dict) -> torch.nn.Module:
    """The reference network for one of our presets (its config built from the preset)."""
    import ml_collections

    model = {k: v for k, v in preset.items() if k not in DATA_FIELDS}
    model.setdefault("sigma_min", 0.01)
    model.setdefault("sigma_max", 50.0)
    model.setdefault("num_scales", 1000)
    config = ml_collections.ConfigDict({
        "model": model, "training": {"continuous": True}, "device": "cpu",
        "data": {field: preset[field] for field in DATA_FIELDS}})
    return classes[preset["name"]](config)


def copy_reference_weights(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    state = {k: v for k, v in ref.state_dict().items() if k != "sigmas"}
    ours.load_state_dict(convert_reference_state_dict(state, ours), strict=True)


def inputs(preset: dict, batch: int):
    generator = torch.Generator().manual_seed(0)
    size, channels = preset["image_size"], preset["num_channels"]
    x = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    t = torch.rand(batch, generator=generator)
    labels = 0.01 * 5000.0 ** t if preset["embedding_type"] == "fourier" else 999 * t
    return x, labels


def forward_fn(net, x, labels) -> Callable[[], None]:
    def run():
        net.eval()
        with torch.no_grad():
            net(x, labels)
    return run


def train_fn(net, x, labels) -> Callable[[], None]:
    def run():
        net.train()
        net.zero_grad(set_to_none=True)
        net(x, labels).square().mean().backward()
    return run


def interleaved_times(fns: Dict[str, Callable[[], None]], repeats: int,
                      warmup: int) -> Dict[str, List[float]]:
    """Seconds per call, one call of each function per round, so that load changes on a
    shared machine hit all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def our_variants(preset: dict, source: torch.nn.Module, variants: List[str], x):
    """Our network in each variant, all with `source`'s weights, and its matching input."""
    nets = {}
    for variant in variants:
        net = build_model(preset)
        net.load_state_dict(source.state_dict())
        xv = x
        if variant in ("channels_last", "compile"):
            net = net.to(memory_format=torch.channels_last)
            xv = x.contiguous(memory_format=torch.channels_last)
        if variant == "compile":
            net = torch.compile(net)
        nets[variant] = (net, xv)
    return nets


def bench_model(name: str, args, ref_classes) -> List[tuple]:
    preset = get_preset(name)
    torch.manual_seed(0)
    ours = build_model(preset)
    x, labels = inputs(preset, args.batch_size)
    rows = []
    fwd: Dict[str, Callable[[], None]] = {}
    train: Dict[str, Callable[[], None]] = {}
    if ref_classes is not None:
        torch.manual_seed(0)
        ref = reference_net(ref_classes, preset)
        with torch.no_grad():  # move layers initialised at ~1e-10 away from 0, for the check
            for p in ref.parameters():
                p.add_(0.02 * torch.randn_like(p))
        copy_reference_weights(ref, ours)
        with torch.no_grad():
            want = ref.eval()(x, labels)
            diff = (want - ours.eval()(x, labels)).abs().max().item() / want.abs().max().item()
        print(f"{name}: max |ours - reference| / max |reference| on one batch = {diff:.1e}")
        fwd["reference"], train["reference"] = forward_fn(ref, x, labels), train_fn(ref, x, labels)
    for variant, (net, xv) in our_variants(preset, ours, args.variants, x).items():
        if variant == "compile":  # compile both graphs outside the timed region
            start = time.perf_counter()
            forward_fn(net, xv, labels)()
            train_fn(net, xv, labels)()
            print(f"{name}: torch.compile warm-up took {time.perf_counter() - start:.0f} s")
        fwd[variant], train[variant] = forward_fn(net, xv, labels), train_fn(net, xv, labels)
    fwd_t = interleaved_times(fwd, args.repeats, args.warmup)
    train_t = interleaved_times(train, args.repeats, args.warmup)
    for impl in fwd:
        rows.append((name, impl, _stats(fwd_t, impl), _stats(train_t, impl)))
    return rows


def _stats(times: Dict[str, List[float]], impl: str):
    """(best, median) seconds, and the ratios to the reference's: of the best times, and the
    median of the per-round ratios (paired, so robust to load drifting between rounds)."""
    best, median = min(times[impl]), statistics.median(times[impl])
    ref = times.get("reference")
    if ref is None:
        return best, median, None, None
    paired = statistics.median(t / r for t, r in zip(times[impl], ref))
    return best, median, best / min(ref), paired


def print_table(rows, args) -> None:
    print(f"\nCPU, {torch.get_num_threads()} threads, batch {args.batch_size} at 32x32, "
          f"{args.repeats} interleaved rounds. ms: best / median; ratio = ours / reference: "
          f"of the best times / median of per-round ratios")
    print(f"{'network':<20} {'implementation':<15} {'forward ms':>13} {'fwd+bwd ms':>13} "
          f"{'forward ratio':>14} {'fwd+bwd ratio':>14}")

    def ratio(a, b):
        return f"{a:.2f} / {b:.2f}" if a is not None else "-"

    for name, impl, (fb, fm, fr, fp), (tb, tm, tr, tp) in rows:
        fwd_ms = f"{fb * 1e3:>6.0f} / {fm * 1e3:<5.0f}"
        train_ms = f"{tb * 1e3:>6.0f} / {tm * 1e3:<5.0f}"
        print(f"{name:<20} {impl:<15} {fwd_ms} {train_ms} {ratio(fr, fp):>14} {ratio(tr, tp):>14}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=None,
                        help="a score_sde_pytorch checkout to compare with (optional)")
    parser.add_argument("--models", nargs="+", default=["ddpmpp_continuous", "ncsnpp_continuous"])
    parser.add_argument("--variants", nargs="+", default=["eager", "channels_last"],
                        choices=["eager", "channels_last", "compile"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_classes = None
    if args.reference is not None:
        if (args.reference / "models" / "ncsnpp.py").exists():
            ref_classes = load_reference(args.reference)
        else:
            print(f"no score_sde_pytorch checkout at {args.reference}; timing ours only")
    rows = [row for name in args.models for row in bench_model(name, args, ref_classes)]
    print_table(rows, args)


if __name__ == "__main__":
    main()
