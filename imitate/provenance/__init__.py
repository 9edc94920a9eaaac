"""Provenance: records of what made every artifact, their lineage, audits and a queryable catalog."""

from imitate.provenance.lineage import lineage, read_record
from imitate.provenance.record import (
    CONFIG_ENV,
    PARQUET_KEY,
    SIDECAR_SUFFIX,
    StageRun,
    code_sha256,
    describe_input,
    directory_digest,
    file_sha256,
    sidecar_path,
    stable_record,
    stage_run,
)

__all__ = [
    "CONFIG_ENV",
    "PARQUET_KEY",
    "SIDECAR_SUFFIX",
    "StageRun",
    "code_sha256",
    "describe_input",
    "directory_digest",
    "file_sha256",
    "lineage",
    "read_record",
    "sidecar_path",
    "stable_record",
    "stage_run",
]
