from dataclasses import dataclass

import pytest

from brats_llm.config import ParamsError, load_section, stage_params


@dataclass(frozen=True)
class Example:
    alpha: int = 1
    beta: str = "x"


def test_section_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example:\n  alpha: 5\nother:\n  gamma: 3\n")
    assert stage_params(Example, "example", params, {"beta": None}) == Example(alpha=5, beta="x")
    assert stage_params(Example, "example", params, {"beta": "y"}) == Example(alpha=5, beta="y")
    assert stage_params(Example, "example", None, {}) == Example()
    assert load_section(params, "missing") == {}


def test_unknown_key_fails_loudly(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example:\n  alpha: 5\n  typo: 1\n")
    with pytest.raises(ParamsError, match="typo"):
        stage_params(Example, "example", params, {})


def test_malformed_section(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("example: [1, 2]\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_section(params, "example")
