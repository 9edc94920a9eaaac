"""The package's shape: which layer may import which, no import cycle, no import of snakemake below the
commands, and no file or function past the size a reader can hold.

The import graph is read here from the source with ``ast`` (every import, lazy ones inside functions
included), independently of :mod:`imitate.provenance.code`; one test also imports the libraries in a
fresh interpreter and looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import imitate

PACKAGE = Path(imitate.__file__).resolve().parent
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# A function may pass MAX_FUNCTION_LINES only with its reason written here.
LONG_FUNCTIONS: dict[str, str] = {}

# top-level part of imitate -> the parts it must never import
FORBIDDEN: dict[str, set[str]] = {
    "io": {"*"},
    "config": {"*"} - {"io"},
    "models": {"train", "evaluate", "commands", "cli", "tables", "preflight", "datasets", "shards", "demo"},
    "losses": {"train", "evaluate", "commands", "cli", "tables", "preflight", "datasets", "shards", "demo"},
    "images": {"train", "evaluate", "models", "losses", "commands", "cli", "tables", "preflight"},
    "provenance": {"train", "evaluate", "models", "losses", "commands", "cli", "tables", "preflight", "datasets"},
    "evaluate": {"train", "commands", "cli", "tables", "preflight"},
    "train": {"evaluate", "commands", "cli", "tables", "preflight"},
    "tables": {"train", "commands", "cli"},
    # the report's pages read the stages' outputs and records: nothing that computes them
    "report": {"train", "evaluate", "models", "losses", "commands", "cli", "preflight", "datasets", "shards", "demo",
               "embed", "images", "sections", "manifest"},
    # the released model: read by researchers' code, so nothing of the pipeline's stages
    "pretrained": {"train", "commands", "cli", "tables", "preflight", "datasets", "demo", "sections", "manifest"},
    # read by the workflow at load time: configuration only, never torch
    "experiments": {"train", "evaluate", "models", "losses", "commands", "cli", "tables", "preflight", "datasets",
                    "shards", "demo", "embed", "images", "provenance", "sections", "manifest"},
    # a table source's rows: read and checked with DuckDB, written with io
    "source": {"train", "evaluate", "models", "losses", "commands", "cli", "tables", "preflight", "datasets", "shards",
               "demo", "embed", "images", "sections", "manifest", "report", "pretrained"},
    # read by the workflow at load time too (each job's memory, time and GPUs): numbers only, never torch
    "scheduling": {"*"},
}
STAGE_PARTS = ("source", "sections", "manifest", "shards", "embed", "datasets", "demo", "train", "evaluate", "tables",
               "preflight", "provenance", "report")


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports anywhere in it (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``), and every third-party top-level name it imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_layer_imports_one_it_must_not(graph):
    breaches = []
    for module, imported in graph.items():
        forbidden = FORBIDDEN.get(_part(module), set())
        for target in imported:
            if target.split(".")[0] != "imitate" or _part(target) == _part(module):
                continue
            if "*" in forbidden or _part(target) in forbidden:
                breaches.append(f"{module} imports {target}")
    assert not breaches, "\n".join(sorted(breaches))


def test_io_is_a_leaf(graph):
    assert not {t for m, ts in graph.items() if _part(m) == "io" for t in ts if t.startswith("imitate")}


def test_nothing_below_the_commands_imports_snakemake(graph):
    users = sorted(m for m, ts in graph.items() if _part(m) != "commands" and any(t.split(".")[0] == "snakemake"
                                                                                 for t in ts))
    assert not users


def test_there_is_no_import_cycle(graph):
    edges = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_importing_models_losses_and_evaluation_never_loads_training():
    tasks = ", ".join(f"imitate.evaluate.tasks.{t}" for t in imitate_tasks())
    code = (f"import sys, imitate.models, imitate.losses, imitate.models.files, imitate.evaluate.request, {tasks}\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(('imitate.train', 'snakemake')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def imitate_tasks() -> tuple[str, ...]:
    from imitate.evaluate.tasks import TASKS

    return TASKS


def test_every_stage_lives_in_a_part_named_for_it():
    """Each part a stage's logic lives in is a package (the top level holds only cli, config and packages)."""
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py", "cli.py", "config.py"]
    assert all((PACKAGE / part / "__init__.py").is_file() for part in STAGE_PARTS)
    # a folder without __init__.py imports here as a namespace package but is left out of a built wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert not sorted(str(f) for f in folders if not (f / "__init__.py").is_file())


def test_no_file_or_function_is_too_long_without_a_reason():
    long_files, long_functions = [], {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE.parent).as_posix()
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{name}:{node.name}"] = length
    assert not long_files
    unexplained = {k: v for k, v in long_functions.items() if k not in LONG_FUNCTIONS}
    assert not unexplained, f"functions over {MAX_FUNCTION_LINES} lines without a reason: {unexplained}"
