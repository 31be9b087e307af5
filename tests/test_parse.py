"""parse_answer is total and linear: adversarial and fuzzed text never raises, and time grows linearly.

The format/value rules themselves are tested in test_conversations.py.
"""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from brats_llm.conversations.parse import (FORMAT_ERROR, INVALID_VALUE, MAX_CANDIDATES, OK, Parsed, _json_object,
                                           parse_answer)
from brats_llm.conversations.prompts import TASKS

STATUSES = {OK, FORMAT_ERROR, INVALID_VALUE}
BOX = [[10, 10], [20, 10], [20, 20], [10, 20]]
SHAPE = (128, 128)  #: (height, width) of the image answered about (size rules: test_image_size.py)


def check_all_tasks(text: str) -> dict[str, Parsed]:
    results = {}
    for task in TASKS:
        parsed = parse_answer(task, text, SHAPE)
        assert isinstance(parsed, Parsed) and parsed.status in STATUSES, (task, parsed)
        results[task] = parsed
    return results


HUGE = ["1" + "0" * 300, "9" * 400, "-" + "9" * 400, "1" + "0" * 5000, "1e400", "-1e400",
        "1" + "0" * 300 + ".5", "NaN", "Infinity", "-Infinity", "1" * 100_000]
TINY = ["1e-400", "0." + "0" * 400 + "1", "-0", "0e999999999999"]  # all 0.0: valid coordinates


@pytest.mark.parametrize("number", TINY)
def test_tiny_numbers_are_zero(number):
    assert parse_answer("center", f'{{"center": [{number}, 5]}}', SHAPE).value == (0.0, 5.0)
    check_all_tasks(f'{{"bbox": [[{number}, 10], [20, 10]], "polygon": {number}, "label": {number}}}')


@pytest.mark.parametrize("number", HUGE)
def test_huge_and_special_numbers_in_every_field(number):
    answers = [
        f'{{"label": {number}, "reason": {number}}}',
        f'{{"label": "HGG-1", "reason": [{number}]}}',
        f'{{"center": [{number}, 5]}}', f'{{"center": [5, {number}]}}', f'{{"center": {number}}}',
        f'{{"bbox": [[{number}, 10], [20, 10], [20, 20], [10, 20]]}}', f'{{"bbox": {number}}}',
        '{"polygon": [' + ", ".join(f"[{number}, {i}]" for i in range(12)) + "]}",
        f'{{"polygon": [[1, 2], {number}]}}',
    ]
    for text in answers:
        results = check_all_tasks(text)
        for task in ("center", "bbox", "polygon"):
            if f'"{task}"' in text:
                assert results[task].status in (FORMAT_ERROR, INVALID_VALUE), (text[:80], results[task])


def test_the_300_digit_coordinate_is_out_of_range_not_a_crash():
    assert parse_answer("center", '{"center": [1' + "0" * 300 + ", 5]}", SHAPE).status == INVALID_VALUE
    assert parse_answer("center", f'{{"center": [{10 ** 400}, 5]}}', SHAPE).status == FORMAT_ERROR  # not a finite float
    assert parse_answer("center", '{"center": [1e400, 5]}', SHAPE).status == FORMAT_ERROR
    assert parse_answer("center", '{"center": [NaN, 5]}', SHAPE).status == FORMAT_ERROR


def test_huge_numbers_elsewhere_do_not_hide_the_answer():
    reason = "9" * 5000  # past Python's 4300-digit int limit
    assert parse_answer("bbox", json.dumps({"bbox": BOX})[:-1] + f', "reason": {reason}}}', SHAPE).status == OK
    assert parse_answer("center", f'{{"center": [12, 34], "n": {"1" * 100_000}}}', SHAPE).value == (12.0, 34.0)


@pytest.mark.parametrize("text, task, value", [
    ('I think {the answer is {"center": [10, 20]}', "center", (10.0, 20.0)),  # stray unbalanced "{"
    ('Format {x, y}. Answer: {"center": [3, 4]}', "center", (3.0, 4.0)),  # a balanced non-JSON "{...}"
    ('{ it is 5" wide {"center": [10, 20]}', "center", (10.0, 20.0)),  # a stray quote inside a stray "{"
    ('He said "hi {". {"center": [7, 8]}', "center", (7.0, 8.0)),  # prose quotes are not JSON strings
    ('{"reason": "a } b ] {", "label": "HGG-1"}', "cls", 1),  # brackets inside JSON strings
    ('{"reason": "say \\"}\\"", "label": "LGG-0"}', "cls", 0),  # escaped quotes
    ('[{"center": [1, 2]}]', "center", (1.0, 2.0)),
    ('{"a": {"center": [1, 2]}, oops', "center", (1.0, 2.0)),  # first decodable object is the inner one
    ('{"center": [1, 2], oops', "center", None),  # truncated answer
    ('```json\n{"center": [5, 6]}\n```', "center", (5.0, 6.0)),
    ('{"center": [5, 6]} {"center": [7, 8]}', "center", (5.0, 6.0)),  # the first object wins
])
def test_tolerant_extraction(text, task, value):
    parsed = parse_answer(task, text, SHAPE)
    if value is None:
        assert parsed.status == FORMAT_ERROR
    else:
        assert parsed.status == OK and parsed.value == value


