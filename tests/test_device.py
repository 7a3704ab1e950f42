"""`--device`: cpu, cuda, cuda:N, checked before any work."""
from pathlib import Path

import pytest
import torch

import main
from cli.device import check_device
from cli.validate import ConfigError

TOY = str(Path(__file__).resolve().parents[1] / "configs" / "toy_gmm.py")
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def test_names():
    assert check_device("") is None
    assert check_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cpu:0", "cuda:x", "cuda:-1", "mps"):
        with pytest.raises(ConfigError, match="expected 'cpu', 'cuda' or 'cuda:N'"):
            check_device(bad)


def test_fp16_on_the_cpu_is_refused():
    from configs.toy_gmm import get_config

    config = get_config()
    config.sampling.precision = "fp16"
    with pytest.raises(ConfigError, match="config.sampling.precision='fp16' needs a CUDA GPU"):
        check_device("cpu", config=config)
    config.sampling.precision = "bf16"
    assert check_device("cpu", config=config) == torch.device("cpu")


@pytest.mark.skipif(GPUS > 0, reason="checks a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    for value in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            check_device(value)


@pytest.mark.skipif(GPUS == 0, reason="needs a CUDA GPU")
def test_cuda_indices():
    assert check_device("cuda") == torch.device("cuda")
    assert check_device(f"cuda:{GPUS - 1}") == torch.device("cuda", GPUS - 1)
    with pytest.raises(ConfigError, match=f"has {GPUS} CUDA GPU"):
        check_device(f"cuda:{GPUS}")
    with pytest.raises(ConfigError, match="local rank"):
        check_device("cuda:0", world_size=2)


@pytest.mark.parametrize("value", ["gpu", f"cuda:{GPUS}"])
def test_bad_device_exits_2_before_any_work(capsys, tmp_path, value):
    workdir = tmp_path / "run"
    status = main.run(["main.py", f"--config={TOY}", f"--workdir={workdir}", f"--device={value}"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "--device" in err, err
    assert not workdir.exists()


def test_cpu_device_trains(tmp_path):
    workdir = tmp_path / "run"
    status = main.run(["main.py", f"--config={TOY}", f"--workdir={workdir}", "--device=cpu",
                       "--config.training.n_iters=2", "--config.training.snapshot_sampling=False",
                       "--config.training.batch_size=8"])
    assert status == 0 and (workdir / "checkpoints-meta" / "checkpoint.pth").is_file()


def test_help_lists_the_flag(capsys):
    assert main.run(["main.py", "--help"]) == 0
    assert "--device        Where to compute: cpu, cuda or cuda:N" in capsys.readouterr().out
