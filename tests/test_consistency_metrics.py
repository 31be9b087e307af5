"""Consistency summary: agreement over parsed answers only, parse rate beside it, NG and unparsable apart."""

import pytest

from brats_llm.evaluate.consistency_metrics import answer_summary, from_counts, headline


def test_unparsable_answers_are_not_a_label():
    summary = answer_summary(["unparsable"] * 90 + ["HGG"] * 3 + ["NG"] * 2)
    assert (summary["parsed"], summary["answers"], summary["unparsable"], summary["NG"]) == (5, 95, 90, 2)
    assert summary["parse_rate"] == pytest.approx(5 / 95)
    assert summary["agreement"] == pytest.approx(3 / 5) and summary["majority"] == "HGG"


def test_nothing_parsed_and_bad_labels():
    summary = from_counts({"unparsable": 4})
    assert summary["agreement"] is None and summary["agreement_note"] == "no parsed answer" and summary["parse_rate"] == 0
    assert from_counts({})["parse_rate"] is None
    with pytest.raises(ValueError, match="unknown answer labels"):
        answer_summary(["maybe"])


def test_headline_pools_every_variant_and_image():
    """Parsed answers agreeing with their own image's majority over all parsed; an image with none parsed adds answers only."""
    records = {"general": {"HGG_image": answer_summary(["HGG"] * 3 + ["LGG"] + ["unparsable"]),
                           "LGG_image": answer_summary(["NG"] + ["unparsable"] * 4)},
               "finetuned": {"HGG_image": answer_summary(["unparsable"] * 5)}}
    assert headline(records) == {"parse_rate_repeats": pytest.approx(5 / 15), "agreement_repeats": pytest.approx(4 / 5)}
    none_parsed = {"general": {"HGG_image": from_counts({"unparsable": 3})}}
    assert headline(none_parsed) == {"parse_rate_repeats": 0.0, "agreement_repeats": None}
