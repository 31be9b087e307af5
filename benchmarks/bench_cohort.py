"""Benchmark: can global per-case statistics of the demo cohort tell the grade? (issue #20, part 3)

Not a test. Run from the repository root:

    python benchmarks/bench_cohort.py [--params params.yaml] [--raw data/raw/demo] [--work benchmarks/.work]
                                      [--json benchmarks/latest_cohort.json]

Generates the cohort at the ``demo`` params (or reads ``--raw``, which must have been made with them), reads
every case's NIfTI files and fits a logistic regression on the mean and std per modality inside the brain
(non-zero voxels) plus the tumour volume (mm^3). Reported: the test AUC on the pipeline's own patient split
(``split`` params: fitted on trainval, scored on test) and, steadier, the out-of-fold AUC of a stratified
5-fold cross-validation over all patients. Goal: test AUC <= 0.65 (a shortcut-free cohort).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brats_llm import atomic
from brats_llm.config import load_section
from brats_llm.constants import GRADES, MASK_SUFFIX, MODALITIES
from brats_llm.ingest.demo import DemoParams, generate_demo
from brats_llm.ingest.layouts.brats2020 import MAPPING_FILE, MAPPING_GRADE_COLUMN, MAPPING_ID_COLUMN
from brats_llm.split.splits import SPLIT_TEST, SplitParams, make_splits

GOAL_TEST_AUC = 0.65
FEATURES = [f"{m}_{s}" for m in MODALITIES for s in ("mean", "std")] + ["tumour_mm3"]


def case_statistics(folder: Path, case_id: str) -> list[float]:
    """Mean and std per modality inside the brain, then the tumour volume in mm^3."""
    images = [np.asanyarray(nib.load(folder / f"{case_id}_{m}.nii.gz").dataobj).astype(np.float64) for m in MODALITIES]
    seg = nib.load(folder / f"{case_id}_{MASK_SUFFIX}.nii.gz")
    brain = images[0] > 0
    voxel_mm3 = float(np.prod(seg.header.get_zooms()[:3]))
    return [f(image[brain]) for image in images for f in (np.mean, np.std)] + [
        float((np.asanyarray(seg.dataobj) > 0).sum()) * voxel_mm3]


def read_cohort(raw: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(raw / MAPPING_FILE, encoding="utf-8") as handle:
        grades = {row[MAPPING_ID_COLUMN]: row[MAPPING_GRADE_COLUMN] for row in csv.DictReader(handle)}
    ids = sorted(grades)
    features = np.array([case_statistics(raw / case_id, case_id) for case_id in ids])
    return ids, features, np.array([grades[c] == GRADES[1] for c in ids])


def model():
    return make_pipeline(StandardScaler(), LogisticRegression())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, help="an existing cohort made with the demo params (else generated)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/latest_cohort.json"))
    args = parser.parse_args()
    demo = DemoParams(**load_section(args.params, "demo"))
    split = SplitParams(**load_section(args.params, "split"))
    raw = args.raw
    generate_s = None
    if raw is None:
        raw = args.work / "cohort"
        start = time.perf_counter()
        generate_demo(raw, demo, progress=False)
        generate_s = time.perf_counter() - start
    ids, features, hgg = read_cohort(raw)

    assignments = make_splits({c: GRADES[int(h)] for c, h in zip(ids, hgg)}, split)
    test = np.array([a.split == SPLIT_TEST for a in sorted(assignments, key=lambda a: a.patient_id)])
    fitted = model().fit(features[~test], hgg[~test])
    test_auc = roc_auc_score(hgg[test], fitted.predict_proba(features[test])[:, 1])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=split.seed)
    oof = cross_val_predict(model(), features, hgg, cv=folds, method="predict_proba")[:, 1]
    figures = {
        "demo": {**dataclasses.asdict(demo), "shape": list(demo.shape)},
        "split": dataclasses.asdict(split),
        "features": FEATURES,
        "model": "StandardScaler + LogisticRegression (scikit-learn defaults)",
        "test": {"n": int(test.sum()), "hgg": int(hgg[test].sum()), "auc": float(test_auc)},
        "trainval": {"n": int((~test).sum()), "hgg": int(hgg[~test].sum())},
        "cv5_out_of_fold_auc_all_patients": float(roc_auc_score(hgg, oof)),
        "per_feature_auc_all_patients": {name: float(roc_auc_score(hgg, features[:, j])) for j, name in enumerate(FEATURES)},
        "goal_test_auc_max": GOAL_TEST_AUC,
        "pass": bool(test_auc <= GOAL_TEST_AUC),
        "cohort": "generated" if args.raw is None else str(args.raw),
        "generate_wall_s": generate_s,
    }
    atomic.write_json(args.json, figures)
    print(f"test AUC {test_auc:.3f} (n={int(test.sum())}), 5-fold out-of-fold AUC {figures['cv5_out_of_fold_auc_all_patients']:.3f} "
          f"-> {args.json}; goal <= {GOAL_TEST_AUC}: {'pass' if figures['pass'] else 'FAIL'}")


if __name__ == "__main__":
    main()
