"""Provenance records: what made an artifact, from which inputs, with which code and settings.

A stage run has two parts of record:

* the *stable* part — stage, rule and wildcards, experiment, run id, settings and their sha256, the imitate
  source sha256, git commit and dirty flag, library versions, seeds, and every input with its sha256.
  It is identical whenever the same code runs on the same inputs, so it is stored inside Parquet
  outputs (key ``imitate.provenance``) without breaking byte-identical reruns;
* the *run* part — start and end time, host, device, the sha256 of the whole workflow config the stage
  ran under (``IMITATE_CONFIG_SHA256``, set by the workflow; ``None`` for a hand-run command) and the
  sha256 of every output. It lives only in the sidecar ``<output>.provenance.json`` next to each output.

Large inputs are never re-hashed file by file: a directory is recorded by the digest of its sorted
listing (relative path and size of every file), and image shards by their shard manifest, which itself
lists each shard's sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitate.config import canonical_json, config_hash
from imitate.provenance.code import files_sha256

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PARQUET_KEY = "imitate.provenance"
SIDECAR_SUFFIX = ".provenance.json"
CONFIG_ENV = "IMITATE_CONFIG_SHA256"
# set by each workflow rule on its command line; absent when a command is run by hand
RULE_ENV, WILDCARDS_ENV = "IMITATE_RULE", "IMITATE_WILDCARDS"
# set by the rules that belong to one experiment (pretraining, evaluation): which one
EXPERIMENT_ENV = "IMITATE_EXPERIMENT"
LIBRARIES = (
    "imitate", "torch", "torchvision", "transformers", "snakemake", "duckdb", "pyarrow", "webdataset",
    "pydicom", "numpy", "pillow", "scikit-learn",
)

def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def directory_digest(path: str | Path) -> dict[str, Any]:
    """Digest of a directory tree by its sorted listing (relative path + size of every file)."""
    root = Path(path)
    digest = hashlib.sha256()
    n_files = total = 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root).as_posix()}\t{size}\n".encode())
        n_files += 1
        total += size
    return {"kind": "directory", "listing_sha256": digest.hexdigest(), "n_files": n_files, "bytes": total}


def entry_digest(entry: Mapping[str, Any]) -> str | None:
    """The digest of a recorded file or directory entry (file sha256, or directory listing sha256)."""
    return entry.get("sha256") or entry.get("listing_sha256")


def describe_input(path: str | Path) -> dict[str, Any]:
    """Record of one input: a file's sha256 and size, or a directory's listing digest."""
    path = Path(path)
    if path.is_dir():
        return {"path": str(path), **directory_digest(path)}
    if not path.exists():
        raise FileNotFoundError(f"provenance: input {path} does not exist")
    return {"path": str(path), "kind": "file", "sha256": file_sha256(path), "bytes": path.stat().st_size}


def code_sha256(root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the imitate package source (every .py and schema file, by relative path)."""
    return files_sha256(sorted(p for p in root.rglob("*") if p.suffix in {".py", ".yaml"} and p.is_file()), root)


def git_state(root: Path = PACKAGE_ROOT.parent) -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes (``None`` outside git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape the outputs (``None`` if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """CPU model, core count and, when torch sees one, the GPU model and CUDA version.

    The GPU is looked up only by stages that imported torch (the ones that can use it): importing it
    just to ask would add 1.5 s to every CPU stage.
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": None, "cuda": None}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class StageRun:
    """One run of one stage: its stable record and the run facts added as it goes."""

    stable: dict[str, Any]
    started: str = field(default_factory=_now)

    def parquet_metadata(self) -> dict[str, str]:
        """Key-value metadata that every Parquet output of this run carries."""
        return {PARQUET_KEY: canonical_json(self.stable)}

    def finish(self, outputs: Sequence[str | Path]) -> dict[str, Any]:
        """Write ``<output>.provenance.json`` beside each output; returns the full record."""
        record = {
            **self.stable,
            "run": {
                "started": self.started,
                "ended": _now(),
                "host": socket.gethostname(),
                "device": device_info(),
                "config_sha256": os.environ.get(CONFIG_ENV),
            },
            "outputs": [describe_input(p) for p in outputs],
        }
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        for out in outputs:
            sidecar = sidecar_path(out)
            sidecar.write_text(text)
        return record


def sidecar_path(output: str | Path) -> Path:
    """Where the provenance record of ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def stable_record(
    stage: str,
    *,
    inputs: Mapping[str, str | Path],
    settings: Mapping[str, Any],
    run_id: str | None = None,
    seeds: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The part of a record that only depends on code, settings and input bytes."""
    return {
        "stage": stage,
        "rule": os.environ.get(RULE_ENV),
        "wildcards": os.environ.get(WILDCARDS_ENV) or None,
        "experiment": os.environ.get(EXPERIMENT_ENV) or None,
        "run_id": run_id,
        "settings": dict(settings),
        "settings_sha256": config_hash(dict(settings)),
        "seeds": dict(seeds or {}),
        "code_sha256": code_sha256(),
        "git": git_state(),
        "versions": library_versions(),
        "inputs": {name: describe_input(path) for name, path in sorted(inputs.items())},
    }


@contextmanager
def stage_run(
    stage: str,
    *,
    inputs: Mapping[str, str | Path],
    settings: Mapping[str, Any],
    outputs: Sequence[str | Path],
    run_id: str | None = None,
    seeds: Mapping[str, int] | None = None,
) -> Iterator[StageRun]:
    """Record a stage: the block gets the :class:`StageRun` (whose ``parquet_metadata()`` its Parquet
    outputs carry), and sidecars are written for ``outputs`` when the block ends without error."""
    run = StageRun(stable_record(stage, inputs=inputs, settings=settings, run_id=run_id, seeds=seeds))
    yield run
    run.finish(outputs)
