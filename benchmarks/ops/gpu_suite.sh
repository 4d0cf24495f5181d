#!/usr/bin/env bash
# The operator library's whole GPU check in under 8 minutes: ceilings, correctness the Triton
# interpreter cannot check (bf16 kernels, FP8 stores), then every op as % of its ceiling.
# Usage: benchmarks/ops/gpu_suite.sh [REPORT.json]   (default: $OUT/ops_gpu_suite.json, or
# runs/ops_gpu_suite.json without $OUT). Exit 0 = all correctness checks passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
report="${1:-${OUT:-runs}/ops_gpu_suite.json}"
mkdir -p "$(dirname "$report")"
[ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3
unset TRITON_INTERPRET
# 470 s hard stop leaves the report of every finished section; the python budget (400 s)
# skips performance cases that would start after it.
timeout 470 "$PY" benchmarks/ops/gpu_suite.py --out "$report" --budget 400
