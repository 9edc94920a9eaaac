"""Raw data is read-only to the workflow: no rule may write inside a raw-data root.

The roots are ``data.root`` and every ``datasets.<name>.root``. A root under the run's ``results/``
holds generated demo data and may be written; any other root holds a lab's raw files, and a rule whose
output (or log, or benchmark) could land inside it is refused when the workflow loads, before a job
runs. The check works on output *patterns*: a pattern's wildcards could expand to anything below its
fixed leading directories, so a root below those directories counts as written into.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENERATED_TREE = "results"  # where the workflow writes; raw roots below it are demo data


class RawDataWriteError(ValueError):
    """A rule's output lies inside a raw-data root."""


@dataclass(frozen=True)
class Violation:
    """Rule ``rule`` would write ``pattern``, which lies inside the root configured at ``key``."""

    rule: str
    pattern: str
    key: str
    root: str

    def __str__(self) -> str:
        message = (f"rule {self.rule} writes {self.pattern!r} inside {self.key} = {self.root!r}: raw data is "
                   f"read-only to the workflow (only roots under {GENERATED_TREE}/, the demo's, are written)")
        if "demo" in self.rule:
            message += (". Real files: drop the entry's demo: block (data.source: mimic for MIMIC-CXR); a demo "
                        f"copy: give it a root under {GENERATED_TREE}/")
        return message


def raw_roots(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> root directory, for ``data.root`` and every ``datasets.<name>.root``."""
    roots = {"data.root": str(config["data"]["root"])}
    roots.update({f"datasets.{name}.root": str(entry["root"]) for name, entry in config["datasets"].items()})
    return roots


def _absolute(path: str | Path, workdir: Path) -> Path:
    return Path(os.path.normpath(workdir / Path(path).expanduser()))


def _fixed_dir(pattern: str) -> tuple[str, bool]:
    """The directories of ``pattern`` before its first wildcard, and whether it has a wildcard."""
    if "{" not in pattern:
        return pattern, False
    head = pattern[: pattern.index("{")]
    return head[: head.rfind("/") + 1] or ".", True


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def find_violations(
    outputs: Iterable[tuple[str, str]], roots: Mapping[str, str], workdir: str | Path
) -> list[Violation]:
    """Every (rule, output pattern) of ``outputs`` that could write inside a root not under results/."""
    workdir = Path(os.path.abspath(workdir))
    generated = _absolute(GENERATED_TREE, workdir)
    guarded = {key: _absolute(root, workdir) for key, root in roots.items()}
    guarded = {key: root for key, root in guarded.items() if not _inside(root, generated)}
    violations = []
    for rule, pattern in outputs:
        fixed, wild = _fixed_dir(pattern)
        path = _absolute(fixed, workdir)
        for key, root in guarded.items():
            if _inside(path, root) or (wild and _inside(root, path)):
                violations.append(Violation(rule, pattern, key, roots[key]))
    return violations


def check_outputs_outside_raw_roots(
    outputs: Iterable[tuple[str, str]], config: Mapping[str, Any], workdir: str | Path
) -> None:
    """Raise :class:`RawDataWriteError` listing every rule output that lies inside a raw-data root."""
    violations = find_violations(outputs, raw_roots(config), workdir)
    if violations:
        raise RawDataWriteError("\n".join(str(v) for v in violations))
