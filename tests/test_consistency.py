"""Consistency test: N answers per image, greedy repeats identical, sampled ones recorded with their setting."""

import json

from brats_llm.evaluate.consistency import consistency
from brats_llm.evaluate.consistency_metrics import answer_label
from brats_llm.llm.consistency import ConsistencyParams, pick_slices


def test_pick_one_middle_slice_per_grade():
    meta = [{"patient_id": p, "grade": g, "plane": "axial", "slice_index": i}
            for p, g, n in (("a", "HGG", 5), ("b", "LGG", 3), ("c", "HGG", 2)) for i in range(n)]
    assert pick_slices(meta) == {"HGG": 2, "LGG": 6}
    assert answer_label('{"label": "LGG-0"}') == "LGG" and answer_label("no idea") == "unparsable"


def test_greedy_and_sampled_runs(published, tiny_model, tmp_path):
    greedy = ConsistencyParams(repeats=5, do_sample=False, max_new_tokens=6, batch_size=2)
    metrics = consistency(published, tmp_path / "greedy", str(tiny_model), greedy, adapters={"general": None}, progress=False)
    for image in metrics["general"].values():
        assert image["distinct_answers"] == 1 and image["HGG"] + image["LGG"] + image["NG"] + image["unparsable"] == 5
        assert image["answers"] == 5 and image["parse_rate"] == image["parsed"] / 5
        if image["parsed"]:  # agreement among parsed answers only; greedy repeats agree fully
            assert image["agreement"] == 1.0 and image[image["majority"]] == image["parsed"]
        else:
            assert image["agreement"] is None and image["agreement_note"] == "no parsed answer"
    record = json.loads((tmp_path / "greedy" / "provenance.json").read_text())
    assert record["decoding"].startswith("greedy") and record["smoke_model"] is True
    sampled = ConsistencyParams(repeats=6, do_sample=True, temperature=1.5, top_p=1.0, max_new_tokens=6, batch_size=4)
    metrics = consistency(published, tmp_path / "sampled", str(tiny_model), sampled, adapters={"general": None}, progress=False)
    assert any(image["distinct_answers"] > 1 for image in metrics["general"].values())
    answers = (tmp_path / "sampled" / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 6 * len(metrics["general"])
    assert (tmp_path / "sampled" / "plots" / "images" / "consistency_general.png").is_file()


def test_agreement_is_over_parsed_answers(published, tiny_model, tmp_path, monkeypatch):
    """3 unparsable answers of 5 and 2 parsed, equal: agreement 1.0 among parsed, parse rate 0.4."""
    import brats_llm.llm.consistency as module

    replies = iter(['{"label": "HGG-1"}', "no idea", "no idea", '{"label": "HGG-1"}', "no idea"] * 2)
    monkeypatch.setattr(module, "generate", lambda model, processor, images, prompts, **kw: [next(replies) for _ in prompts])
    params = ConsistencyParams(repeats=5, do_sample=False, max_new_tokens=6, batch_size=2)
    metrics = consistency(published, tmp_path / "c", str(tiny_model), params, adapters={"general": None}, progress=False)
    image = next(iter(metrics["general"].values()))
    assert (image["HGG"], image["unparsable"], image["parsed"], image["answers"]) == (2, 3, 2, 5)
    assert image["parse_rate"] == 0.4 and image["agreement"] == 1.0 and image["majority"] == "HGG"
    assert json.loads((tmp_path / "c" / "details.json").read_text()) == metrics
    assert json.loads((tmp_path / "c" / "metrics.json").read_text()) == {"parse_rate_repeats": 0.4,
                                                                        "agreement_repeats": 1.0}  # pooled


def test_generation_imports_no_scoring():
    """The pipeline runs one way: llm/ generates, evaluate/ scores; nothing under llm/ imports evaluate/."""
    import ast
    from pathlib import Path

    import brats_llm.llm

    for path in Path(brats_llm.llm.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        modules += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [m for m in modules if m.startswith("brats_llm.evaluate")], path
