"""evaluate-cnn --task seg streams patients: outputs byte-identical to the whole-split implementation it replaced."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from brats_llm.evaluate import cnn
from brats_llm.evaluate.cnn import SegEvalParams, evaluate_cnn
from brats_llm.train.cnn.trainer import SegTrainParams, train_cnn


# The implementation before streaming (every patient's full-size mask and probabilities in memory),
# kept verbatim apart from module prefixes: the reference the streamed outputs must equal.
def reference_evaluate_seg(model, meta, members, volumes_dir, out_dir, params: SegEvalParams, live) -> dict[str, Any]:
    factor = meta["params"]["downsample"]
    target = meta["params"].get("target", "wt")
    regions = cnn.REGION_NAMES if target == "regions" else ("wt",)
    probs, truths, full = {}, {}, {}
    for split in cnn.SPLITS:
        full[split] = cnn.load_split(volumes_dir, members[split], 1, progress=False, target=target)
        if len(full[split]) == 0:
            continue
        inputs = full[split] if factor == 1 else cnn.load_split(volumes_dir, members[split], factor, progress=False, target=target)
        truths[split] = full[split].masks.numpy().astype(bool)
        if truths[split].ndim == 4:  # one region: (N, 1, D, H, W) from here on
            truths[split] = truths[split][:, None]
        probs[split] = cnn._upsampled_probabilities(model, inputs, truths[split].shape[-3:])
    tuning = "validation" if "validation" in probs else "train"
    mean_dice = {t: float(np.mean([cnn.dice(p >= t, m) for p, m in zip(probs[tuning].reshape(-1, *probs[tuning].shape[2:]),
                                                                     truths[tuning].reshape(-1, *truths[tuning].shape[2:]))]))
                 for t in params.thresholds}
    threshold = max(params.thresholds, key=lambda t: (mean_dice[t], -abs(t - 0.5)))
    live.log_metric("threshold", threshold, plot=False)
    results, distributions = {"threshold": threshold, "threshold_tuned_on": tuning, "target": target}, {}
    options = {"dilation": params.lesion_dilation, "min_volume_mm3": params.lesion_min_volume_mm3}
    for split in probs:
        spacing = full[split].spacing_mm
        per_patient = {region: [cnn.region_metrics(p[r] >= threshold, m[r], s, **options)
                                for p, m, s in zip(probs[split], truths[split], spacing)]
                       for r, region in enumerate(regions)}
        results[split] = cnn.summarise_regions(per_patient, params.bootstrap, params.seed)
        cnn.log_nested(live, split, results[split])
        for r, region in enumerate(regions):
            where = split if region == "wt" else f"{split}/{region}"
            for name, constant in (("all_background", False), ("all_foreground", True)):
                baseline = [cnn.segmentation_metrics(np.full(m[r].shape, constant), m[r], s) for m, s in zip(truths[split], spacing)]
                cnn._log(live, f"{where}/baseline_{name}", {k: float(np.mean([b[k] for b in baseline])) for k in baseline[0]})
        distributions[split] = [row["dice"] for row in per_patient[regions[0]]]
        cnn.atomic.write_csv(out_dir / "predictions" / f"{split}.csv", cnn.per_patient_csv_rows(full[split].patient_ids, per_patient))
    live.log_image("dice_per_patient.png", cnn.figures.distribution_figure(distributions, "Dice (WT)"))
    if "test" in probs:
        data = full["test"]
        for i in range(min(params.overlays, len(data))):
            truth = truths["test"][i, 0]
            k = int(truth.sum(axis=(1, 2)).argmax())
            flair = data.images[i, 0, k].numpy()
            live.log_image(f"overlays/{data.patient_ids[i]}.png", cnn.figures.overlay(flair, truth[k], probs["test"][i, 0, k] >= threshold))
    return results


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["wt", "regions"])
def test_streamed_outputs_equal_the_whole_split_ones(prepared, tmp_path, monkeypatch, target):
    from tests.test_cnn_training import with_regions

    volumes = prepared / "volumes" if target == "wt" else with_regions(prepared / "volumes", tmp_path / "volumes")
    options = {"architecture": "segresnet", "width": 4, "levels": 2} if target == "regions" else {}
    train_cnn("seg", volumes, prepared / "splits.csv", tmp_path / "models",
              SegTrainParams(epochs=2, batch_size=2, downsample=2, target=target, **options), progress=False)
    params = SegEvalParams(bootstrap=30, overlays=2)
    monkeypatch.setattr(cnn, "SEG_CHUNK", 1)  # the tiny splits hold 2 patients: stream them one by one
    loaded = []
    real_load = cnn.load_split
    monkeypatch.setattr(cnn, "load_split", lambda v, patients, *a, **k: loaded.append(len(patients)) or real_load(v, patients, *a, **k))
    streamed = evaluate_cnn("seg", volumes, prepared / "splits.csv", tmp_path / "models", tmp_path / "streamed", params)
    assert loaded and max(loaded) <= cnn.SEG_CHUNK  # never a whole split in memory
    monkeypatch.setattr(cnn, "evaluate_seg", reference_evaluate_seg)
    reference = evaluate_cnn("seg", volumes, prepared / "splits.csv", tmp_path / "models", tmp_path / "reference", params)
    assert max(loaded) > cnn.SEG_CHUNK  # the reference did load whole splits
    assert repr(streamed) == repr(reference)
    ours, theirs = files(tmp_path / "streamed"), files(tmp_path / "reference")
    assert sorted(ours) == sorted(theirs) and any(name.startswith("plots/images/overlays/") for name in ours)
    for name in theirs:
        assert ours[name] == theirs[name], name
