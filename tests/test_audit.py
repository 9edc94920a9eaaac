"""``imitate audit`` on records written by real stage runs: a deleted output is reported, exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitate.cli import main

# the four outputs of `imitate dataset`, all described by one record written beside each of them
DATASET_OUTPUTS = ("records.parquet", "rejects.parquet", "subsets.parquet", "counts.json")


@pytest.fixture
def finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workdir where `imitate dataset-demo` then `imitate dataset` ran, with the workflow's relative paths."""
    monkeypatch.chdir(tmp_path)
    root, out = "results/demo_data/downstream/toy", "results/datasets/toy"
    adapter = ["--adapter", "tests.helpers.toy_adapter", "--root", root]
    assert main(["dataset-demo", "toy", *adapter, "--n-images", "8", "--image-size", "48"]) == 0
    assert main(["dataset", "toy", *adapter, "--seed", "0", "--out-dir", out]) == 0
    return tmp_path


def _findings(stdout: str) -> set[tuple[str, ...]]:
    return {tuple(line.split("\t")) for line in stdout.splitlines()}


def test_audit_reports_a_deleted_output_and_exits_1(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    records = Path("results/datasets/toy/records.parquet")
    sidecars = [Path(f"results/datasets/toy/{name}.provenance.json") for name in DATASET_OUTPUTS]
    # the record really lists the output, by the path the audit will report
    assert str(records) in [e["path"] for e in json.loads(sidecars[0].read_text())["outputs"]]
    capsys.readouterr()
    assert main(["audit", "results"]) == 0
    assert capsys.readouterr().out == ""  # nothing to report before the deletion

    records.unlink()
    status = main(["audit", "results"])
    captured = capsys.readouterr()
    assert status == 1
    # every record that lists the deleted file says so, once each, and nothing else is reported: the
    # other outputs, the raw labels.csv (the dataset's input) and the demo's own record are intact
    assert _findings(captured.out) == {
        ("output_missing", str(records), "", f"(record {sidecar})") for sidecar in sidecars
    }
    assert captured.err.splitlines()[-1] == "4 mismatch(es): output_missing: the artifact a record describes is gone"
