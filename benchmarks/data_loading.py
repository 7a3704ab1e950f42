"""Streaming your own images: the loader's images/s against what a training step consumes, the
training process's peak memory against the data set's size, and the time to the first step.

    python benchmarks/data_loading.py [--sizes 300 30000 300000] [--image-size 32]
        [--workers 0 1 2] [--no-folder] [--npy-gib 3] [--tmp /tmp/score-sde-data-bench]
        [--out benchmarks/results]

Data: zips of random RGB PNGs (`--image-size` square), written once under `--tmp` (the largest
also extracted to a folder of files, and a memory-mapped `.npy` of `--npy-gib` GiB).
Loader: `data.loader.StepBatches` (index order, decoding, resize/crop, collation; the same path
training takes) over the largest zip of at most 30,000 images, batches of 128, timed after the
first batch. Consumption: images/s of one optimizer step (`training.step.TrainStep`, CPU, fp32)
of configs/vp_digits.py at its batch size and of configs/image_folder.py (DDPM++ nf=32) at
`--image-size`, batch 64. Memory and first step: `main.py --mode train` on each zip for one
step in a fresh process (a tiny DDPM++, batch 32, streamed or held in memory as chosen by size),
its peak RSS (`ru_maxrss` of the largest process) and wall time from start to exit (imports,
index of the zip, first step, checkpoint), once with no index and once with the workdir's
cached index. Prints a markdown table and writes it to `--out/data_loading.md`.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_zip(path: Path, count: int, size: int) -> Path:
    """A zip of `count` random `size`² RGB PNGs in 10 class folders (written once)."""
    import io

    import numpy as np
    from PIL import Image

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    partial = path.with_suffix(".partial")
    tiles = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(64)]
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            buffer = io.BytesIO()
            Image.fromarray(np.roll(tiles[i % 64], i // 64, axis=1)).save(buffer, "png",
                                                                            compress_level=1)
            archive.writestr(f"c{i % 10}/{i:07d}.png", buffer.getvalue())
    os.replace(partial, path)
    return path


def make_folder(archive: Path) -> Path:
    """The zip's images as a folder of files beside it (extracted once)."""
    folder = archive.with_suffix("")
    if not folder.exists():
        partial = folder.with_name(folder.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        with zipfile.ZipFile(archive) as z:
            z.extractall(partial)
        os.replace(partial, folder)
    return folder


def make_npy(path: Path, gib: float, size: int) -> Path:
    """A `.npy` of uint8 images `[N, size, size, 3]` taking `gib` GiB (written once)."""
    import numpy as np

    if path.exists():
        return path
    count = int(gib * 2**30) // (size * size * 3)
    partial = path.with_name(path.stem + ".partial.npy")
    array = np.lib.format.open_memmap(partial, "w+", np.uint8, (count, size, size, 3))
    block = np.random.default_rng(0).integers(0, 256, (4096, size, size, 3), dtype=np.uint8)
    for start in range(0, count, len(block)):
        stop = min(count, start + len(block))
        array[start:stop] = block[:stop - start]
    array.flush()
    del array
    os.replace(partial, path)
    return path


def loader_rate(path: Path, size: int, workers: int, batches: int = 40) -> float:
    """Images/s that `StepBatches` delivers from the zip with `workers` processes."""
    from data.folder import build_index, split_index
    from data.lazy import FolderImages
    from data.loader import LoaderSettings, StepBatches
    from data.order import BatchOrder

    part = split_index(build_index(path), "train")
    images = FolderImages(part.reader, part.rows, size, 3)
    order = BatchOrder(len(images), 128, seed=0)
    stream = StepBatches(images, part.labels, order, 0, batches + 1, LoaderSettings(workers))
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    seconds = time.perf_counter() - start
    stream.close()
    return batches * 128 / seconds


def step_rate(config_file: str, overrides: dict, steps: int = 3) -> float:
    """Images/s one CPU training step of `config_file` consumes."""
    import torch

    import importlib.util

    from run.distributed import single_process
    from training.state import build_train_state
    from training.step import TrainStep

    spec = importlib.util.spec_from_file_location("bench_config", ROOT / config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for dotted, value in overrides.items():
        section, name = dotted.split(".")
        config[section][name] = value
    info = single_process("cpu")
    state = build_train_state(config, info.device)
    stepper = TrainStep(state.model, state.loss_fn, state.optimizer, state.ema, info,
                        grad_clip=config.optim.grad_clip)
    shape = (config.training.batch_size, config.data.num_channels, config.data.image_size,
             config.data.image_size)
    batch = torch.rand(shape) * 2 - 1
    stepper.step(batch, None, 1e-4, state.generator)
    start = time.perf_counter()
    for _ in range(steps):
        stepper.step(batch, None, 1e-4, state.generator)
    return steps * shape[0] / (time.perf_counter() - start)


def first_step(path: Path, size: int, workdir: Path, n_iters: int = 1, *extra) -> tuple:
    """(peak RSS in MiB, wall seconds) of `main.py --mode train` on `path` up to step
    `n_iters` (one step: a fresh workdir with 1, a resumed one with 2)."""
    command = [sys.executable, "main.py", "--config=configs/image_folder.py",
               f"--workdir={workdir}", "--mode=train", f"--config.data.path={path}",
               f"--config.data.image_size={size}", "--config.model.nf=8",
               "--config.model.ch_mult=(1, 2)", "--config.model.attn_resolutions=()",
               "--config.model.num_res_blocks=1", "--config.training.batch_size=32",
               f"--config.training.n_iters={n_iters}", "--config.training.snapshot_sampling=False",
               "--config.training.eval_freq=1000", *extra]
    start = time.perf_counter()
    usage = subprocess.run(["python", "-c", (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"),
        *command], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    seconds = time.perf_counter() - start
    if usage.returncode:
        raise RuntimeError(usage.stderr[-2000:])
    return int(usage.stdout.split()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 30_000, 300_000])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()) /
                        "score-sde-data-bench")
    parser.add_argument("--folder", action=argparse.BooleanOptionalAction, default=True,
                        help="also train on the largest set extracted to a folder of files")
    parser.add_argument("--npy-gib", type=float, default=3.0,
                        help="also train one step on a memory-mapped .npy of this size (0: no)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    args.tmp.mkdir(parents=True, exist_ok=True)
    size = args.image_size
    zips = {n: make_zip(args.tmp / f"images_{n}_{size}.zip", n, size) for n in args.sizes}
    lines = [f"Host: {os.cpu_count()} cores; {size}×{size} RGB PNGs in stored zips; CPU, fp32.",
             "", "| loader workers | images/s |", "|---|---|"]
    probe = zips[max(n for n in args.sizes if n <= 30_000)]
    rates = {w: loader_rate(probe, size, w) for w in args.workers}
    lines += [f"| {w} | {rate:,.0f} |" for w, rate in rates.items()]
    consumers = {"vp_digits (8×8, its batch size)": ("configs/vp_digits.py", {}),
                 f"image_folder DDPM++ nf=32 ({size}×{size}, batch 64)":
                     ("configs/image_folder.py", {"data.image_size": size,
                                                  "training.batch_size": 64})}
    lines += ["", "| training step | images/s consumed | loader (2 workers) / step |",
              "|---|---|---|"]
    best = rates.get(2, max(rates.values()))
    for name, (config_file, overrides) in consumers.items():
        rate = step_rate(config_file, overrides)
        lines.append(f"| {name} | {rate:,.0f} | {best / rate:,.1f}× |")
    lines += ["", "| images | decoded size | held | peak RSS (MiB) | "
              "time to first step, no index (s) | with the cached index (s) |",
              "|---|---|---|---|---|---|"]
    from data.datasets import IN_MEMORY_BYTES
    sources = [(n, "zip", path) for n, path in zips.items()]
    if args.folder:
        largest = max(args.sizes)
        sources.append((largest, "folder", make_folder(zips[largest])))
    for n, kind, path in sources:
        workdir = args.tmp / f"work_{kind}_{n}"
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
        rss, cold = first_step(path, size, workdir)
        _, warm = first_step(path, size, workdir, n_iters=2)   # resumes for one more step
        decoded = n * 3 * size * size
        held = "memory" if decoded <= IN_MEMORY_BYTES else "streamed"
        lines.append(f"| {n:,} ({kind}) | {decoded / 2**20:,.0f} MiB | {held} | {rss:,.0f} | "
                     f"{cold:.1f} | {warm:.1f} |")
    if args.npy_gib:
        path = make_npy(args.tmp / f"images_{args.npy_gib:g}gib_{size}.npy", args.npy_gib, size)
        workdir = args.tmp / "work_npy"
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
        rss, cold = first_step(path, size, workdir, 1, "--config.data.dataset=npy")
        count = path.stat().st_size // (3 * size * size)
        held = "memory" if path.stat().st_size <= IN_MEMORY_BYTES else "streamed"
        lines.append(f"| {count:,} (`.npy`, {args.npy_gib:g} GiB, memory-mapped) | "
                     f"{path.stat().st_size / 2**20:,.0f} MiB | {held} | {rss:,.0f} | "
                     f"{cold:.1f} | – |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_loading.md").write_text(
        "# Data loading (benchmarks/data_loading.py)\n\n" + table + "\n")


if __name__ == "__main__":
    main()
