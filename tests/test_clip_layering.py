"""The trainer's library stands alone: only the entry point (main, config) knows the pipeline."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "clip_model"
APP = {"main.py", "config.py"}  # `wit train` / `wit eval`: configuration and paths
LIBRARY = sorted(p for p in PACKAGE.glob("*.py") if p.name not in APP and p.name != "__init__.py")


def _imports(path: pathlib.Path) -> set[str]:
    """Every module an import statement names, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_library_modules_are_the_ones_the_issue_names():
    names = {p.stem for p in LIBRARY}
    assert {"model", "loss", "tokenizer", "data", "zero_shot", "distributed", "train"} <= names


def test_no_library_module_imports_the_pipeline_or_the_demo():
    for path in LIBRARY:
        bad = {m for m in _imports(path) if m.split(".")[0] in ("pipeline", "queries", "bench")}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_the_library_loads_no_pipeline_module():
    modules = ", ".join(f"clip_model.{p.stem}" for p in LIBRARY)
    code = (
        f"import sys, importlib\nfor m in '{modules}'.split(', '): importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'queries')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert out.stdout.strip() == "[]"
