"""dvc.yaml lists, for every stage, each file of replication/ that the stage's command imports.

The imports are followed through the source (ast, function-level imports included), so an edit to any module a
stage runs makes `dvc status` report that stage as changed. Run this file as a script to print each stage's list.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "replication"


def module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Every `replication.*` module named by an import anywhere in the file (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from package import module`
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def closure(module: str) -> set[Path]:
    """The files of every module `module` imports, transitively, with the packages' __init__ files on the way."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(imported_modules(path))
    return seen


def stage_modules() -> dict[str, str]:
    """{stage: module its cmd runs} for every stage of dvc.yaml (foreach stages once)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        match = re.search(r"python -m (replication\.stages\.\w+)", body["cmd"])
        assert match, f"{name}: its cmd does not run a replication.stages module"
        out[name] = match.group(1)
    return out


def listed_deps(stage: dict) -> set[str]:
    return {str(d) for d in stage.get("do", stage).get("deps", [])}


def has_code(path: Path) -> bool:
    """False for a file that holds nothing but a docstring (a package marker): editing it changes no result."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def required(module: str) -> set[str]:
    """The deps a stage must list: every imported file that holds code."""
    return {str(p.relative_to(REPO)) for p in closure(module) if has_code(p)}


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_dependency_of_its_stage(stage):
    module = stage_modules()[stage]
    listed = listed_deps(STAGES[stage])
    missing = sorted(required(module) - listed)
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not list them in deps"
    folders = sorted(d for d in listed if d.startswith(PACKAGE) and (REPO / d).is_dir())
    assert not folders, f"dvc.yaml stage {stage!r} lists whole folders {folders}: list the files it imports"


def test_the_import_walk_sees_function_level_imports_and_their_packages():
    found = imported_modules(REPO / "replication" / "experiments" / "table2.py")
    assert "replication.training.loop" in found  # imported inside train_text_cnn
    files = {str(p.relative_to(REPO)) for p in closure("replication.stages.table2")}
    assert {"replication/training/loop.py", "replication/models/text_cnn.py", "replication/experiments/__init__.py"} <= files
    assert not has_code(REPO / "replication" / "experiments" / "__init__.py")


if __name__ == "__main__":
    for stage, module in stage_modules().items():
        print(f"{stage}:")
        for path in sorted(required(module)):
            print(f"  - {path}")
    sys.exit(0)
