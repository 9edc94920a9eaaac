"""Re-hash every recorded input and output and report what no longer matches its record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from imitate.provenance.record import SIDECAR_SUFFIX, describe_input, entry_digest

# what a finding means, for the report
KINDS = {
    "output_missing": "the artifact a record describes is gone",
    "output_modified": "the artifact differs from the bytes its stage wrote (edited after the fact)",
    "input_missing": "an input the stage used is gone",
    "input_changed": "an input differs from what the stage used (the artifact is stale)",
    "record_unreadable": "the provenance record itself cannot be read",
}


@dataclass(frozen=True)
class Finding:
    """One mismatch between a record and the files on disk."""

    record: str
    kind: str
    path: str
    detail: str = ""


@cache
def _current(path: str) -> str | None:
    p = Path(path)
    if not p.exists():
        return None
    return entry_digest(describe_input(p))


def _check(record_path: Path, role: str, entry: dict[str, Any]) -> Finding | None:
    now = _current(entry["path"])
    if now is None:
        return Finding(str(record_path), f"{role}_missing", entry["path"])
    if now != entry_digest(entry):
        kind = "output_modified" if role == "output" else "input_changed"
        return Finding(str(record_path), kind, entry["path"], f"recorded {entry_digest(entry)[:16]}, now {now[:16]}")
    return None


def audit(root: str | Path) -> list[Finding]:
    """Check every ``*.provenance.json`` under ``root`` against the files it names.

    Paths in records are relative to the directory the workflow ran in, so run this from there.
    """
    _current.cache_clear()
    findings: list[Finding] = []
    for sidecar in sorted(Path(root).rglob(f"*{SIDECAR_SUFFIX}")):
        try:
            record = json.loads(sidecar.read_text())
            entries = [("output", e) for e in record["outputs"]]
            entries += [("input", e) for e in record["inputs"].values()]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            findings.append(Finding(str(sidecar), "record_unreadable", str(sidecar), str(exc)))
            continue
        findings.extend(f for role, entry in entries if (f := _check(sidecar, role, entry)) is not None)
    return findings
