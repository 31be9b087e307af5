"""The ``llm-infer`` stage: batched generation on a conversation split, parsed, one row per slice."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from brats_llm import atomic
from brats_llm.config import at_least, between
from brats_llm.conversations.prompts import CLASS_ANSWERS, PROMPT_VERSION, TASKS
from brats_llm.errors import InputError, OutputError
# prompt_ids, prompt_texts, user_messages, LABEL_PREFIX: also imported from here by the other LLM stages
from brats_llm.llm.batch import (LABEL_PREFIX, batch_image_size, batch_inputs, batch_records,  # noqa: F401
                                 first_difference, prompt_ids, prompt_texts, user_messages)
from brats_llm.llm.decoding import check_decoding
from brats_llm.llm.model import (GENERAL_MODEL_DIR, adapter_record, check_adapter, is_smoke_model, load_model,
                                  model_family, model_note, read_revision)
from brats_llm.llm.shard import ranks as shard_ranks
from brats_llm.provenance import content_hash, file_digests, folder_files
from brats_llm.ranks import Ranks

log = logging.getLogger(__name__)

PREDICTIONS_FILE, RUN_FILE = "predictions.jsonl", "run.json"
#: Progress of an unfinished run, beside OUT_DIR (DVC deletes OUT_DIR itself before rerunning a stage).
RESUME_KEY, RESUME_BATCHES = "key.json", "batches.jsonl"
#: ``llm.backend`` values: who generates (:class:`InferParams`).
BACKENDS = ("hf", "vllm")
#: Files above this size are fingerprinted by size + mtime instead of their bytes.
LARGE_FILE = 256 << 20


def _default_tokens() -> dict[str, int]:
    return {"cls": 64, "center": 24, "bbox": 64, "polygon": 200}


@dataclass(frozen=True)
class InferParams:
    """``llm`` section of params.yaml: the model and how it decodes.

    Attributes:
        model: Hub id or local folder (embedded default: the tiny model; paper: unsloth/Llama-3.2-11B-Vision-Instruct).
        batch_size: slices per generate call (left padding).
        max_new_tokens: per task; answers cut at this length usually fail to parse (counted, not dropped).
        do_sample: greedy decoding when false (default; deterministic).
        temperature, top_p: used only with ``do_sample`` (Llama 3.2 Vision's generation_config: 0.6, 0.9).
        seed: sampling seed, set before every batch.
        split: conversation split to run on.
        max_rows: 0 = every row; N = N rows sampled across the split with ``seed`` (quick checks;
            kept in their dataset order, so patients are spread, not the first patient's slices).
        load_in_4bit: 4-bit NF4 base weights (bitsandbytes, CUDA only; an error elsewhere).
        backend: ``hf`` (transformers ``generate``, CPU or GPU) or ``vllm`` (vLLM's offline engine, CUDA only,
            families with ``Family.vllm``: :mod:`brats_llm.llm.vllm_backend`); same records either way.
        decoding: ``free`` (the paper) or ``json``: every token constrained to the task's JSON schema
            (:mod:`brats_llm.llm.decoding`): no format errors but for answers cut at ``max_new_tokens``.
    """

    model: str = GENERAL_MODEL_DIR
    batch_size: int = 16
    max_new_tokens: dict[str, int] = field(default_factory=_default_tokens)
    do_sample: bool = False
    temperature: float = 0.6
    top_p: float = 0.9
    seed: int = 2020
    split: str = "test"
    max_rows: int = 144
    load_in_4bit: bool = False
    backend: str = "hf"
    decoding: str = "free"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        check_decoding(self.decoding)
        missing = set(TASKS) - set(self.max_new_tokens)
        if missing:
            raise InputError(f"max_new_tokens needs a value for every task; missing {sorted(missing)}")
        at_least(self, 1, "batch_size", "max_new_tokens")
        at_least(self, 0, "seed", "max_rows")
        between(self, 0.0, 1.0, "top_p")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.model:
            raise ValueError("model must name a Hub id or a local folder")


def encode(processor, images: list, texts: list[str], *, padding_side: str):
    """Tokenise chat-templated ``texts`` with their images, as every path does (inference, scoring, training).

    ``images`` holds one PIL image per text, or one list of images per text.

    Every family's chat template writes its own start tokens (Mllama's ``<|begin_of_text|>``, which its
    tokenizer's post-processor would add a second time), so special tokens are never added here.
    """
    processor.tokenizer.padding_side = padding_side
    nested = [image if isinstance(image, list) else [image] for image in images]
    return processor(images=nested, text=texts, padding=True, return_tensors="pt", add_special_tokens=False)


def generation_inputs(processor, images: list, prompts: list[str]):
    """The exact ``generate`` input of one batch: left-padded, as the chat template and processor write it."""
    return encode(processor, images, prompts, padding_side="left")


def json_processors(processor, images: list, task: str | None, prompt_length: int):
    """The logits processors of ``decoding: json``: ``task``'s schema bounded by the batch's image size."""
    from transformers import LogitsProcessorList

    from brats_llm.llm import decoding

    if task is None:
        raise ValueError("decoding='json' needs the task, whose answer schema it enforces")
    schema = decoding.json_schema(task, batch_image_size(images))
    return LogitsProcessorList([decoding.JsonSchemaLogitsProcessor(processor.tokenizer, schema, prompt_length)])


def generate(model, processor, images: list, prompts: list[str], *, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, decoding: str = "free",
             task: str | None = None) -> list[str]:
    """Decode answers for one batch (one image per prompt); greedy unless ``do_sample``.

    ``decoding="json"`` constrains every answer to ``task``'s JSON schema (:mod:`brats_llm.llm.decoding`).
    """
    import torch

    check_decoding(decoding)
    inputs = generation_inputs(processor, images, prompts).to(model.device)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "pad_token_id": processor.tokenizer.pad_token_id}
    if decoding == "json":
        options["logits_processor"] = json_processors(processor, images, task, inputs["input_ids"].shape[1])
    if do_sample:
        torch.manual_seed(seed)
        options.update(temperature=temperature, top_p=top_p)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        output = model.generate(**inputs, **options)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def label_probabilities(model, processor, images: list, prompts: list[str]) -> np.ndarray:
    """P(HGG) per slice from the log-likelihood of the two label continuations after :data:`LABEL_PREFIX`.

    Both answers ("...LGG-0", "...HGG-1") are scored in one forward pass (teacher forcing) from the
    first token where their tokenisations differ (a BPE pre-tokenizer, as Llama 3's, may merge the
    quote with the label), so both are conditioned on the same context. The probability is renormalised over
    the two labels; "NG-2" and free text do not enter it.
    """
    import torch

    tokenizer = processor.tokenizer
    labels = [CLASS_ANSWERS[0], CLASS_ANSWERS[1]]
    texts, starts, lengths = [], [], []
    for prompt in prompts:
        ids = [tokenizer(prompt + LABEL_PREFIX + label, add_special_tokens=False)["input_ids"] for label in labels]
        common = first_difference(*ids)
        for label, label_ids in zip(labels, ids):
            texts.append(prompt + LABEL_PREFIX + label)
            starts.append(common)
            lengths.append(len(label_ids))
    inputs = encode(processor, [image for image in images for _ in labels], texts, padding_side="right").to(model.device)
    # A processor that repeats each image token per patch (Qwen2.5-VL) lengthens the prompt, never the label:
    # shift each start by the row's added tokens (right padding: its attention mask counts its length).
    starts = [start + int(n) - length for start, n, length in zip(starts, inputs["attention_mask"].sum(dim=1), lengths)]
    # Logits only from the position before the earliest scored token (the 128k-token vocabulary makes
    # full-sequence logits the dominant cost): positions first..L-1 predict tokens first+1..L.
    length, first = inputs["input_ids"].shape[1], min(starts) - 1
    with torch.inference_mode():
        logits = model(**inputs, logits_to_keep=length - first).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    ids = inputs["input_ids"][:, first + 1:].clamp(max=logits.shape[-1] - 1)  # image tokens may lie past the vocab
    token_lp = log_probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    positions = torch.arange(first + 1, length, device=ids.device).unsqueeze(0)
    start = torch.tensor(starts, device=ids.device).unsqueeze(1)
    keep = (positions >= start) & (inputs["attention_mask"][:, first + 1:] == 1)
    scores = (token_lp * keep).sum(dim=1).view(len(prompts), len(labels))
    return torch.softmax(scores, dim=1)[:, 1].cpu().numpy().astype(float)


def sample_rows(total: int, max_rows: int, seed: int) -> list[int] | None:
    """Row indices kept by ``max_rows``: None for all; else ``max_rows`` drawn without replacement with
    ``seed`` (numpy PCG64), sorted, so a quick run covers many patients and keeps the dataset order."""
    if not max_rows or max_rows >= total:
        return None
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


def _load_rows(revision_file: str | os.PathLike, task: str, split: str, max_rows: int, seed: int | None = None):
    """The split's rows; ``max_rows`` of them sampled with ``seed`` (:func:`sample_rows`), or the first
    ``max_rows`` when ``seed`` is None."""
    from brats_llm.publish.pinned import load_published

    config = f"conversations-{task}"
    splits = load_published(revision_file, config)
    if split not in splits:
        raise InputError(f"{revision_file}: config {config} has no split {split!r} (has {sorted(splits)})")
    rows = splits[split]
    if seed is None:
        return rows.select(range(min(max_rows, len(rows)))) if max_rows else rows
    keep = sample_rows(len(rows), max_rows, seed)
    return rows if keep is None else rows.select(keep)


def resume_dir(out_dir: str | os.PathLike) -> Path:
    """Hidden sibling of ``out_dir`` holding an unfinished run's batches (``.<name>.resume``)."""
    out_dir = Path(os.path.abspath(out_dir))
    return out_dir.with_name(f".{out_dir.name}.resume")


def _fingerprint(path: str | os.PathLike | None) -> str | None:
    """Content hash of a local file or folder's files (names + bytes; size + mtime above :data:`LARGE_FILE`);
    None for no path; a Hub id as given."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return str(path)
    root, files = (path.parent, [path]) if path.is_file() else (path, folder_files(path))
    return content_hash(file_digests(root, files, large=LARGE_FILE))


def run_key(task: str, revision_file: str | os.PathLike, params: InferParams,
            adapter: str | os.PathLike | None) -> dict[str, Any]:
    """What a run's answers depend on: resumed batches are reused only when every field is equal."""
    return {"task": task, "revision_file": _fingerprint(revision_file), "model": params.model,
            "model_files": _fingerprint(params.model), "adapter": str(adapter) if adapter else None,
            "adapter_files": _fingerprint(adapter), "params": asdict(params), "prompt_version": PROMPT_VERSION}


def _log_name(rank: int) -> str:
    """Rank 0 appends to ``batches.jsonl``, rank r > 0 to ``batches.rank<r>.jsonl``."""
    return RESUME_BATCHES if rank == 0 else f"batches.rank{rank}.jsonl"


def _read_log(path: Path, *, truncate: bool = False) -> dict[int, list[dict[str, Any]]]:
    """Finished batches (by start row) of one batch log; a torn last line (a kill while appending)
    ends it, and is cut off with ``truncate``."""
    done: dict[int, list[dict[str, Any]]] = {}
    good = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                entry = json.loads(line)
            except ValueError:
                break
            done[entry["start"]] = entry["records"]
            good += len(line)
    if truncate:
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return done


def _read_logs(folder: Path) -> dict[int, list[dict[str, Any]]]:
    """Finished batches of every rank's log in ``folder`` (any earlier world size)."""
    done: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("batches*.jsonl")):
        done.update(_read_log(path))
    return done


@contextlib.contextmanager
def _progress(folder: Path, key: dict[str, Any], ranks: Ranks | None = None):
    """Open this rank's batch log in ``folder`` for appending, locked; yield (finished batches of every
    rank's log by start row, handle).

    Rank 0 checks the key first: a folder written for another key is emptied (logged), torn last
    lines are cut; then every rank reads every log, so a run resumes whatever the earlier world size.
    """
    ranks = ranks or Ranks()
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder / ("lock" if ranks.main else f"lock.rank{ranks.rank}"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{folder} is in use by another llm-infer run on the same output") from None
        if ranks.main:
            key_file = folder / RESUME_KEY
            saved = json.loads(key_file.read_text()) if key_file.is_file() else None
            logs = sorted(folder.glob("batches*.jsonl"))
            if saved == key:
                for path in logs:
                    _read_log(path, truncate=True)
            else:
                if saved is not None:
                    log.info("progress in %s was for other inputs (revision, task, model, adapter or params); "
                             "starting fresh", folder)
                for path in logs:
                    path.unlink()
                atomic.write_json(key_file, key)
        ranks.barrier()
        done = _read_logs(folder)
        if done and ranks.main:
            log.info("resuming from %s: %d finished batches", folder, len(done))
        with open(folder / _log_name(ranks.rank), "a", encoding="utf-8") as handle:
            yield done, handle
    finally:
        os.close(lock)


def infer(task: str, revision_file: str | os.PathLike, out_dir: str | os.PathLike, params: InferParams, *,
          adapter: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``task`` on the pinned conversation split; write ``predictions.jsonl`` and ``run.json``.

    Every slice gets a row: raw response, parse status (ok / format_error / invalid_value),
    parsed prediction; classification rows also get ``p_hgg`` from the label probabilities.

    Finished batches are appended to ``.<name>.resume/`` beside ``out_dir`` as they complete; a
    rerun with the same inputs and params (:func:`run_key`) generates only the missing batches, and
    its output is byte-identical to an uninterrupted run. ``out_dir`` appears at the end, whole;
    then the progress folder is removed.

    Under ``torchrun --nproc_per_node N`` (or ``accelerate launch``) batch ``i`` is answered by rank
    ``i % N`` (one GPU per rank; gloo on CPU), each rank appending to its own log in the progress
    folder (which all ranks must see: one machine, or a shared filesystem); after a barrier rank 0
    gathers the logs and writes ``out_dir``. Seeds depend on the batch, so ``predictions.jsonl`` is
    byte-identical to the single-process run; ``run.json`` differs only in ``world_size`` and
    ``rows_per_rank`` (rows in each rank's share).

    Returns:
        The run record (counts per parse status, model, adapter, dataset revision), on every rank.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks are {TASKS}")
    ranks = shard_ranks()  # before anything starts CUDA: pins this rank's GPU
    revision = read_revision(revision_file)
    if adapter:
        check_adapter(adapter)
    answer_batch = _answer_batch
    load = lambda: load_model(params.model, adapter, load_in_4bit=params.load_in_4bit)  # noqa: E731
    if params.backend == "vllm":  # refused here, before any row is read, when it cannot run
        from brats_llm.llm import vllm_backend

        vllm_backend.check_vllm(model_family(params.model), params.model, adapter, world=ranks.world)
        answer_batch, load = vllm_backend.answer_batch_vllm, lambda: vllm_backend.load_engine(params, adapter)
    rows = _load_rows(revision_file, task, params.split, params.max_rows, params.seed)
    folder = resume_dir(out_dir)
    meta = rows.remove_columns(["images", "messages"])
    batches = list(range(0, len(rows), params.batch_size))
    mine = [batches[i] for i in ranks.share(len(batches))]
    model = processor = None
    with _progress(folder, run_key(task, revision_file, params, adapter), ranks) as (done, log_handle):
        for start in tqdm(mine, desc=f"llm-infer {task}", unit="batch", disable=not progress or not ranks.main):
            if start in done:
                continue
            if model is None:  # the HF model or the vLLM engine, loaded once, only when a batch is left
                model, processor = load()
            batch_records = answer_batch(task, model, processor, rows, meta, start, params)
            log_handle.write(json.dumps({"start": start, "records": batch_records}, sort_keys=True) + "\n")
            log_handle.flush()
            os.fsync(log_handle.fileno())
    ranks.barrier()  # every rank's batches are on disk
    run = None
    if ranks.main:
        finished = _read_logs(folder)
        missing = [start for start in batches if start not in finished]
        if missing:
            raise OutputError(f"{folder}: batches starting at rows {missing[:5]} were not answered by any rank")
        records = [record for start in batches for record in finished[start]]
        statuses = {status: sum(1 for r in records if r["status"] == status)
                    for status in ("ok", "format_error", "invalid_value")}
        shares = [[batches[i] for i in Ranks(ranks.world, r).share(len(batches))] for r in range(ranks.world)]
        run = {"task": task, "model": params.model, "smoke_model": is_smoke_model(params.model),
               "model_trained_on": model_note(params.model), "architecture": model_family(params.model).architecture,
               "adapter": str(adapter) if adapter else None, "adapter_record": adapter_record(adapter),
               "dataset": {"repo_id": revision.get("repo_id"), "revision": revision["revision"],
                           "config": f"conversations-{task}", "split": params.split},
               "prompt_version": PROMPT_VERSION, "params": asdict(params), "rows": len(records), "status": statuses,
               "world_size": ranks.world,
               "rows_per_rank": [sum(min(params.batch_size, len(rows) - s) for s in share) for share in shares]}
        with atomic.atomic_dir(out_dir, kind="predictions") as staging:
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
            atomic.write_text(staging / PREDICTIONS_FILE, text)
            atomic.write_json(staging / RUN_FILE, run)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("%s: %d rows, %s", task, len(records), statuses)
    return ranks.broadcast(run)


def _answer_batch(task: str, model, processor, rows, meta, start: int, params: InferParams) -> list[dict[str, Any]]:
    """Generate, parse and (cls) score the batch of rows starting at ``start`` with transformers."""
    images, prompts = batch_inputs(processor, rows, start, params.batch_size)
    answers = generate(model, processor, images, prompts, max_new_tokens=params.max_new_tokens[task],
                       do_sample=params.do_sample, temperature=params.temperature, top_p=params.top_p,
                       seed=params.seed + start, decoding=params.decoding, task=task)
    p_hgg = label_probabilities(model, processor, images, prompts) if task == "cls" else None
    return batch_records(task, meta, start, images, answers, p_hgg)


def read_predictions(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of ``predictions.jsonl`` and the ``run.json`` record of one inference run."""
    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines() if line.strip()]
    return rows, json.loads((run_dir / RUN_FILE).read_text())
