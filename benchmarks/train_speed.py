"""Training and sampling throughput of DDPM++ cont. and NCSN++ cont. (Song et al. 2021), beside
score_sde_pytorch's own training step and PC sampler on the same device.

    python benchmarks/train_speed.py [--device cuda] [--reference PATH/TO/score_sde_pytorch]
        [--batch-size 128] [--steps 30] [--warmup 5] [--networks ddpmpp ncsnpp]
        [--precisions fp32 bf16 fp16] [--compile off on] [--sample-batch 128]
        [--pc-steps 1000] [--dpm-steps 20] [--no-sampling]

Training: one optimizer step as the training loop runs it (`training.step.TrainStep`: loss,
backward, clipping, Adam, EMA, the device-side non-finite bookkeeping of `StepMonitor`) on a
fixed batch already on the device (data loading excluded for both sides), timed over `--steps`
steps between two device synchronisations after `--warmup` steps (and after compiling).
The reference: `losses.get_step_fn` of score_sde_pytorch with its own config for the same
network (`configs/vp/cifar10_ddpmpp_continuous.py`, `configs/ve/cifar10_ncsnpp_continuous.py`),
run in a subprocess importing its checkout (never copied here); its `op` CUDA extension is not
built, so its FIR resampling (NCSN++ only; DDPM++ has fir=False) runs its `upfirdn2d_native`.
Sampling: samples/s of PC (Euler–Maruyama, `--pc-steps`) for both, and of our `dpm_solver`
with `--dpm-steps` steps, DDPM++ only. Peak memory: `torch.cuda.max_memory_allocated` per row.
Ratios are ours / reference's time, measured in this one run (≤ 1: faster).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {   # ours, the reference's config, the reference's SDE
    "ddpmpp": ("configs/vp_cifar.py", "configs/vp/cifar10_ddpmpp_continuous.py", "vp"),
    "ncsnpp": ("configs/ve_cifar.py", "configs/ve/cifar10_ncsnpp_continuous.py", "ve"),
}


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, warmup: int, device) -> dict:
    """Seconds per call over `steps` calls between two synchronisations, and peak memory."""
    import torch

    cuda = torch.device(device).type == "cuda"
    start = time.perf_counter()
    fn()
    synchronize(device)
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        fn()
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
    return {"seconds": seconds, "first": first, "peak_gib": peak}


# ----------------------------------------------------------------------------------------- ours

def our_config(network: str, args, precision: str, compile_net: bool):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_config", ROOT / NETWORKS[network][0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.training.batch_size = args.batch_size
    config.training.precision = precision
    config.training.compile = compile_net
    config.training.channels_last = args.device.startswith("cuda")
    return config


def our_train_row(network: str, args, precision: str, compile_net: bool) -> dict:
    import torch

    from models.score_model import compiled
    from run.distributed import single_process
    from training.monitor import StepMonitor
    from training.precision import set_tf32
    from training.state import build_train_state
    from training.step import TrainStep

    device = torch.device(args.device)
    config = our_config(network, args, precision, compile_net)
    set_tf32(config.training.tf32)
    torch.manual_seed(0)
    state = build_train_state(config, device)
    step = TrainStep(state.model, state.loss_fn, state.optimizer, state.ema,
                     single_process(device), grad_clip=config.optim.grad_clip,
                     precision=precision, scaler=state.scaler,
                     forward_model=compiled(state.model) if compile_net else None)
    monitor = StepMonitor(device)
    size = config.data.image_size
    batch = torch.rand(args.batch_size, 3, size, size, device=device) * 2 - 1
    if config.training.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)

    def one_step():
        monitor.observe(step.step(batch, None, config.optim.lr, state.generator), state.step)
        state.step += 1

    result = timed(one_step, args.steps, args.warmup, device)
    monitor.read()   # the steps were finite
    return result


def our_sample_rows(args) -> list:
    import torch

    import samplers
    from evaluation.sampling import sampling_model
    from run.builders import build_score_model, build_sde

    device = torch.device(args.device)
    rows = []
    for precision in args.precisions:
        config = our_config("ddpmpp", args, precision, False)
        sde = build_sde(config)
        torch.manual_seed(0)
        model = sampling_model(build_score_model(config, sde, device).eval(), precision)
        shape = (args.sample_batch, 3, config.data.image_size, config.data.image_size)
        for method, steps in (("pc", args.pc_steps), ("dpm_solver", args.dpm_steps)):
            config.sampling.method, config.sampling.num_steps = method, steps
            sampler = samplers.build_sampler(config.sampling)

            def run():
                with torch.no_grad():
                    sampler(model, sde, shape, device=device,
                            generator=torch.Generator(device).manual_seed(0))

            rows.append({"what": f"{method} {steps} steps", "precision": precision,
                         **timed(run, 1, 1, device)})
    return rows


# ------------------------------------------------------------------------------------ reference

def reference_worker(path: str, network: str, device: str, batch_size: int, steps: int,
                     warmup: int, pc_steps: int, sample_batch: int) -> None:
    """Runs in a subprocess with the reference checkout first on sys.path; prints JSON rows."""
    sys.path.insert(0, path)
    import importlib.util

    import torch
    import torch.utils.cpp_extension as cpp_extension

    saved, cpp_extension.load = cpp_extension.load, lambda *a, **k: None
    import op
    cpp_extension.load = saved
    fir = sys.modules["op.upfirdn2d"]   # `op.upfirdn2d` itself is the function op re-exports

    def native(x, kernel, up=1, down=1, pad=(0, 0)):
        return fir.upfirdn2d_native(x, kernel, up, up, down, down, pad[0], pad[1], pad[0], pad[1])

    op.upfirdn2d = fir.upfirdn2d = native
    import losses
    import sampling
    import sde_lib
    from models import ddpm, ncsnpp  # noqa: F401 (registers the networks)
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage

    spec = importlib.util.spec_from_file_location("reference_config",
                                                  Path(path) / NETWORKS[network][1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.device = torch.device(device)
    config.training.batch_size = batch_size
    torch.manual_seed(0)
    model = mutils.create_model(config)
    optimizer = losses.get_optimizer(config, model.parameters())
    state = dict(optimizer=optimizer, model=model, step=0,
                 ema=ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate))
    if NETWORKS[network][2] == "vp":
        sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
    else:
        sde = sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max,
                            config.model.num_scales)
    step_fn = losses.get_step_fn(sde, train=True,
                                 optimize_fn=losses.optimization_manager(config),
                                 reduce_mean=config.training.reduce_mean,
                                 continuous=config.training.continuous,
                                 likelihood_weighting=config.training.likelihood_weighting)
    size = config.data.image_size
    batch = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    print(json.dumps({"kind": "train", **timed(lambda: step_fn(state, batch), steps, warmup,
                                               device)}), flush=True)
    if network != "ddpmpp" or not pc_steps:
        return
    sde.N = pc_steps
    sampler = sampling.get_pc_sampler(sde, (sample_batch, 3, size, size),
                                      sampling.get_predictor("euler_maruyama"),
                                      sampling.get_corrector("none"), lambda x: x, snr=0.16,
                                      continuous=config.training.continuous, device=device)
    model.eval()
    print(json.dumps({"kind": "sample", **timed(lambda: sampler(model), 1, 1, device)}),
          flush=True)


def reference_rows(args, network: str) -> dict:
    command = [sys.executable, __file__, "--reference-worker", args.reference, network,
               args.device, str(args.batch_size), str(args.steps), str(args.warmup),
               str(args.pc_steps if not args.no_sampling else 0), str(args.sample_batch)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=args.reference)
    if done.returncode:
        print(f"reference {network} failed:\n{done.stderr[-2000:]}")
        return {}
    return {row["kind"]: row for row in map(json.loads, done.stdout.strip().splitlines())}


# ---------------------------------------------------------------------------------------- table

def ratio_and_peak(row: dict):
    """The row's time ratio to the reference's and its peak memory, as table cells."""
    ref = row.get("reference_seconds")
    ratio = f"{row['seconds'] / ref:.2f}" if ref else "-"
    peak = f"{row['peak_gib']:.2f}" if row["peak_gib"] is not None else "-"
    return ratio, peak


def print_tables(train_rows, sample_rows, args) -> None:
    import torch

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{name}; torch {torch.__version__}; training batch {args.batch_size} at 32x32, "
          f"{args.steps} timed steps after {args.warmup}; ratio = our time / reference's")
    print(f"{'network':<8} {'impl':<10} {'precision':<9} {'compile':<7} {'steps/s':>8} "
          f"{'images/s':>9} {'ratio':>6} {'first s':>8} {'peak GiB':>8}")
    for row in train_rows:
        ratio, peak = ratio_and_peak(row)
        print(f"{row['network']:<8} {row['impl']:<10} {row['precision']:<9} "
              f"{row['compile']:<7} {1 / row['seconds']:>8.2f} "
              f"{args.batch_size / row['seconds']:>9.1f} {ratio:>6} {row['first']:>8.1f} "
              f"{peak:>8}")
    if sample_rows:
        print(f"\nSampling DDPM++ cont., batch {args.sample_batch}; ratio = our time / "
              f"reference PC's")
        print(f"{'sampler':<22} {'impl':<10} {'precision':<9} {'samples/s':>9} {'ratio':>6} "
              f"{'peak GiB':>8}")
        for row in sample_rows:
            ratio, peak = ratio_and_peak(row)
            print(f"{row['what']:<22} {row['impl']:<10} {row['precision']:<9} "
                  f"{args.sample_batch / row['seconds']:>9.2f} {ratio:>6} {peak:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reference", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"],
                        choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--compile-networks", nargs="+", default=["ddpmpp"],
                        help="networks timed compiled (each compilation takes minutes)")
    parser.add_argument("--sample-batch", type=int, default=128)
    parser.add_argument("--pc-steps", type=int, default=1000)
    parser.add_argument("--dpm-steps", type=int, default=20)
    parser.add_argument("--no-sampling", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda needs a CUDA GPU; use --device cpu for a smoke run")
    if "fp16" in args.precisions and not args.device.startswith("cuda"):
        args.precisions = [p for p in args.precisions if p != "fp16"]
    train_rows, sample_rows = [], []
    for network in args.networks:
        reference = reference_rows(args, network) if args.reference else {}
        if "train" in reference:
            train_rows.append({"network": network, "impl": "reference", "precision": "fp32",
                               "compile": "off", **reference["train"]})
        for precision in args.precisions:
            for mode in args.compile:
                if mode == "on" and network not in args.compile_networks:
                    continue
                row = our_train_row(network, args, precision, mode == "on")
                train_rows.append({"network": network, "impl": "score-sde",
                                   "precision": precision, "compile": mode, **row,
                                   "reference_seconds": reference.get("train", {}).get(
                                       "seconds")})
                print(f"{network} {precision} compile={mode}: {1 / row['seconds']:.2f} steps/s",
                      flush=True)
        if network == "ddpmpp" and not args.no_sampling:
            ref_sample = reference.get("sample")
            if ref_sample:
                sample_rows.append({"what": f"pc {args.pc_steps} steps", "impl": "reference",
                                    "precision": "fp32", **ref_sample})
            for row in our_sample_rows(args):
                row["impl"] = "score-sde"
                row["reference_seconds"] = ref_sample["seconds"] if ref_sample else None
                sample_rows.append(row)
    print_tables(train_rows, sample_rows, args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--reference-worker":
        path, network, device = sys.argv[2:5]
        batch_size, steps, warmup, pc_steps, sample_batch = map(int, sys.argv[5:10])
        reference_worker(path, network, device, batch_size, steps, warmup, pc_steps,
                         sample_batch)
    else:
        main()
