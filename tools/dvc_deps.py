#!/usr/bin/env python3
"""Write or check the code deps of every dvc.yaml stage: the import closure of its ``brats-llm`` command.

A stage's code deps are the files of the modules its command imports, followed through ``brats_llm``
(module level and inside functions; the brats_llm/cli package counts with the module-level imports of its
modules, shared by every command, plus those inside the command's own function), with the packages that hold
them. A folder is listed instead of its files when every ``.py`` file under it is in the closure (its package
data, e.g. report/paper_numbers.yaml, come along). So a stage reruns when code it runs changes, and only then.

Layout. DVC cannot splice a list into ``deps`` (``${...}`` interpolates scalars only, YAML cannot concatenate
lists) and one path a line made the code deps 43% of dvc.yaml. So each ``deps`` is one YAML flow list: the
hand-written deps first (data, cards, package data such as brats_llm/presets/paper.yaml), then the code deps,
wrapped, on lines of their own. ``--write`` rewrites only the text of each ``deps`` value (comments go above
``deps:``, not inside the list); everything else in dvc.yaml stays byte for byte. A code dep is an entry
under ``brats_llm/`` that is a ``.py`` file or a folder; the stage's command is the word after ``brats-llm``
in its ``cmd`` (of ``do`` for ``foreach``).

Usage (from the repository root; standard library and PyYAML only; not part of the brats_llm package):

    python tools/dvc_deps.py --check   # exit 1 and print the diff when a stage's code deps are not its closure
    python tools/dvc_deps.py --write   # rewrite the deps lists in dvc.yaml
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "brats_llm"
WIDTH = 118  # wrap the deps lists before this column
PLAIN = re.compile(r"[A-Za-z0-9_./-]+")  # written without quotes inside a flow list


def stamp(path: Path) -> tuple[int, int]:
    """A file's version for the caches: modification time and size."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def parse(path: Path) -> ast.Module:
    """The syntax tree of ``path``; parsed again only when the file changes."""
    return _parse(path, stamp(path))


@functools.lru_cache(maxsize=None)
def _parse(path: Path, version: tuple[int, int]) -> ast.Module:
    return ast.parse(path.read_text())


