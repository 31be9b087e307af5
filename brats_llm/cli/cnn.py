"""Commands of the 3D CNNs: train-cnn, evaluate-cnn, and nnU-Net's way in and out: export-nnunet, score-predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from brats_llm.cli.options import friendly_errors, guard, param_value, params_option, resolve, workers_option
from brats_llm.outputs import pinned_folder


TASK_OPTION = click.option(
    "--task", type=click.Choice(["cls", "seg"]), required=True,
    help="cls: LGG/HGG classifier (params section train_cls / evaluate_cls); seg: tumour segmenter (train_seg / evaluate_seg).",
)


def _fold(value: str | None) -> int | str | None:
    """``--fold`` as params take it: a fold number, "all", or None when not given."""
    if value is None or value == "all":
        return value
    try:
        return int(value)
    except ValueError as error:
        raise click.BadParameter("a fold number or 'all'") from error


@click.command("train-cnn")
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
    from brats_llm.ranks import is_main
    from brats_llm.train.cnn.trainer import CnnTrainParams, SegTrainParams, train_cnn

    if task == "cls" and (overrides.get("target") or overrides.get("architecture")):
        raise click.UsageError("--target and --architecture apply to --task seg only")
    params = resolve(SegTrainParams if task == "seg" else CnnTrainParams, f"train_{task}", params_file,
                     fold=_fold(fold), **overrides)
    summaries = train_cnn(task, dataset, splits_file, out_dir, params, live_dir, resume=resume)
    if not is_main():  # one report per run under torchrun
        return
    for summary in summaries:
        total = summary["data_s"] + summary["compute_s"]
        click.echo(
            f"fold {summary['fold']}: best epoch {summary['best_epoch']}, validation "
            f"{'AUC' if task == 'cls' else 'Dice'} {summary['best_validation_metric']:.4f}; "
            f"data loading {100 * summary['data_s'] / max(total, 1e-9):.1f}% of step time", err=True,
        )


@click.command("evaluate-cnn")
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


@click.command("export-nnunet")
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
        raw_dir = param_value(params_file, "prepare", "raw_dir", str, "")
        if not raw_dir:
            raise click.UsageError("give --raw-dir (no prepare.raw_dir in the params file)")
        raw_dir = Path(raw_dir)
    guard([volumes_dir, splits_file, raw_dir, params_file], [out_dir])
    result = export_nnunet(volumes_dir, splits_file, out_dir, raw_dir, workers=workers)
    click.echo(f"{result.layout}: {len(result.training)} training, {len(result.test)} test case(s), "
               f"{result.folds} folds -> {out_dir}", err=True)


@click.command("score-predictions")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.argument("splits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["test", "trainval", "all"]), default="test", show_default=True,
              help="Which patients of SPLITS_FILE to score.")
@click.option("--labels", type=click.Choice(["auto", "regions", "wt"]), default="auto", show_default=True,
              help="How to read the files: regions = BraTS 2023 labels 0/1/2/3 (or 2017-2021's 0/1/2/4); "
                   "wt = any non-zero label is tumour; auto = wt for files with labels 0/1 only, else regions.")
@params_option
@friendly_errors
def score_predictions_command(pred_dir: Path, dataset: Path, splits_file: Path, out_dir: Path, split: str,
                              labels: str, params_file: Path | None) -> None:
    """Score NIfTI segmentations in PRED_DIR (one `{patient_id}.nii.gz` per patient, e.g. nnU-Net's) against
    the SPLITS_FILE patients of DATASET; write OUT_DIR.

    DATASET as for evaluate-cnn: the revision file (data/hub_revision.json) or a volumes folder; patients
    are read one at a time.

    \b
    Predictions are at the release's original resolution and are brought into the stored frame as prepare
    brings masks (reorient to LPS, axial window crop_start:crop_stop, nearest resize to the stored size).
    Metrics per region (WT, TC, ET for region labels and a dataset with `regions`; else WT): Dice, HD95 mm,
    voxel precision / recall / specificity and BraTS 2023 lesion-wise Dice / HD95 (rules and thresholds
    from params evaluate_seg.lesion_dilation / lesion_min_volume_mm3), per patient then averaged with 95%
    bootstrap intervals. A patient without a file scores as an empty prediction (Dice 0; HD95 373.13 mm
    legacy, 374 mm lesion-wise) and is listed in provenance.json. OUT_DIR: details.json (all of it),
    metrics.json (headline: n_patients, dice_wt_3d, hd95_wt_3d_mm, as evaluate-seg's), predictions/<split>.csv,
    provenance.json.
    """
    guard([pred_dir, dataset, pinned_folder(dataset), splits_file, params_file], [out_dir])
    from brats_llm.evaluate.cnn import SegEvalParams
    from brats_llm.evaluate.predictions import score_predictions

    params = resolve(SegEvalParams, "evaluate_seg", params_file)
    result = score_predictions(pred_dir, dataset, splits_file, out_dir, params, split=split, labels=labels)
    summary = result[split]
    shown = ", ".join(f"{region} Dice {(summary if region == 'wt' else summary[region])['dice']:.4f} lesion-wise "
                      f"{(summary if region == 'wt' else summary[region])['lesionwise_dice']:.4f}" for region in result["regions"])
    click.echo(f"{split}: {summary['n']} patients ({summary['missing']} without a file): {shown} -> {out_dir}/details.json", err=True)


#: The commands this module adds to ``brats-llm``.
COMMANDS: tuple[click.Command, ...] = (
    train_cnn_command, evaluate_cnn_command, export_nnunet_command, score_predictions_command,
)
