"""Consistency-test summary of repeated classification answers: parsed answers apart from unparsable ones.

``agreement`` is the share of the most frequent label among *parsed* answers (HGG, LGG or NG), with the
parse rate beside it; unparsable answers are never counted as a label (a model that fails to answer 90
of 95 times must not score a high agreement). ``brats_llm.llm.consistency`` builds its per-image record
with :func:`answer_summary` and its DVC headline with :func:`headline`; the report recomputes the same from
stored counts with :func:`from_counts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

LABELS = ("HGG", "LGG", "NG")
UNPARSABLE = "unparsable"


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
    """The stage's DVC headline: ``parse_rate`` and ``agreement`` pooled over every variant and image.

    ``records``: variant -> image -> :func:`from_counts` record. ``agreement``: parsed answers equal to
    their own image's majority label, over all parsed answers (``None`` when none parsed);
    ``parse_rate``: parsed over all answers.
    """
    images = [image for variant in records.values() for image in variant.values()]
    answers, parsed = sum(i["answers"] for i in images), sum(i["parsed"] for i in images)
    agreeing = sum(i[i["majority"]] for i in images if i["majority"] is not None)
    return {"parse_rate": parsed / answers if answers else None, "agreement": agreeing / parsed if parsed else None}
