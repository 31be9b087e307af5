"""Consistency summary: agreement over parsed answers only, parse rate beside it, NG and unparsable apart."""

import pytest

from brats_llm.evaluate.consistency_metrics import answer_summary, from_counts


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
