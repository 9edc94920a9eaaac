"""A DuckDB catalog of every provenance record under a results tree: artifacts and their edges.

``artifacts`` has one row per recorded artifact (path, digest, stage, run, code, settings, config, git,
times, host, device); ``edges`` one row per (artifact, input) with the digest the input had when it was
used. Recursive queries over ``edges`` answer "which checkpoint produced this row" and "which tables used
this split file" (see the README); ``artifacts.experiment`` names the experiment a pretraining or
evaluation belonged to, so joining it over ``edges`` answers "which experiments used this embeddings file".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb

from imitate.provenance.record import SIDECAR_SUFFIX, entry_digest

ARTIFACT_COLUMNS = {
    "path": "VARCHAR", "sha256": "VARCHAR", "bytes": "BIGINT", "stage": "VARCHAR", "run_id": "VARCHAR",
    "rule": "VARCHAR", "wildcards": "VARCHAR", "experiment": "VARCHAR", "settings_sha256": "VARCHAR",
    "config_sha256": "VARCHAR", "code_sha256": "VARCHAR", "git_commit": "VARCHAR", "git_dirty": "BOOLEAN",
    "started": "TIMESTAMPTZ", "ended": "TIMESTAMPTZ", "host": "VARCHAR", "cpu": "VARCHAR", "gpu": "VARCHAR",
    "settings": "JSON", "seeds": "JSON", "versions": "JSON", "record": "VARCHAR",
}
EDGE_COLUMNS = {
    "output": "VARCHAR", "input_name": "VARCHAR", "input": "VARCHAR", "input_kind": "VARCHAR",
    "input_sha256": "VARCHAR",
}


def _own_outputs(sidecar: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The output a sidecar stands beside (a job's record is copied beside each of its outputs)."""
    name = sidecar.name.removesuffix(SIDECAR_SUFFIX)
    return [o for o in record.get("outputs", []) if Path(o["path"]).name == name]


def _artifact_rows(sidecar: Path, record: dict[str, Any]) -> list[tuple]:
    run = record.get("run", {})
    git = record.get("git", {})
    rows = []
    for out in _own_outputs(sidecar, record):
        rows.append((
            out["path"], entry_digest(out), out.get("bytes"), record.get("stage"),
            record.get("run_id"), record.get("rule"), record.get("wildcards"), record.get("experiment"),
            record.get("settings_sha256"),
            run.get("config_sha256"), record.get("code_sha256"), git.get("commit"), git.get("dirty"),
            run.get("started"), run.get("ended"), run.get("host"), run.get("device", {}).get("cpu"),
            run.get("device", {}).get("gpu"), json.dumps(record.get("settings")), json.dumps(record.get("seeds")),
            json.dumps(record.get("versions")), str(sidecar),
        ))
    return rows


def _edge_rows(sidecar: Path, record: dict[str, Any]) -> list[tuple]:
    return [
        (out["path"], name, entry["path"], entry.get("kind"), entry_digest(entry))
        for out in _own_outputs(sidecar, record)
        for name, entry in sorted(record.get("inputs", {}).items())
    ]


def build_catalog(root: str | Path, out: str | Path) -> tuple[int, int]:
    """(Re)build the catalog at ``out`` from every sidecar under ``root``; returns (artifacts, edges)."""
    artifacts, edges = [], []
    for sidecar in sorted(Path(root).rglob(f"*{SIDECAR_SUFFIX}")):
        record = json.loads(sidecar.read_text())
        artifacts += _artifact_rows(sidecar, record)
        edges += _edge_rows(sidecar, record)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        for table, columns, rows in (("artifacts", ARTIFACT_COLUMNS, artifacts), ("edges", EDGE_COLUMNS, edges)):
            con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
            if rows:
                con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
    os.replace(tmp, out)
    return len(artifacts), len(edges)
