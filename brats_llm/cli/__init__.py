"""The ``brats-llm`` command line: one thin command per DVC stage, in one module per phase."""

from __future__ import annotations

import logging

import click

from brats_llm import __version__
from brats_llm.cli import cnn, data, llm, models, report


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="brats-llm")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Reproducible BraTS pipeline: CNNs vs vision-LLMs for glioma grading and segmentation.

    Each command is one DVC stage (see dvc.yaml) and reads its own section of params.yaml.
    Typical use is `dvc repro`; run a command directly to work outside DVC.

    \b
    Pipeline:  demo -> prepare -> split -> slices -> geometry -> conversations -> publish
               publish -> train-cnn -> evaluate-cnn (the pinned volumes config)
               publish -> llm-infer (zero-shot) / llm-finetune -> llm-infer --adapter -> evaluate-llm
               tiny-model -> general-model (the embedded default LLMs); llm-consistency
    Example:   brats-llm demo data/raw/demo --patients 8 --seed 1
               brats-llm prepare data/raw/demo data/volumes --report data/prepare_report.json
               brats-llm split data/volumes data/splits.csv
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


for _module in (data, cnn, models, llm, report):
    for _command in _module.COMMANDS:
        main.add_command(_command)
