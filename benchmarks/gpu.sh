#!/usr/bin/env bash
# The GPU benchmark from a bare checkout: marks a CIFAR-10-shaped pre-activation ResNet-18 with bf16 and
# torch.compile on and off (benchmarks/gpu.py has the details). Meant for a machine with one GPU, in
# under 5 minutes:
#   bash benchmarks/gpu.sh                    # all four settings, results in gpu-benchmark.json
#   bash benchmarks/gpu.sh --smoke            # a tiny run of every code path (any device)
#   bash benchmarks/gpu.sh --data cifar10:DIR # real CIFAR-10 instead of synthetic data
# A torch that already sees a GPU (system site-packages) is reused; otherwise the default PyPI wheel
# (CUDA on Linux x86_64) is installed, or BACKMARK_TORCH if set.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BACKMARK_VENV:-.venv-gpu}
TORCH=${BACKMARK_TORCH:-torch}
if [ ! -x "$VENV/bin/python" ]; then
    if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        python3 -m venv --system-site-packages "$VENV"   # keep the machine's CUDA torch
    else
        python3 -m venv "$VENV"
    fi
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing $TORCH into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -e .
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >&2
exec "$VENV/bin/python" benchmarks/gpu.py "$@"
