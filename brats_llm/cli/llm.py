"""Commands of the vision-LLMs: inference, fine-tuning, consistency, scoring, inspection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from brats_llm.cli.options import friendly_errors, guard, param_value, params_option, resolve
from brats_llm.outputs import pinned_folder


TASK_CHOICE = click.Choice(["cls", "center", "bbox", "polygon"])
MODEL_HELP = ("Base model: Hub id (paper: unsloth/Llama-3.2-11B-Vision-Instruct) or local folder. dvc.yaml passes "
              "${llm.model}, so `dvc exp run -S llm.model=...` switches every LLM stage.")


def llm_model(model: str | None, params_file: Path | None) -> str:
    """``--model`` when given, else params ``llm.model`` (the one key of the llm section other LLM commands read)."""
    if model:
        return model
    from brats_llm.llm.model import GENERAL_MODEL_DIR

    return param_value(params_file, "llm", "model", str, "") or GENERAL_MODEL_DIR


@click.command("llm-infer")
@click.option("--task", type=TASK_CHOICE, required=True, help="Which conversation config to answer.")
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", help=f"{MODEL_HELP} [params: llm.model]")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="LoRA adapter folder (from llm-finetune) applied on the base model.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Slices per generate call [params: llm.batch_size].")
@click.option("--max-rows", type=click.IntRange(min=0),
              help="Only N rows, sampled across patients with llm.seed, in dataset order (0 = all) [params: llm.max_rows].")
@click.option("--backend", type=click.Choice(["hf", "vllm"]),
              help="hf = transformers generate (CPU/GPU); vllm = vLLM's engine (CUDA, pip install vllm; families vLLM "
                   "serves, not Mllama) [params: llm.backend].")
@params_option
@friendly_errors
def llm_infer(task: str, revision_file: Path, out_dir: Path, model: str | None, adapter: Path | None,
              batch_size: int | None, max_rows: int | None, backend: str | None, params_file: Path | None) -> None:
    """Answer one task's conversation split with a vision-LLM; write OUT_DIR/predictions.jsonl + run.json.

    The dataset is loaded by the revision pinned in REVISION_FILE (data/hub_revision.json). Batched,
    greedy decoding unless llm.do_sample; max new tokens per task. Every slice keeps a row: raw
    response, parse status (ok / format_error / invalid_value) and parsed value; classification
    rows also get p_hgg, the label-token probability of HGG-1 vs LGG-0. Score with evaluate-llm.
    Finished batches are kept in .<OUT_DIR name>.resume/ beside OUT_DIR: an interrupted run, rerun
    with the same inputs and params, generates only the missing batches (same output bytes).
    llm.load_in_4bit loads 4-bit weights (CUDA + bitsandbytes only). llm.decoding: json constrains
    every answer to the task's JSON schema (llguidance); free (default) decodes as the paper.

    Under torchrun (or accelerate launch) the batches are shared between the ranks, one GPU each
    (gloo on CPU), and rank 0 writes OUT_DIR: predictions.jsonl is byte-identical to a single-process
    run; run.json differs only in world_size and rows_per_rank. E.g. on 4 GPUs:
    torchrun --nproc_per_node 4 $(which brats-llm) llm-infer --task cls data/hub_revision.json OUT

    \b
    Example:  brats-llm llm-infer --task bbox data/hub_revision.json models/llm_zeroshot/bbox
              brats-llm llm-infer --task cls --adapter models/llm_adapters/cls data/hub_revision.json models/llm_finetuned/cls
    """
    guard([revision_file, pinned_folder(revision_file), llm_model(model, params_file), adapter, params_file], [out_dir])
    from brats_llm.llm.infer import InferParams, infer
    from brats_llm.ranks import is_main

    params = resolve(InferParams, "llm", params_file, model=model, batch_size=batch_size, max_rows=max_rows,
                     backend=backend)
    run = infer(task, revision_file, out_dir, params, adapter=adapter)
    if is_main():  # one summary per run under torchrun
        click.echo(f"{task}: {run['rows']} rows {run['status']} -> {out_dir}", err=True)


@click.command("llm-finetune")
@click.option("--task", type=TASK_CHOICE, required=True, help="Which conversation config to train on.")
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", help=f"{MODEL_HELP} [params: llm.model]")
@click.option("--backend", type=click.Choice(["hf", "unsloth"]),
              help="hf: transformers + PEFT + TRL (CPU or GPU); unsloth: FastVisionModel, CUDA only, "
                   "needs `pip install -e .[unsloth]` [params: llm_finetune.backend].")
@click.option("--max-steps", type=click.IntRange(min=1), help="Override this task's max steps.")
@click.option("--live", "live_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for loss curves (train + validation TSV) and final losses.")
@params_option
@friendly_errors
def llm_finetune(task: str, revision_file: Path, out_dir: Path, model: str | None, backend: str | None, max_steps: int | None,
                 live_dir: Path | None, params_file: Path | None) -> None:
    """LoRA-fine-tune MODEL on one task's pinned conversations; save the adapter in OUT_DIR.

    LoRA rank/alpha/dropout, vision layers, gradient checkpointing and accumulation, and per-task
    batch size, learning rate and max steps come from params `llm_finetune` (paper values:
    brats_llm/presets/paper.yaml). The loss covers the answer only (prompt, padding and <|image|>
    masked). Validation loss is logged every eval_steps. OUT_DIR also holds
    brats_llm_adapter.json: base model, dataset revision, params and final losses.
    """
    guard([revision_file, pinned_folder(revision_file), llm_model(model, params_file), params_file], [out_dir, live_dir])
    import dataclasses

    from brats_llm.train.llm.finetune import finetune
    from brats_llm.train.llm.params import FinetuneParams

    params = resolve(FinetuneParams, "llm_finetune", params_file, backend=backend)
    if max_steps is not None:
        params = dataclasses.replace(params, max_steps={**params.max_steps, task: max_steps})
    record = finetune(task, revision_file, out_dir, llm_model(model, params_file), params, live_dir=live_dir)
    click.echo(f"{task}: adapter -> {out_dir} (final loss {record['final_loss']})", err=True)


@click.command("llm-consistency")
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", help=f"{MODEL_HELP} [params: llm.model]")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also test the fine-tuned classifier (LoRA adapter folder).")
@params_option
@friendly_errors
def llm_consistency(revision_file: Path, out_dir: Path, model: str | None, adapter: Path | None, params_file: Path | None) -> None:
    """Ask the classification prompt N times about one HGG and one LGG test slice; count the answers.

    Runs the general model and, with --adapter, the fine-tuned one (the paper's consistency test,
    95 repeats). Sampled by default, as answers varied in the paper; with do_sample false the
    output says that greedy repeats are identical by construction. Agreement is the majority
    label's share of the parsed answers, with the parse rate beside it. Under torchrun the generate
    calls are shared between the ranks (the same outputs as one process).
    """
    guard([revision_file, pinned_folder(revision_file), llm_model(model, params_file), adapter, params_file], [out_dir])
    from brats_llm.evaluate.consistency import consistency
    from brats_llm.llm.consistency import ConsistencyParams
    from brats_llm.ranks import is_main

    params = resolve(ConsistencyParams, "llm_consistency", params_file)
    adapters = {"general": None, **({"finetuned": adapter} if adapter else {})}
    metrics = consistency(revision_file, out_dir, llm_model(model, params_file), params, adapters=adapters)
    if not is_main():  # one summary per run under torchrun
        return
    for variant, images in metrics.items():
        click.echo(f"{variant}: " + "; ".join(f"{k}: HGG {v['HGG']} LGG {v['LGG']} other {v['NG'] + v['unparsable']}"
                                            for k, v in images.items()), err=True)


@click.command("evaluate-llm")
@click.option("--task", type=TASK_CHOICE, required=True, help="Task of the predictions.")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bootstrap", type=click.IntRange(min=0), help="Bootstrap replicates [params: evaluate_llm.bootstrap].")
@click.option("--seed", type=int, help="Bootstrap seed [params: evaluate_llm.seed].")
@click.option("--tie", type=click.Choice(["undetermined", "HGG", "LGG"]), help="Patient vote ties [params: evaluate_llm.tie].")
@params_option
@friendly_errors
def evaluate_llm(task: str, pred_dir: Path, revision_file: Path, out_dir: Path, params_file: Path | None,
                 **overrides: Any) -> None:
    """Score saved LLM predictions (PRED_DIR from llm-infer) per slice, then per patient; no model needed.

    \b
    cls:     majority vote per patient (ties: evaluate_llm.tie), GLDR, accuracy ... AUC from the
             tally (GLDR) and from label-token probabilities, majority-class baseline; per plane on
             all slices (<split>[_<plane>]) and on glioma slices only (..._glioma, Table 3), with
             GLDR mean / SD per grade.
    center:  % in the true box, P95 distance to the box and to the true centre (pixels, /128),
             beside the image-centre point and the mean training centre.
    bbox, polygon: rasterised; Dice, HD95 (pixels), precision, recall, specificity, beside a fixed
             centred box and the mean training box.
    Every task also scores the oracle (the ground truth written as an answer, parsed and scored
    like the model). Undefined values are null with a <key>_note, never NaN.
    Unparsable answers stay in every denominator (worst-case scores). 95% bootstrap intervals over
    patients. Writes OUT_DIR/metrics.json (headline, DVC metrics), details.json (every
    number), predictions/patients.csv, plots/images/.
    """
    guard([pred_dir, revision_file, pinned_folder(revision_file), params_file], [out_dir])
    from brats_llm.evaluate.llm import LlmEvalParams, evaluate_llm as run

    params = resolve(LlmEvalParams, "evaluate_llm", params_file, **overrides)
    metrics = run(task, pred_dir, revision_file, out_dir, params)
    click.echo(f"{task}: scored {', '.join(metrics)} -> {out_dir}", err=True)


@click.command("llm-inspect")
@click.option("--task", type=TASK_CHOICE, required=True, help="Which conversation config to show.")
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rows", type=click.IntRange(min=1), default=3, show_default=True, help="First N rows of the split.")
@click.option("--model", help=f"{MODEL_HELP} [params: llm.model]")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="LoRA adapter folder (checked and recorded; the tokens come from the base model's processor).")
@click.option("--backend", type=click.Choice(["hf", "unsloth"]),
              help="Whose training collator builds train_input_ids / train_labels [params: llm_finetune.backend].")
@click.option("--split", help="Conversation split [params: llm.split].")
@params_option
@friendly_errors
def llm_inspect(task: str, revision_file: Path, rows: int, model: str | None, adapter: Path | None, backend: str | None,
                split: str | None, params_file: Path | None) -> None:
    """Print the exact tokens of the first --rows rows as JSON lines on stdout (nothing is written).

    Per row: prompt_text, target, input_ids (the generation input exactly as llm-infer builds it,
    unpadded), train_input_ids and train_labels (exactly as the backend's collator builds them,
    unpadded; -100 where there is no loss). Check: one <|begin_of_text|> (128000) at position 0,
    one <|image|> (128256), input_ids a prefix of train_input_ids, the prompt masked.

    \b
    Example:  brats-llm llm-inspect --task bbox data/hub_revision.json --rows 2
    """
    import json

    from brats_llm.train.llm.inspect import inspect_rows

    backend = backend or param_value(params_file, "llm_finetune", "backend", str, "hf")
    split = split or param_value(params_file, "llm", "split", str, "test")
    for record in inspect_rows(task, revision_file, llm_model(model, params_file), rows=rows, split=split,
                               backend=backend, adapter=adapter):
        click.echo(json.dumps(record))


#: The commands this module adds to ``brats-llm``.
COMMANDS: tuple[click.Command, ...] = (llm_infer, llm_finetune, llm_consistency, evaluate_llm, llm_inspect)
