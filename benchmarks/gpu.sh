#!/usr/bin/env bash
# Everything GPU-related in one command (under 8 minutes on one CUDA GPU):
#   bash benchmarks/gpu.sh            # on a machine with a GPU → benchmarks/results/gpu-latest.md
#   bash benchmarks/gpu.sh --dry-run  # the same plumbing on the CPU, tiny sizes (CI runs this)
# Needs equignnmd importable (pip install -e . or the repo's .venv); cuEquivariance rows run
# when cuequivariance_torch is installed, else they say why they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
python -c "import equignnmd" 2>/dev/null || pip install -q --no-deps -e .
exec timeout 480 python benchmarks/gpu.py "$@"