def module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``brats_llm.x.y`` (a package's __init__.py), or None if it is no module."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(root: Path, tree: ast.AST) -> set[str]:
    """``brats_llm`` modules imported anywhere in ``tree`` (module level and inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pkg import module
    return {name for name in found if module_file(root, name)}


def module_level(tree: ast.Module) -> ast.Module:
    """Only the module-level import statements of ``tree``."""
    return ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])


def closure(root: Path, start: set[str]) -> set[Path]:
    """Files (relative to ``root``) of ``start`` and of everything they import, with the packages that hold them."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            prefix = ".".join(parts[:i])
            if prefix not in seen and module_file(root, prefix):
                seen.add(prefix)
                todo += module_imports(root, prefix, stamp(module_file(root, prefix)))
    return {module_file(root, name).relative_to(root) for name in seen}


@functools.lru_cache(maxsize=None)
def module_imports(root: Path, name: str, version: tuple[int, int]) -> frozenset[str]:
    """What running module ``name`` imports (the cli package: module level only), once per file ``version``."""
    tree = parse(module_file(root, name))
    if is_cli(name):  # each command's own imports come from command_entry
        tree = module_level(tree)
    return frozenset(imported_modules(root, tree))


def is_cli(name: str) -> bool:
    """Whether module ``name`` is part of the command line package ``brats_llm.cli``."""
    return name == f"{PACKAGE}.cli" or name.startswith(f"{PACKAGE}.cli.")


def is_command(node: ast.AST, command: str) -> bool:
    """Whether ``node`` is the function of Click command ``command`` (``@x.command("name")`` or by function name)."""
    if not isinstance(node, ast.FunctionDef):
        return False
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "command":
            name = decorator.args[0].value if decorator.args else node.name.replace("_", "-")
            if name == command:
                return True
    return False


def command_entry(root: Path, command: str) -> set[str]:
    """Modules a ``brats-llm`` command imports: the cli package (its modules' module-level imports) plus those in
    the command's own function, found in whichever module of the package defines it."""
    for path in sorted((root / PACKAGE / "cli").glob("*.py")):
        for node in parse(path).body:
            if is_command(node, command):
                return {f"{PACKAGE}.cli"} | imported_modules(root, node)
    raise KeyError(f"no command {command!r} in {PACKAGE}/cli/")


def collapse(root: Path, files: set[Path]) -> list[str]:
    """``files`` as dvc.yaml lists them: a folder whose ``.py`` files are all in ``files`` replaces them; sorted."""
    entries = set(files)
    for folder in sorted({p for f in files for p in f.parents if p != Path(PACKAGE) and p.parts}, key=len_parts):
        if folder in entries or any(parent in entries for parent in folder.parents):
            continue
        modules = {p.relative_to(root) for p in (root / folder).rglob("*.py")}
        if modules and modules <= files:
            entries = {e for e in entries if folder not in e.parents} | {folder}
    return sorted(str(e) for e in entries)


def len_parts(path: Path) -> int:
    """Depth of ``path``: shallow folders are tried first, so the largest complete folder wins."""
    return len(path.parts)


def code_deps(root: Path, command: str) -> list[str]:
    """The code deps of the stage that runs ``brats-llm COMMAND``."""
    return collapse(root, closure(root, command_entry(root, command)))


def is_code(entry: str) -> bool:
    """Whether a deps entry is generated: a ``.py`` file or a folder under brats_llm/."""
    return entry.startswith(f"{PACKAGE}/") and Path(entry).suffix in ("", ".py")


def stage_command(body: dict) -> str:
    """The ``brats-llm`` sub-command a stage runs."""
    words = body["cmd"].split()
    if words[0] != "brats-llm":
        raise ValueError(f"cmd {body['cmd']!r} does not run brats-llm")
    return words[1]


def flow_list(entries: list[str], indent: int, first: int) -> str:
    """``entries`` as a wrapped YAML flow list starting at column ``first``; continuation lines at ``indent``."""
    items = [e if PLAIN.fullmatch(e) else json.dumps(e) for e in entries]
    lines, line, column = [], "[", first + 1
    for i, item in enumerate(items):
        token = item + ("," if i < len(items) - 1 else "]")
        if line != "[" and column + 1 + len(token) > WIDTH:
            lines.append(line)
            line, column = " " * indent + token, indent + len(token)
        else:
            sep = "" if line == "[" else " "
            line, column = line + sep + token, column + len(sep) + len(token)
    return "\n".join(lines + [line or "[]"]) if items else "[]"


def render_deps(hand: list[str], code: list[str], indent: int, first: int) -> str:
    """The deps value: hand-written entries, then the code deps on lines of their own."""
    if not hand:
        return flow_list(code, indent, first)
    head = flow_list(hand, indent, first)[:-1] + ","  # drop the "]" and continue
    tail = flow_list(code, indent, indent)[1:]  # drop the "[": the code starts a new line at indent
    return head + "\n" + " " * indent + tail


def deps_nodes(text: str):
    """(stage name, deps key node, deps value node) of every stage in dvc.yaml's text."""
    root = yaml.compose(text)
    stages = next(value for key, value in root.value if key.value == "stages")
    for name, stage in stages.value:
        body = stage
        for key, value in stage.value:
            if key.value == "do":
                body = value
        for key, value in body.value:
            if key.value == "deps":
                yield name.value, key, value


def rewrite(text: str, root: Path = ROOT) -> str:
    """dvc.yaml's text with every stage's code deps replaced by its import closure."""
    data = yaml.safe_load(text)["stages"]
    edits = []
    for name, key, node in deps_nodes(text):
        if node.flow_style is not True:
            raise ValueError(f"dvc.yaml stage {name}: write deps as a flow list [...], line {node.start_mark.line + 1}")
        body = data[name].get("do", data[name])
        hand = [d for d in body["deps"] if not is_code(d)]
        indent = key.start_mark.column + 2
        new = render_deps(hand, code_deps(root, stage_command(body)), indent, node.start_mark.column)
        edits.append((node.start_mark.index, node.end_mark.index, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def stale(text: str, root: Path = ROOT) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (missing, stale) code deps: in the closure but not listed, listed but not in the closure."""
    result = {}
    for name, stage in yaml.safe_load(text)["stages"].items():
        body = stage.get("do", stage)
        listed, wanted = {d for d in body.get("deps", []) if is_code(d)}, set(code_deps(root, stage_command(body)))
        if listed != wanted:
            result[name] = (sorted(wanted - listed), sorted(listed - wanted))
    return result


def check(path: Path, root: Path = ROOT) -> str:
    """A unified diff of what ``--write`` would change in ``path``; empty when its code deps are current."""
    text = path.read_text()
    new = rewrite(text, root)
    return "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(path), f"{path} (--write)"))


def main(argv: list[str] | None = None) -> int:
    """Check or write the code deps of dvc.yaml; 1 when --check finds a difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 and print the diff when the deps are not current")
    mode.add_argument("--write", action="store_true", help="rewrite the deps lists of dvc.yaml in place")
    parser.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml", help="default: the repository's dvc.yaml")
    args = parser.parse_args(argv)
    if args.write:
        args.dvc_yaml.write_text(rewrite(args.dvc_yaml.read_text()))
        return 0
    diff = check(args.dvc_yaml)
    for name, (missing, extra) in stale(args.dvc_yaml.read_text()).items():
        print(f"{name}: missing {missing or '-'}; stale {extra or '-'}", file=sys.stderr)
    if diff:
        sys.stdout.write(diff)
        print(f"{args.dvc_yaml}: code deps are not the import closure; run: python tools/dvc_deps.py --write",
              file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
