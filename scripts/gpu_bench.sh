#!/usr/bin/env bash
# Pretraining throughput on a GPU machine: ResNet-50, batch 512, bfloat16, XLA.
# Prints the three JSON rows of simclr.bench.train (full step, encoder-only ceiling,
# their ratio) plus the GPU it ran on. Runs in well under 5 minutes on an A100/H100.
# Usage: scripts/gpu_bench.sh [extra flags for python -m simclr.bench.train]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
export PYTHONPATH="components${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import tensorflow as tf, sys; g = tf.config.list_physical_devices('GPU'); print('GPUs:', g); sys.exit(0 if g else 'error: TensorFlow sees no GPU (install simclr-kfp[gpu])')"
exec timeout 280 "$PY" -m simclr.bench.train --encoders=resnet50 --batch_size=512 \
  --precision=bfloat16 --jit_compile=true --warmup_steps=5 --steps=30 "$@"