def test_first_object_semantics_are_kept():
    assert _json_object('{"a": {"center": [1, 2]}, oops') == {"center": [1, 2]}
    assert _json_object('x {} {"center": [1, 2]}') == {}  # the first object, even if useless
    assert _json_object("no braces") is None and _json_object("") is None


@pytest.mark.parametrize("text", [
    "{" * 100_000, "[" * 100_000, '{"a":' * 100_000, '{"a":[' * 100_000 + "]}" * 100_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000, "{" + "[" * 100_000 + "]" * 100_000 + "}",
    "\x00{\x00\"center\x00\": [1, 2]}\x00", '{"center": [1, 2], "\ud800": "\udfff"}\ud83d',
    '{"label": "\\ud800"}', "\\", '{"', '{"\\', '{"a": "\\', '"' * 1001, "}" * 1000 + "{",
    "`" * 10_000, "```json" * 1000, "{" * 1000 + '"' + '{"center": [1, 2]}',
])
def test_adversarial_shapes_never_raise(text):
    check_all_tasks(text)


def test_deep_valid_nesting_finds_the_inner_answer():
    text = '{"a":' * 100_000 + '{"center": [3, 4]}' + "}" * 100_000
    assert check_all_tasks(text)["center"].status == FORMAT_ERROR  # the first object is an outer one
    text = "{" * 100_000 + '{"center": [3, 4]}'  # unbalanced prefix: the inner object is the first valid one
    assert parse_answer("center", text, SHAPE).value == (3.0, 4.0)


SHAPES = {
    "open-brace": "{",
    "bracket": "[",
    "quote-only": '"',
    "open-bracket": "{[",
    "quote": '{"',
    "mixed": '{["',
    "quote-brace": '"{',
    "nest": '{"a":',
    "bad-pairs": '{"a"}',
    "close": "{]",
}


@pytest.mark.parametrize("shape, megabytes", [(shape, 1) for shape in sorted(SHAPES)] + [
    (shape, 10) for shape in ("open-brace", "bracket", "open-bracket", "quote-only", "mixed")])
def test_megabytes_of_brackets_never_raise(shape, megabytes):
    unit = SHAPES[shape]
    text = unit * (megabytes * 1_000_000 // len(unit))
    parsed = parse_answer("center", text, SHAPE)
    assert parsed.status == FORMAT_ERROR


def test_many_failed_candidates_are_capped():
    text = '{"a"} ' * (MAX_CANDIDATES + 10) + '{"center": [1, 2]}'
    assert parse_answer("center", text, SHAPE).status == FORMAT_ERROR  # documented: later candidates are not tried
    text = '{"a"} ' * (MAX_CANDIDATES - 10) + '{"center": [1, 2]}'
    assert parse_answer("center", text, SHAPE).value == (1.0, 2.0)


def _best_time(text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        parse_answer("polygon", text, SHAPE)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("shape", ["open-brace", "mixed", "quote-brace", "nest"])
def test_time_is_linear(shape):
    """1 MB parses in well under a second and 4x the input takes < 8x the time (best of 3, loaded machine)."""
    unit = SHAPES[shape]
    small, large = unit * (250_000 // len(unit)), unit * (1_000_000 // len(unit))
    t_small, t_large = _best_time(small), _best_time(large)
    assert t_large < 1.0, t_large
    assert t_large < 8 * t_small + 0.02, (t_small, t_large)  # quadratic would be 16x


_TOKENS = st.sampled_from(['{', '}', '[', ']', '"', '\\', ':', ',', ' ', '\n', '`', '```json', '"center"', '"bbox"',
                           '"polygon"', '"label"', 'HGG-1', 'LGG-0', '1', '-', '.', 'e', 'NaN', 'Infinity',
                           '1e400', '9' * 400, '\x00', '\ud800', '"\\u', '[1, 2]', '{"center": [1, 2]}'])
_ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_TOKENS | st.text(_ANY_CHAR, max_size=5), max_size=60))
def test_fuzz_never_raises(pieces):
    check_all_tasks("".join(pieces))


@settings(max_examples=300, deadline=None)
@given(text=st.text(_ANY_CHAR, max_size=200))
def test_any_text_never_raises(text):
    check_all_tasks(text)


_PLAIN = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                      lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children,
                                                                                          max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=6), _PLAIN, max_size=4),
       before=st.text(max_size=20).filter(lambda s: "{" not in s and "`" not in s),
       after=st.text(max_size=20))
def test_an_object_in_prose_is_found_exactly(obj, before, after):
    text = before + json.dumps(obj, ensure_ascii=False) + after
    if "```" in text:
        return
    assert _json_object(text) == obj
