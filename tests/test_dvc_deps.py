"""dvc.yaml's code deps of each stage equal the import closure of its command (no stale results)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brats_llm"
DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The source file of module ``brats_llm.x.y`` (a package's __init__.py), or None if it is no module."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST, current: str) -> set[str]:
    """``brats_llm`` modules imported anywhere in ``tree`` (module level and inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("brats_llm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brats_llm"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pkg import module
    return {name for name in found if module_file(name)}


def closure(start: set[str]) -> set[Path]:
    """Files of ``start`` and of everything they import, with the packages that hold them."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            prefix = ".".join(parts[:i])
            if prefix not in seen and module_file(prefix):
                seen.add(prefix)
                tree = ast.parse(module_file(prefix).read_text())
                if prefix == "brats_llm.cli":  # each command's own imports come from command_entry
                    tree = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                      type_ignores=[])
                todo += imported_modules(tree, prefix)
    return {module_file(name).relative_to(ROOT) for name in seen}


def command_entry(command: str) -> set[str]:
    """Modules a ``brats-llm`` command imports: cli.py's own imports plus those in its function."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "command"
                        and (decorator.args and decorator.args[0].value == command
                             or not decorator.args and node.name.replace("_", "-") == command)):
                    return {"brats_llm.cli"} | imported_modules(node, "brats_llm.cli")
    raise KeyError(f"no command {command!r} in cli.py")


def stage_bodies():
    for name, stage in DVC_STAGES.items():
        body = stage.get("do", stage)
        yield name, body["cmd"].split()[1], body["deps"]


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


def missing_deps(command: str, deps: list[str]) -> list[str]:
    return sorted(str(p) for p in closure(command_entry(command)) if not covered(p, deps))


def extra_deps(command: str, deps: list[str]) -> list[str]:
    """Code deps (under brats_llm/) that hold no module of the closure."""
    files = closure(command_entry(command))
    code = [d for d in deps if d.startswith("brats_llm/") and (ROOT / d).suffix in ("", ".py")]
    return sorted(d for d in code if not any(covered(f, [d]) for f in files))


@pytest.mark.parametrize("stage, command, deps", list(stage_bodies()), ids=[s for s, _, _ in stage_bodies()])
def test_code_deps_equal_the_import_closure(stage, command, deps):
    assert missing_deps(command, deps) == [], f"{stage}: modules the command imports but dvc.yaml does not list"
    assert extra_deps(command, deps) == [], f"{stage}: code deps the command never imports"


def test_the_check_sees_a_removed_module():
    _, command, deps = next(s for s in stage_bodies() if s[0] == "prepare")
    module = "brats_llm/preprocess/transforms.py"
    assert module not in missing_deps(command, deps)
    trimmed = [d for d in deps if d != "brats_llm/preprocess"] + ["brats_llm/preprocess/volumes.py", "brats_llm/preprocess/case.py"]
    assert module in missing_deps(command, trimmed)
