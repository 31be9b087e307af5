"""The one writer of metrics.json + details.json: declared keys only, flat finite numbers or null, strict JSON."""

import json

import pytest

from brats_llm.evaluate.write import HEADLINE_KEYS, check_headline, write_scores

SEG = {"n_patients": 3, "dice_wt_3d": 0.5, "hd95_wt_3d_mm": 4.0}


def test_the_pair_is_written_with_the_declared_keys(tmp_path):
    details = {"test": {"dice": 0.5, "hd95_mm": 4.0, "n": 3, "tc": {"dice": 0.25}}}
    write_scores(tmp_path, "cnn-seg", SEG, details)
    assert json.loads((tmp_path / "metrics.json").read_text()) == SEG
    text = (tmp_path / "details.json").read_text()
    assert json.loads(text) == details and text == json.dumps(details, indent=2, sort_keys=True) + "\n"


def test_dvclive_order_keeps_order_and_indent(tmp_path):
    details = {"train": {"b": 1.0, "a": 2.0}, "test": {"dice": 0.5}}
    write_scores(tmp_path, "cnn-seg", SEG, details, dvclive_order=True)
    assert (tmp_path / "details.json").read_text() == json.dumps(details, indent=4) + "\n"


@pytest.mark.parametrize("headline, match", [
    ({**SEG, "dice": 0.5}, "differ"),  # an undeclared key
    ({"n_patients": 3, "dice_wt_3d": 0.5}, "differ"),  # a missing one
    ({**SEG, "dice_wt_3d": float("nan")}, "finite number or null"),
    ({**SEG, "dice_wt_3d": "0.5"}, "finite number or null"),
    ({**SEG, "n_patients": True}, "finite number or null"),
])
def test_bad_headlines_fail_loudly(headline, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        write_scores(tmp_path, "cnn-seg", headline, {})
    assert not (tmp_path / "metrics.json").exists()


def test_unknown_scoring_and_nan_details_fail(tmp_path):
    with pytest.raises(ValueError, match="unknown scoring"):
        check_headline("cnn-regions", SEG)
    with pytest.raises(ValueError, match="Out of range float"):
        write_scores(tmp_path, "cnn-seg", SEG, {"test": {"dice_ci_low": float("nan")}})


def test_no_key_means_two_things():
    """A key shared by two scorings is one measure: the patient count, the LLM tasks' slice parse rate, and
    evaluate-seg / score-predictions' whole-tumour 3D scores (the same metrics on other predictions)."""
    seen: dict[str, set[str]] = {}
    for scoring, keys in HEADLINE_KEYS.items():
        for key in keys:
            seen.setdefault(key, set()).add(scoring)
    shared = {key for key, scorings in seen.items() if len(scorings) > 1}
    assert shared == {"n_patients", "parse_rate_slices", "dice_wt_3d", "hd95_wt_3d_mm"}
    assert seen["dice_wt_3d"] == seen["hd95_wt_3d_mm"] == {"cnn-seg", "predictions"}
    assert seen["parse_rate_slices"] == {"llm-cls", "llm-center", "llm-bbox", "llm-polygon"}
