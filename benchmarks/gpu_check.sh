#!/usr/bin/env bash
# The GPU path measured on one CUDA machine, in under 10 minutes, beside score_sde_pytorch:
# training steps/s and images/s of DDPM++ cont. (batch 128, 32x32) and NCSN++ cont. in fp32,
# bf16 and fp16, DDPM++ with and without torch.compile, peak memory, and sampling throughput
# (PC 1000 steps against the reference's PC sampler, dpm_solver 20 steps).
#
#   bash benchmarks/gpu_check.sh [PATH/TO/score_sde_pytorch]
#
# Run from the repository root after `pip install -e .`. The reference checkout (never
# committed) may sit in an ignored folder of the repository, e.g. .peers/score_sde_pytorch,
# so that it travels with the working tree to a remote GPU machine.
set -euo pipefail
REFERENCE=${1:-.peers/score_sde_pytorch}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
ARGS=(--device cuda --batch-size 128 --steps 30 --warmup 5 --sample-batch 128
      --pc-steps 1000 --dpm-steps 20)
if [ -d "$REFERENCE" ]; then
    ARGS+=(--reference "$(cd "$REFERENCE" && pwd)")
else
    echo "no score_sde_pytorch checkout at $REFERENCE: our rows only"
fi
timeout 560 python benchmarks/train_speed.py "${ARGS[@]}"
