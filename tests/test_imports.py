"""Imports run down the pipeline only: no module imports a later phase, shared layers import no phase, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brats_llm"
#: The pipeline phases (sub-packages of brats_llm), in order: a module may import its own phase and earlier ones.
#: ``export`` (nnU-Net files of the prepared patients and their folds) reads the raw release and the splits.
PHASES: tuple[str, ...] = ("ingest", "preprocess", "split", "export", "slices", "geometry", "conversations", "publish",
                           "llm", "train", "evaluate", "report")
#: Shared layers under every phase: any phase may import them; they import only each other.
SHARED: frozenset[str] = frozenset({"brats_llm", "constants", "config", "errors", "atomic", "metrics", "provenance",
                                    "arrowio", "determinism", "outputs", "plots", "parallel", "ranks"})
#: The command line (the brats_llm.cli package, every module of it) sits above everything: it may import any
#: module, and no module outside it imports it.
ENTRY: frozenset[str] = frozenset({"cli", "__main__"})
#: (importer, imported) pairs allowed to break the rules until their fix lands; keep it empty.
KNOWN: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, current: str) -> str:
    """The module a ``from`` import names, relative imports resolved against ``current``."""
    if not node.level:
        return node.module or ""
    package = current if MODULES[current].name == "__init__.py" else current.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports(name: str) -> set[str]:
    """``brats_llm`` modules that ``name`` imports anywhere (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(), str(MODULES[name]))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "brats_llm"}
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name)
            if module.split(".")[0] == "brats_llm":  # ``from pkg import module`` imports the module
                found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names}
    unknown = found - set(MODULES)
    assert not unknown, f"{MODULES[name]}: imports {sorted(unknown)}, which are no modules of brats_llm"
    return found - {name}


GRAPH: dict[str, set[str]] = {name: imports(name) for name in MODULES}


def layer(name: str) -> str:
    """The phase, shared layer or entry point holding module ``name``."""
    top = name.split(".")[1] if "." in name else name
    if top not in (*PHASES, *SHARED, *ENTRY):
        raise AssertionError(f"{MODULES[name]}: {top!r} is in no layer; add it to PHASES, SHARED or ENTRY")
    return top


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` must not import ``imported``, or None when the import runs down the pipeline."""
    source, target = layer(importer), layer(imported)
    if source in ENTRY:
        return None
    if target in ENTRY:
        return "imports the command line"
    if target in SHARED:
        return None
    if source in SHARED:
        return f"a shared layer imports the {target} phase"
    if PHASES.index(target) > PHASES.index(source):
        return f"the {source} phase imports the later {target} phase"
    return None


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = [f"{a} -> {b}: {why}" for a in sorted(graph) for b in sorted(graph[a])
             if (why := violation(a, b)) and (a, b) not in KNOWN]
    return found


def mutual(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ()) and (a, b) not in KNOWN)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_layer():
    assert all(layer(name) for name in MODULES)
    assert len(PHASES) == len(set(PHASES)) and not (set(PHASES) & SHARED) and not (set(PHASES) & ENTRY)


def test_the_cli_package_is_the_entry_layer():
    """Every module of brats_llm.cli may import any phase; only the cli package and __main__ import it."""
    cli = {name for name in MODULES if name == "brats_llm.cli" or name.startswith("brats_llm.cli.")}
    assert {"brats_llm.cli", "brats_llm.cli.options", "brats_llm.cli.data", "brats_llm.cli.llm"} <= cli
    assert {layer(name) for name in cli} == {"cli"}
    assert "brats_llm.train.llm.finetune" in GRAPH["brats_llm.cli.llm"]
    assert violation("brats_llm.cli.llm", "brats_llm.report.build") is None
    importers = {a for a, bs in GRAPH.items() if bs & cli} - cli
    assert importers == {"brats_llm.__main__"}


def test_no_import_runs_back_up_the_pipeline():
    assert violations(GRAPH) == []


def test_no_two_modules_import_each_other():
    assert mutual(GRAPH) == []


def test_no_import_cycles():
    assert cycles({a: {b for b in bs if (a, b) not in KNOWN} for a, bs in GRAPH.items()}) == []


def test_llm_never_imports_fine_tuning():
    """Fine-tuning (train/llm) builds on model loading and prompt encoding (llm/), never the reverse."""
    back = [(a, b) for a in GRAPH if a.startswith("brats_llm.llm.") for b in GRAPH[a] if b.startswith("brats_llm.train.")]
    assert back == []
    assert "brats_llm.llm.infer" in GRAPH["brats_llm.train.llm.collator"]


def test_lesionwise_owns_its_helpers():
    assert GRAPH["brats_llm.metrics.lesionwise"] <= {"brats_llm.metrics.surface"}
    assert "brats_llm.metrics.lesionwise" in GRAPH["brats_llm.metrics.segmentation"]


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"brats_llm.ingest.layout": {"brats_llm.preprocess.volumes"}}, "later preprocess phase"),
        ({"brats_llm.metrics.points": {"brats_llm.geometry.shapes"}}, "shared layer imports the geometry phase"),
        ({"brats_llm.report.build": {"brats_llm.cli"}}, "imports the command line"),
        ({"brats_llm.llm.infer": {"brats_llm.cli.options"}}, "imports the command line"),
    ],
)
def test_the_checks_see_a_bad_import(graph, expected):
    (found,) = violations(graph)
    assert expected in found


def test_the_checks_see_a_cycle():
    graph = {"brats_llm.metrics.a": {"brats_llm.metrics.b"}, "brats_llm.metrics.b": {"brats_llm.metrics.c"},
             "brats_llm.metrics.c": {"brats_llm.metrics.a"}, "brats_llm.cli": {"brats_llm.metrics.a"}}
    assert cycles(graph) == [["brats_llm.metrics.a", "brats_llm.metrics.b", "brats_llm.metrics.c"]]
    assert mutual({"brats_llm.llm.x": {"brats_llm.llm.y"}, "brats_llm.llm.y": {"brats_llm.llm.x"}}) == [
        ("brats_llm.llm.x", "brats_llm.llm.y")]
