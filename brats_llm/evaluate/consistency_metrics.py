"""Consistency-test summary of repeated classification answers: parsed answers apart from unparsable ones.

``agreement`` is the share of the most frequent label among *parsed* answers (HGG, LGG or NG), with the
parse rate beside it; unparsable answers are never counted as a label (a model that fails to answer 90
of 95 times must not score a high agreement). ``brats_llm.evaluate.consistency`` labels each answer with
:func:`answer_label`, builds the per-image record with :func:`answer_summary` and its DVC headline with
:func:`headline`; the report recomputes the same from stored counts with :func:`from_counts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

LABELS = ("HGG", "LGG", "NG")
UNPARSABLE = "unparsable"


def answer_label(text: str) -> str:
    """The label of one classification answer (``HGG``, ``LGG``, ``NG``) or ``unparsable``."""
    from brats_llm.conversations.parse import parse_answer
    from brats_llm.conversations.prompts import CLASS_ANSWERS

    parsed = parse_answer("cls", text)
    return CLASS_ANSWERS[parsed.value].split("-")[0] if parsed.status == "ok" else UNPARSABLE


def from_counts(counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts per label and unparsable, answers, parsed answers, parse rate, majority label and agreement.

    ``agreement`` and ``majority`` are ``None`` (with ``agreement_note``) when no answer parsed.
    """
    values = {label: int(counts.get(label, 0)) for label in (*LABELS, UNPARSABLE)}
    parsed = sum(values[label] for label in LABELS)
    answers = parsed + values[UNPARSABLE]
    out: dict[str, Any] = {**values, "answers": answers, "parsed": parsed,
                           "parse_rate": parsed / answers if answers else None}
    if parsed:
        majority = max(LABELS, key=lambda label: (values[label], -LABELS.index(label)))
        out.update(majority=majority, agreement=values[majority] / parsed)
    else:
        out.update(majority=None, agreement=None, agreement_note="no parsed answer")
    return out


def answer_summary(labels: Iterable[str]) -> dict[str, Any]:
    """:func:`from_counts` of a list of answer labels (``HGG``, ``LGG``, ``NG`` or ``unparsable``)."""
    counts = Counter(labels)
    unknown = set(counts) - {*LABELS, UNPARSABLE}
    if unknown:
        raise ValueError(f"unknown answer labels {sorted(unknown)}; expected {(*LABELS, UNPARSABLE)}")
    return from_counts(counts)


def headline(records: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The stage's DVC headline, pooled over every variant, image and repeated answer.

    ``records``: variant -> image -> :func:`from_counts` record. ``agreement_repeats``: parsed answers equal
    to their own image's majority label, over all parsed answers (``None`` when none parsed);
    ``parse_rate_repeats``: parsed over all answers (per image: ``parse_rate`` / ``agreement`` of the record).
    """
    images = [image for variant in records.values() for image in variant.values()]
    answers, parsed = sum(i["answers"] for i in images), sum(i["parsed"] for i in images)
    agreeing = sum(i[i["majority"]] for i in images if i["majority"] is not None)
    return {"parse_rate_repeats": parsed / answers if answers else None,
            "agreement_repeats": agreeing / parsed if parsed else None}
