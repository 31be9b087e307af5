#!/usr/bin/env bash
# One-call GPU check (device tool): installs the carried wheels into /tmp, runs gpu_check.py, writes to $OUT.
#   device run: command "bash benchmarks/gpu/run.sh", carry ["benchmarks/gpu/wheels"], timeout_s 600
# Extra arguments go to gpu_check.py (e.g. --parts cnn,real). Outputs: $OUT/gpu_check.json, gpu_check.log, pip.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${OUT:-/tmp/brats-gpu-out}
mkdir -p "$OUTDIR"
SITE=/tmp/brats-gpu-site
PY=${PYTHON:-python3}
start=$(date +%s)
if compgen -G "benchmarks/gpu/wheels/*.whl" >/dev/null; then
  # --no-deps: the manifest (benchmarks/gpu/wheels.txt) names every missing dependency explicitly.
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    benchmarks/gpu/wheels/*.whl >"$OUTDIR/pip.log" 2>&1 || echo "pip install failed (see pip.log); running anyway"
else
  echo "no wheels in benchmarks/gpu/wheels: run benchmarks/gpu/fetch_wheels.sh here and carry that folder" | tee "$OUTDIR/pip.log"
fi
echo "wheels installed in $(( $(date +%s) - start ))s"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
# No network on the GPU machine: keep every library offline and quiet.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
  HF_HUB_DISABLE_XET=1 UNSLOTH_DISABLE_STATISTICS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false \
  PYTHONUNBUFFERED=1 HF_HOME=/tmp/brats-gpu-hf
timeout -k 5 560 "$PY" benchmarks/gpu/gpu_check.py --out "$OUTDIR/gpu_check.json" "$@" 2>&1 | tee "$OUTDIR/gpu_check.log"
echo "run.sh done in $(( $(date +%s) - start ))s; JSON: $OUTDIR/gpu_check.json"
