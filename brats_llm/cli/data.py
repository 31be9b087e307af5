"""Commands of the data phase: demo, prepare, split, slices, geometry, conversations, publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from brats_llm.cli.options import comma_list, friendly_errors, guard, params_of, params_option, resolve, workers_option


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
    # The card documents how the published data were made: the upstream stages' params.
    used = {k: params_of(params_file).section(k) for k in ("prepare", "split", "slices", "geometry", "conversations")}
    version = dataset_version(volumes_dir)
    synthetic = (Path(used["prepare"].get("raw_dir", "")) / "SYNTHETIC.txt").is_file()
    record = run_publish(volumes_dir, slices_dir, geometry_dir, conversations_dir, out_dir, revision_file, params,
                         used, version.get("fingerprint", ""), synthetic)
    click.echo(f"published {len(record['configs'])} configs to {record['repo_id'] or out_dir} @ {record['revision']}", err=True)


#: The commands this module adds to ``brats-llm``.
COMMANDS: tuple[click.Command, ...] = (demo, prepare, split, slices, geometry, conversations, publish)
