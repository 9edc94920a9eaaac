"""The provenance of the results tables as a page a person reads: per table its stage, hashes, versions and run,
its direct inputs, and its lineage down to the raw files (the tree ``imitate provenance`` prints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imitate.provenance.lineage import format_lineage, lineage, read_record
from imitate.provenance.record import entry_digest
from imitate.report.html import esc, table


def _record(path: Path) -> dict[str, Any]:
    record = read_record(path)
    if record is None:
        raise FileNotFoundError(f"{path}: no provenance record (no {path.name}.provenance.json beside it)")
    return record


def _facts(record: Mapping[str, Any]) -> list[list[object]]:
    """What made the artifact and with which code, settings and config, as (field, value) rows."""
    git, run = record.get("git") or {}, record.get("run") or {}
    device = run.get("device") or {}
    commit = git.get("commit")
    return [
        ["stage / rule", f"{record.get('stage')} / {record.get('rule')}"],
        ["run id", record.get("run_id")],
        ["wildcards", record.get("wildcards")],
        ["experiment", record.get("experiment") or "base"],
        ["git commit", f"{commit}{' (uncommitted changes)' if git.get('dirty') else ''}" if commit else None],
        ["sha256 of the imitate source", record.get("code_sha256")],
        ["sha256 of the stage's settings", record.get("settings_sha256")],
        ["sha256 of the whole config", run.get("config_sha256")],
        ["ran", f"{run.get('started')} to {run.get('ended')} on {run.get('host')}"],
        ["device", ", ".join(f"{k}: {v}" for k, v in sorted(device.items()) if v is not None) or None],
    ]


def _digest_rows(entries: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]) -> list[list[object]]:
    items = entries.items() if isinstance(entries, Mapping) else ((None, e) for e in entries)
    return [[*([name] if name is not None else []), e.get("path"), e.get("kind"), entry_digest(e), e.get("bytes")]
            for name, e in items]


def table_section(path: Path) -> str:
    """One results table's provenance as HTML: facts, outputs, inputs, versions and the lineage tree."""
    record = _record(path)
    versions = sorted((record.get("versions") or {}).items())
    return (
        f'<h2 id="{esc(path.name)}">{esc(path)}</h2>\n'
        + table(["field", "value"], _facts(record))
        + "<h3>Outputs</h3>\n" + table(["path", "kind", "sha256", "bytes"], _digest_rows(record.get("outputs", [])),
                                       numeric=(3,))
        + "<h3>Inputs (with the digest each had when it was used)</h3>\n"
        + table(["name", "path", "kind", "sha256", "bytes"], _digest_rows(record.get("inputs", {})), numeric=(4,))
        + "<h3>Library versions</h3>\n" + table(["library", "version"], versions)
        + "<h3>Lineage down to the raw files</h3>\n"
        + f"<pre>{esc(format_lineage(lineage(path)))}</pre>\n"
    )


def provenance_body(tables: Sequence[str | Path]) -> str:
    """The provenance page's HTML for the results ``tables`` (paths as the records name them)."""
    paths = [Path(t) for t in tables]
    links = " · ".join(f'<a href="#{esc(p.name)}">{esc(p.stem)}</a>' for p in paths)
    return (
        '<p class="note">Each results table\'s provenance record, read from its <code>.provenance.json</code>: '
        "what made it (stage, rule, code, settings, config, run), the digests of its outputs and inputs, and "
        "its lineage down to the raw input files with the sha256 each had when used. "
        "<code>imitate audit results</code> re-hashes all of them.</p>\n"
        f"<p>{links}</p>\n" + "".join(table_section(p) for p in paths)
    )
