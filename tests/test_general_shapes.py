"""Generic shape chats of the general model: formats, labels that carry no grade, determinism."""

import io

import numpy as np
import pytest

from brats_llm.conversations.parse import parse_answer
from brats_llm.conversations.prompts import TASKS, frame_text, prompt
from brats_llm.geometry.shapes import rasterize_box
from brats_llm.train.general.shapes import FORBIDDEN, picture, shape_chat, shape_chats, vocabulary


def _png(row):
    buffer = io.BytesIO()
    row["images"][0].save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_answer_parses_in_its_task_format():
    rows = shape_chats(6, 64, seed=1)
    assert [row["task"] for row in rows[:4]] == list(TASKS)
    for row in rows:
        assert parse_answer(row["task"], row["target"], (64, 64)).status == "ok", row["target"]
        assert row["messages"][1]["content"][0]["text"] == row["target"]


def test_prompts_keep_the_glioma_tasks_answer_formats_but_never_name_a_brain():
    for task in TASKS:
        text = shape_chat(task, np.random.default_rng(3), 128)["messages"][0]["content"][1]["text"]
        assert "Reply with exactly one JSON object and nothing else." in text and "128 x 128 pixels" in text
        assert not any(word in text.lower() for word in ("brain", "glioma", "mri", "tumour", "tumor"))


def test_cls_label_is_the_side_of_the_shape():
    counts = {0: 0, 1: 0, 2: 0}
    for i in range(60):
        row = shape_chat("cls", np.random.default_rng([7, i]), 64)
        label = parse_answer("cls", row["target"]).value
        counts[label] += 1
        pixels = np.asarray(row["images"][0])
        if label == 2:
            assert pixels.max() < 0.55 * 255 + 4 * 0.02 * 255  # background only
    assert min(counts.values()) >= 5, counts  # all three codes are taught


def test_box_answer_covers_the_bright_shape():
    rng = np.random.default_rng(11)
    image, mask, _ = picture(rng, 96, empty=False)
    rng = np.random.default_rng(11)
    row = shape_chat("bbox", rng, 96)
    box = parse_answer("bbox", row["target"], (96, 96)).value
    covered = rasterize_box([list(p) for p in box], mask.shape)
    assert covered[mask].all() and np.asarray(row["images"][0]).shape == (96, 96)


def test_same_seed_same_bytes_other_seed_other_pictures():
    first, again, other = shape_chats(2, 64, 5), shape_chats(2, 64, 5), shape_chats(2, 64, 6)
    assert [_png(r) for r in first] == [_png(r) for r in again]
    assert [r["target"] for r in first] == [r["target"] for r in again]
    assert [_png(r) for r in first] != [_png(r) for r in other]


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        shape_chat("segment", np.random.default_rng(0), 64)


def test_half_the_chats_name_things_with_random_words_none_of_them_medical():
    texts = [shape_chat("cls", np.random.default_rng([5, i]), 64)["messages"][0]["content"][1]["text"] for i in range(40)]
    generic = sum("Left Half (LGG-0)" in t for t in texts)
    assert 8 <= generic <= 32, generic  # both namings are taught
    assert len({t.split(" (LGG-0)")[0] for t in texts}) > 20  # the option names vary
    assert not any(word in w for w in vocabulary() for word in FORBIDDEN)
    assert len(vocabulary()) > 10000 and list(vocabulary()) == sorted(vocabulary())


def test_shape_prompts_follow_the_glioma_tasks_template_word_for_word():
    """Only the picture, the object and the class names differ from the brain prompt: the same template fills both."""
    for task in TASKS:
        brain = prompt(task, "axial", 64, 64)
        rows = [shape_chat(task, np.random.default_rng([9, i]), 64) for i in range(6)]
        for row in rows:
            text = row["messages"][0]["content"][1]["text"]
            assert text.split(". Reply with")[1] == brain.split(". Reply with")[1]  # the format sentence
            assert text.endswith(brain[-60:])
            assert (frame_text(64, 64) in text) == (task != "cls")
