"""Which source files a stage runs, and one hash over them.

Snakemake reruns a rule when its params change, but it cannot see the Python a shell command imports.
Each rule therefore passes the hash of its command's import closure inside ``imitate`` as a param: an
edit to any module the stage uses reruns that stage and what depends on it, and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "imitate"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _module_file(module: str, root: Path) -> Path | None:
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(file: Path) -> set[str]:
    """Every ``imitate.*`` module a file imports, anywhere in it (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # kept only if it is a module
    return found


def module_closure(module: str, root: Path = PACKAGE_ROOT) -> list[Path]:
    """The source files of ``module``, of every package module it imports (transitively) and of the
    packages containing them, sorted."""
    files: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
            file = _module_file(".".join(parts[:depth]), root)
            if file is not None and file not in files:
                files.add(file)
                pending.extend(_imported_modules(file))
    if _module_file(module, root) is None:
        raise ValueError(f"module {module} not found under {root}")
    return sorted(files)


def files_sha256(files: list[Path], root: Path) -> str:
    """sha256 over the path relative to ``root`` and the bytes of each of ``files``, in order."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def stage_code_sha256(module: str, root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the relative paths and bytes of :func:`module_closure` of ``module``."""
    return files_sha256(module_closure(module, root), root)
