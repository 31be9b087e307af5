"""Prompts, answers and parsers: rows parse back to the ground truth; parsers never raise."""

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brats_llm.conversations.build import keywords
from brats_llm.conversations.parse import FORMAT_ERROR, INVALID_VALUE, OK, parse_answer
from brats_llm.conversations.prompts import PROMPTS, TASKS, answer_text

SHAPE = (128, 128)  #: (height, width) of the image answered about (size rules: test_image_size.py)


def test_every_prompt_states_a_json_format():
    for task in TASKS:
        assert "JSON" in PROMPTS[task] and "Format:" in PROMPTS[task]
    for task in ("center", "bbox", "polygon"):
        assert "x is the column" in PROMPTS[task] and "y is the row" in PROMPTS[task]


def test_answers_round_trip():
    mask = np.zeros((128, 128), bool)
    mask[20:40, 80:110] = True
    reason = keywords(1, mask)
    assert len(reason) == 10 and "left-hemisphere" in reason and "anterior" in reason
    assert parse_answer("cls", answer_text("cls", (1, reason))).value == 1
    assert parse_answer("cls", answer_text("cls", (2, keywords(2, mask)))).value == 2
    assert parse_answer("center", answer_text("center", [94.5, 29.5]), SHAPE).value == (94.5, 29.5)
    box = [[80, 20], [109, 20], [109, 39], [80, 39]]
    assert parse_answer("bbox", answer_text("bbox", box), SHAPE).value == [tuple(p) for p in box]
    polygon = [[64 + 20 * np.cos(a), 64 - 20 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    parsed = parse_answer("polygon", answer_text("polygon", polygon), SHAPE)
    assert parsed.status == OK and np.allclose(parsed.value, polygon, atol=0.05)


@pytest.mark.parametrize("text, task, status, value", [
    ('Sure! ```json\n{"label": "HGG-1", "reason": "x"}\n``` hope that helps', "cls", OK, 1),
    ("The answer is Low Grade Glioma.", "cls", OK, 0),
    ("LGG or HGG, hard to say", "cls", FORMAT_ERROR, None),
    ('{"center": [200, 5]}', "center", INVALID_VALUE, (200.0, 5.0)),
    ('{"center": "middle"}', "center", FORMAT_ERROR, None),
    ('{"bbox": [[10, 10], [5, 10], [5, 20], [10, 20]]}', "bbox", INVALID_VALUE, None),
    ('{"polygon": [[1, 1], [2, 2], [3, 1]]}', "polygon", INVALID_VALUE, None),
    ("no json here", "polygon", FORMAT_ERROR, None),
])
def test_tolerant_format_strict_values(text, task, status, value):
    parsed = parse_answer(task, text, SHAPE)
    assert parsed.status == status
    if value is not None:
        assert parsed.value == value


def test_fuzzed_answers_never_raise():
    rng = random.Random(0)
    alphabet = list('{}[]",:0123456789.-eE abcHGLN\n`') + ["HGG-1", "LGG-0", '"center"', '"bbox"', '"polygon"', "NaN", "1e999"]
    statuses = set()
    for _ in range(10_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for task in TASKS:
            statuses.add(parse_answer(task, text, SHAPE).status)
    assert statuses <= {OK, FORMAT_ERROR, INVALID_VALUE} and FORMAT_ERROR in statuses


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["LGG-0", "HGG-1", "NG-2", "High Grade Glioma", "x"]),
    lambda children: st.lists(children, max_size=16) | st.dictionaries(
        st.sampled_from(["label", "reason", "center", "bbox", "polygon", "x"]), children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None)
@given(value=_json_values, prose=st.text(max_size=20), fence=st.booleans())
def test_structured_fuzz_keeps_the_value_rules(value, prose, fence):
    body = json.dumps(value)
    text = f"{prose}```json\n{body}\n```" if fence else f"{prose}{body}"
    for task in TASKS:
        parsed = parse_answer(task, text, SHAPE)
        assert parsed.status in {OK, FORMAT_ERROR, INVALID_VALUE}
        if parsed.status != OK:
            continue
        if task == "cls":
            assert parsed.value in (0, 1, 2)
        else:
            points = [parsed.value] if task == "center" else parsed.value
            assert all(0 <= x <= 127 and 0 <= y <= 127 for x, y in points)
            if task == "polygon":
                assert 10 <= len(points) <= 15


def test_prompts_name_the_plane_and_the_size_shown():
    from brats_llm.conversations.prompts import prompt

    assert "axial FLAIR" in PROMPTS["cls"] and "128 x 128 pixels" in PROMPTS["cls"]
    coronal = prompt("cls", "coronal", 95, 128)
    assert "coronal FLAIR" in coronal and "128 x 95 pixels (width x height)" in coronal and "axial" not in coronal
    assert "y is the row (0 at the top, 94 at the bottom)" in prompt("center", "coronal", 95, 128)


def test_extra_planes_are_test_only_unless_asked(built, tmp_path):
    from brats_llm.conversations.build import ConversationParams, build_conversations, load_conversations
    from brats_llm.geometry.stage import GeometryParams, build_geometry
    from brats_llm.slices.slices import SlicesParams, build_slices

    build_slices(built / "volumes", built / "splits.csv", tmp_path / "slices", SlicesParams(planes=("axial", "coronal")),
                 progress=False)
    build_geometry(tmp_path / "slices", tmp_path / "geometry", GeometryParams(), progress=False)
    build_conversations(tmp_path / "slices", tmp_path / "geometry", tmp_path / "conv", ConversationParams(), progress=False)
    cls = load_conversations(tmp_path / "conv", "cls")
    assert set(cls["train"]["plane"]) == {"axial"} and set(cls["validation"]["plane"]) <= {"axial"}
    test = cls["test"].remove_columns("images")
    assert set(test["plane"]) == {"axial", "coronal"}
    for plane, messages in zip(test["plane"], test["messages"]):
        text = messages[0]["content"][1]["text"]
        assert f"one {plane} FLAIR" in text
        assert ("24 x 20 pixels" if plane == "coronal" else "24 x 24 pixels") in text  # volumes of 20 slices of 24 x 24
    both = ConversationParams(finetune_planes=("axial", "coronal"))
    build_conversations(tmp_path / "slices", tmp_path / "geometry", tmp_path / "conv2", both, progress=False)
    assert "coronal" in set(load_conversations(tmp_path / "conv2", "cls")["train"]["plane"])
    with pytest.raises(ValueError, match="finetune_planes"):
        ConversationParams(finetune_planes=("oblique",))


def test_batched_build_equals_the_row_by_row_one(built, tmp_path):
    """Rows read in batches, PNG bytes passed through, rows written pre-encoded: every row (image bytes
    included) equals what the row-by-row builder made from ``source[index]``; record batches hold many rows."""
    import pyarrow as pa
    from datasets import Image, load_from_disk

    from brats_llm.arrowio import DATA_FILE
    from brats_llm.conversations.build import (
        ConversationParams,
        _targets,
        build_conversations,
        conversation,
        conversation_features,
        image_size,
        load_conversations,
    )
    from brats_llm.slices.slices import load_slices

    params = ConversationParams()
    build_conversations(built / "slices", built / "geometry", tmp_path / "conv", params, progress=False)
    assert (tmp_path / "conv" / "cls").is_dir()
    slices = load_slices(built / "slices").cast_column("image", Image(decode=False))
    geometry = load_from_disk(str(built / "geometry")).cast_column("image", Image(decode=False))
    features = conversation_features()
    for task in TASKS:
        source = slices if task == "cls" else geometry
        for split, rows in load_conversations(tmp_path / "conv", task).items():
            stored = rows.cast_column("images", [Image(decode=False)])
            seen = {(r["patient_id"], r["slice_index"], r["plane"]) for r in stored}
            lookup = {(r["patient_id"], r["slice_index"], r.get("plane", "axial")): i for i, r in
                      enumerate(source.select_columns([c for c in ("patient_id", "slice_index", "plane") if c in source.column_names]))
                      if (r["patient_id"], r["slice_index"], r.get("plane", "axial")) in seen}
            for row in stored:
                old = source[lookup[row["patient_id"], row["slice_index"], row["plane"]]]  # the row-by-row way
                if task == "cls":
                    label = old["label"] if old["has_tumour"] else 2
                    answer = answer_text("cls", (label, keywords(label, np.asarray(old["mask"]), old["plane"])))
                    target, plane = label, old["plane"]
                else:
                    value, target = _targets(task, old)
                    answer, plane = answer_text(task, value), "axial"
                chat = conversation(task, old["image"], answer, plane=plane, modality=old.get("modality") or "flair")
                expected = features.encode_example({**chat, "patient_id": old["patient_id"], "grade": old["grade"],
                                                    "plane": plane, "slice_index": old["slice_index"],
                                                    "target": json.dumps(target if task == "cls" else np.round(np.asarray(target, dtype=float), 2).tolist())})
                assert row == expected
            batches = pa.ipc.open_stream(pa.memory_map(str(tmp_path / "conv" / task / split / DATA_FILE))).read_all().to_batches()
            assert len(batches) == 1 < len(rows) or len(rows) == 1
    import io

    from PIL import Image as PILImage

    png = slices[0]["image"]
    assert image_size(png) == PILImage.open(io.BytesIO(png["bytes"])).size[::-1]
