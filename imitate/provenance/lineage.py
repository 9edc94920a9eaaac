"""Reading provenance records back, and following them from an artifact down to the raw inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imitate.io.parquet import read_metadata
from imitate.provenance.record import PARQUET_KEY, entry_digest, sidecar_path


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The provenance record of an artifact: its sidecar, else its Parquet metadata; ``None`` if neither."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    if Path(path).suffix == ".parquet" and Path(path).is_file():
        raw = read_metadata(path).get(PARQUET_KEY)
        return json.loads(raw) if raw else None
    return None


def _own_digest(record: dict[str, Any], path: str) -> dict[str, Any]:
    for out in record.get("outputs", []):
        if out["path"] == path:
            return {k: out[k] for k in ("sha256", "listing_sha256") if k in out}
    return {}


def lineage(path: str | Path, _seen: set[str] | None = None) -> dict[str, Any]:
    """The tree of records from ``path`` down to the raw inputs that have no record of their own.

    Each node has ``path`` and, for a recorded artifact, ``stage``, ``run_id``, its digest and
    ``inputs`` (name -> node, with the digest the input had when it was used). An artifact reached a
    second time is marked ``repeated`` instead of being expanded again.
    """
    seen = _seen if _seen is not None else set()
    node: dict[str, Any] = {"path": str(path)}
    record = read_record(path)
    if record is None:
        return node
    node.update(stage=record.get("stage"), run_id=record.get("run_id"), **_own_digest(record, str(path)))
    if str(path) in seen:
        node["repeated"] = True
        return node
    seen.add(str(path))
    children = {}
    for name, entry in record.get("inputs", {}).items():
        child = lineage(entry["path"], seen)
        child.update({k: entry[k] for k in ("kind", "sha256", "listing_sha256", "n_files") if k in entry})
        children[name] = child
    node["inputs"] = children
    return node


def _describe(node: dict[str, Any]) -> str:
    digest = entry_digest(node)
    parts = [node["path"]]
    if node.get("stage"):
        parts.append(f"[{node['stage']}]")
    elif node.get("kind") == "directory":
        parts.append(f"[raw directory, {node.get('n_files', '?')} files]")
    else:
        parts.append("[raw]")
    if digest:
        parts.append(f"sha256:{digest[:16]}")
    if node.get("repeated"):
        parts.append("(shown above)")
    return " ".join(parts)


def format_lineage(node: dict[str, Any]) -> str:
    """The lineage tree as indented text, one artifact per line."""
    lines = [_describe(node)]

    def walk(parent: dict[str, Any], prefix: str) -> None:
        items = list(parent.get("inputs", {}).items())
        for i, (name, child) in enumerate(items):
            last = i == len(items) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{name}: {_describe(child)}")
            walk(child, prefix + ("   " if last else "│  "))

    walk(node, "")
    return "\n".join(lines)
