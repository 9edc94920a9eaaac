"""On the tiny run, every long stage's log shows progress lines (done/total, percent) that end at 100 %.

The totals are checked against counts taken independently from the run's inputs and outputs: the patient
folders of the reports tree, the manifest's kept and missing images, the shards and their rejects, the
distinct texts of the studies, and the seeds and fractions of tests/data/tiny.yaml.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers.workflow import TINY

# "... INFO imitate.shards.writer: shards: 1,200/3,000 images (40 %), 85.3 images/s, ETA 0:00:21"
LINE = re.compile(
    r" INFO \S+: (?P<what>.+?): (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>[a-z ]+) \((?P<percent>\d+) %\)"
)
# shard rejects decided before any image is read (imitate.shards.plan): not part of the progress
PLANNING_REJECTS = {"key_invalid", "key_has_dot", "split_missing", "split_invalid", "duplicate_key", "file_missing"}
CONFIG = yaml.safe_load(TINY.read_text())


def progress(log: Path, what: str, unit: str) -> list[tuple[int, int, int]]:
    """``(done, total, percent)`` of each progress line of ``what`` in ``log``."""
    found = []
    for line in log.read_text().splitlines():
        match = LINE.search(line)
        if match and match["what"] == what:
            assert match["unit"] == unit, line
            found.append((int(match["done"].replace(",", "")), int(match["total"].replace(",", "")),
                          int(match["percent"])))
    return found


def check(log: Path, what: str, unit: str, total: int, runs: int = 1) -> None:
    """``what``'s lines in ``log`` are ``runs`` runs, each counting up from 0 to ``total`` with the right
    percent and ending at 100 %."""
    assert total > 0
    lines = progress(log, what, unit)
    starts = [i for i, (done, _, _) in enumerate(lines) if done == 0]
    assert len(starts) == runs and starts[0] == 0, f"{log}: {what!r} has {lines}"
    for start, end in itertools.pairwise([*starts, len(lines)]):
        run = lines[start:end]
        assert run[-1] == (total, total, 100), f"{log}: {run}"
        assert {t for _, t, _ in run} == {total}
        assert all(a[0] < b[0] for a, b in itertools.pairwise(run)), run
        assert all(p == 100 * d // t for d, t, p in run), run


def test_sections_count_the_patient_folders(tiny_run):
    reports = tiny_run / CONFIG["data"]["root"] / CONFIG["data"]["reports"]
    folders = [p for p in reports.glob("p[0-9][0-9]/p*") if p.is_dir()]
    assert folders
    check(tiny_run / "logs/sections.log", "sections", "patient folders", len(folders))


def test_manifest_logs_each_step_and_the_file_lookups(tiny_run):
    out = tiny_run / "results/manifest"
    missing = pq.read_table(out / "rejects.parquet").column("reason").to_pylist().count("image_file_missing")
    looked_up = pq.read_metadata(out / "images.parquet").num_rows + missing
    log = tiny_run / "logs/manifest.log"
    check(log, "manifest step 3/4, image files", "images", looked_up)
    assert [f"manifest step {k}/4" in log.read_text() for k in range(1, 5)] == [True] * 4


@pytest.mark.parametrize("stage", ["shards", *(f"datasets/{name}/shards" for name in CONFIG["datasets"])])
def test_shards_count_the_images_written_or_rejected(tiny_run, stage):
    out = tiny_run / "results" / stage
    rejects = pq.read_table(out / "rejects.parquet").column("reason").to_pylist()
    read = pq.read_metadata(out / "manifest.parquet").num_rows + sum(r not in PLANNING_REJECTS for r in rejects)
    check(tiny_run / "logs" / f"{stage}.log", "shards", "images", read)


def test_embed_counts_the_distinct_texts(tiny_run):
    studies = pq.read_table(tiny_run / "results/manifest/studies.parquet")
    texts = {" ".join(t.split()) for column in ("findings", "impression") for t in studies[column].to_pylist() if t}
    check(tiny_run / "logs/embed.log", "embed", "texts", len(texts - {""}))


def test_every_evaluation_counts_its_fits_or_models(tiny_run):
    seeds, fractions = CONFIG["evaluate"]["seeds"], CONFIG["evaluate"]["fractions"]
    methods = CONFIG["evaluate"]["methods"]
    logs = sorted((tiny_run / "logs/evaluate").glob("*/*/*.log"))
    tasks = {"linear_classification", "finetune_classification", "segmentation", "detection", "zero_shot", "retrieval"}
    assert {log.parts[-3] for log in logs} == tasks
    for log in logs:
        task, dataset, method = log.parts[-3], log.parts[-2], log.stem
        if task in ("zero_shot", "retrieval"):  # the pretrained model once, a random one per seed
            models = len(seeds) if methods[method]["weights"] == "random" else 1
            check(log, task, "models", models)
            check(log, "test image embeddings", "images", images(tiny_run, dataset, "test"), runs=models)
        else:
            check(log, task, "fits", len(seeds) * len(fractions))


def test_trained_heads_log_their_features_and_each_fit_by_seed_and_fraction(tiny_run):
    log = tiny_run / "logs/evaluate/linear_classification/rsna/imitate.log"
    for split in ("train", "validate", "test"):
        check(log, f"{split} features", "images", images(tiny_run, "rsna", split))
    seeds, epochs = CONFIG["evaluate"]["seeds"], CONFIG["evaluate"]["linear_classification"]["epochs"]
    for k, seed in enumerate(seeds, start=1):
        for fraction in CONFIG["evaluate"]["fractions"]:
            check(log, f"linear probe, seed {seed} ({k}/{len(seeds)}), fraction {fraction} %", "epochs", epochs)


def images(run: Path, dataset: str, split: str) -> int:
    """How many images of ``split`` the dataset's shards hold, by their manifest."""
    return pq.read_table(run / f"results/datasets/{dataset}/shards/manifest.parquet")["split"].to_pylist().count(split)
