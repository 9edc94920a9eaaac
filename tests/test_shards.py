"""imitate.shards: deterministic layout and bytes, rejects and accounting, atomicity, reading back."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from imitate.commands import shards as shards_command
from imitate.images import prepare
from imitate.shards import writer
from imitate.shards.reader import count_samples, iter_samples, shard_paths
from imitate.shards.writer import write_shards
from tests.helpers.dicom_files import dicom_dataset, save

SAMPLE_FIELDS = {
    "key",
    "dicom_id",
    "study_id",
    "subject_id",
    "view",
    "split",
    "width",
    "height",
    "orig_width",
    "orig_height",
    "crop_box",
    "pixel_spacing",
}
PHI = ("Qzxvmorrow", "Wbnmjane", "19121231", "PID998877")


def row(key: str, path: str, split: str = "train", study_id: int = 50000001) -> dict:
    return {
        "key": key,
        "dicom_id": key,
        "subject_id": 10000001,
        "study_id": study_id,
        "view": "PA",
        "split": split,
        "path": path,
    }


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, list[dict]]:
    """An image root with 7 train + 3 test PNGs (64-96 px) and one DICOM carrying patient data."""
    root = tmp_path / "root"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        shape = (72, 96) if i % 2 else (96, 64)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"img{i}.png")
        rows.append(row(f"k{9 - i:02d}", f"img{i}.png", "train" if i < 7 else "test", 50000000 + i))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.set_pixel_data(rng.integers(0, 4096, (80, 64), dtype=np.uint16), "MONOCHROME1", 12)
    ds.PatientName = f"{PHI[0]}^{PHI[1]}"
    ds.PatientBirthDate = PHI[2]
    ds.PatientID = PHI[3]
    ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.save_as(root / "a.dcm", enforce_file_format=True)
    rows.append(row("dcm0", "a.dcm", "train", 50000099))
    return root, rows


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_layout_per_split_and_samples_per_shard(images, tmp_path: Path) -> None:
    root, rows = images
    counts = write_shards(pa.Table.from_pylist(rows), root, tmp_path / "out", image_size=48, samples_per_shard=3)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "test-000000.tar",
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
    ]
    train_keys = sorted(r["key"] for r in rows if r["split"] == "train")
    shard_keys = [[n.split(".")[0] for n in tar_names(out / f"train-00000{i}.tar")][::2] for i in range(3)]
    assert shard_keys == [train_keys[0:3], train_keys[3:6], train_keys[6:]]
    assert counts.shards == 4 and counts.samples_by_split == {"test": 3, "train": 8}
    manifest = pq.read_table(out / "manifest.parquet")
    assert manifest.column_names == [f.name for f in writer.MANIFEST_SCHEMA]
    by_shard = {}
    for rec in manifest.to_pylist():
        by_shard.setdefault(rec["shard"], []).append(rec)
        assert rec["shard_sha256"] == hashlib.sha256((out / rec["shard"]).read_bytes()).hexdigest()
        assert min(rec["width"], rec["height"]) == 48
    assert [len(v) for _, v in sorted(by_shard.items())] == [3, 3, 3, 2]
    assert count_samples(out / "manifest.parquet", "train") == 8


def test_rerun_is_byte_identical_and_independent_of_workers(images, tmp_path: Path) -> None:
    root, rows = images
    table = pa.Table.from_pylist(rows)
    write_shards(table, root, tmp_path / "a", image_size=48, samples_per_shard=4)
    first = digests(tmp_path / "a")
    write_shards(table, root, tmp_path / "a", image_size=48, samples_per_shard=4)
    write_shards(
        table.take(list(range(len(rows)))[::-1]), root, tmp_path / "b", image_size=48, samples_per_shard=4, workers=2
    )
    assert digests(tmp_path / "a") == first
    assert digests(tmp_path / "b") == first
    with tarfile.open(tmp_path / "a" / "train-000000.tar") as tar:
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
                writer.TAR_MTIME,
                0,
                0,
                "",
                "",
                0o444,
            )


def write_bad_inputs(root: Path) -> list[tuple[dict, str]]:
    """One file or row per kind of bad input the issue lists, with the reason it must be rejected for."""
    noise = np.random.default_rng(1).integers(0, 256, (96, 96), dtype=np.uint8)
    Image.fromarray(noise).save(root / "full.jpg", quality=95)
    (root / "cut.jpg").write_bytes((root / "full.jpg").read_bytes()[:2000])
    (root / "zero.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("FINDINGS: no acute process.\n")
    no_pixels = dicom_dataset(np.zeros((8, 8), np.uint16))
    del no_pixels.PixelData
    save(no_pixels, root / "nopix.dcm")
    mpeg = dicom_dataset(np.zeros((8, 8), np.uint16))
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder
    mpeg.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really mpeg-2"])
    mpeg["PixelData"].VR = "OB"
    save(mpeg, root / "mpeg.dcm")
    save(dicom_dataset(np.zeros((8, 8, 3), np.uint8), "RGB", 8), root / "rgb.dcm")
    save(dicom_dataset(np.zeros((3, 8, 8), np.uint16)), root / "frames.dcm")
    return [
        (row("truncated", "cut.jpg"), "image_corrupt"),
        (row("zero", "zero.jpg"), "empty_file"),
        (row("text", "notes.jpg"), "not_an_image"),
        (row("nopix", "nopix.dcm"), "dicom_no_pixel_data"),
        (row("mpeg", "mpeg.dcm"), "unsupported_transfer_syntax"),
        (row("rgb", "rgb.dcm"), "dicom_rgb"),
        (row("frames", "frames.dcm"), "dicom_multiframe"),
        (row("gone", "missing/none.png"), "file_missing"),
        (row("dup", "img1.png"), "duplicate_key"),
        (row("dup", "img2.png"), "duplicate_key"),  # both rows: which one the key names is unknown
        (row("a.b", "img0.png"), "key_has_dot"),
        ({**row("nosplit", "img3.png"), "split": None}, "split_missing"),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_every_bad_input_is_rejected_with_its_reason(images, tmp_path: Path, workers: int) -> None:
    root, rows = images
    bad = write_bad_inputs(root)
    table = pa.Table.from_pylist(rows + [r for r, _ in bad])
    counts = write_shards(table, root, tmp_path / "out", image_size=48, samples_per_shard=4, workers=workers)
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert sorted((r["key"], r["reason"]) for r in rejects) == sorted((r["key"], reason) for r, reason in bad)
    assert counts.images_in == len(rows) + len(bad) == counts.samples + counts.rejected
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet")
    assert sorted(manifest["key"].to_pylist()) == sorted(r["key"] for r in rows)
    assert counts.rejects_by_reason["duplicate_key"] == 2


def test_no_patient_data_reaches_any_output(images, tmp_path: Path) -> None:
    root, rows = images
    write_shards(pa.Table.from_pylist(rows), root, tmp_path / "out", image_size=48)
    assert PHI[0].encode() in (root / "a.dcm").read_bytes()  # the source really has it
    for path in (tmp_path / "out").iterdir():
        data = path.read_bytes()
        assert not any(value.encode() in data for value in PHI), path
    samples = {s["key"]: s for s in iter_samples(shard_paths(tmp_path / "out" / "manifest.parquet", "train"))}
    assert all(set(s["meta"]) == SAMPLE_FIELDS for s in samples.values())
    dicom = samples["dcm0"]["meta"]
    assert (dicom["orig_width"], dicom["orig_height"], dicom["width"], dicom["height"]) == (64, 80, 48, 48)
    assert dicom["pixel_spacing"] == [0.139, 0.139] and dicom["crop_box"] == [0, 0, 64, 80]
    manifest = {r["key"]: r for r in pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert (manifest["dcm0"]["pixel_spacing_row"], manifest["dcm0"]["pixel_spacing_col"]) == (0.139, 0.139)
    assert manifest["k00"]["pixel_spacing_row"] is None  # a PNG states no spacing


def test_crash_leaves_no_partial_shard(images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, rows = images
    real_read = prepare.read_image

    def failing_read(path, min_shorter_side=None):
        if Path(path).name == "img0.png":  # key k09: the last train shard
            raise RuntimeError("disk vanished")
        return real_read(path, min_shorter_side)

    monkeypatch.setattr(prepare, "read_image", failing_read)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk vanished"):
        write_shards(pa.Table.from_pylist(rows), root, out, image_size=48, samples_per_shard=3)
    assert sorted(p.name for p in out.iterdir()) == ["test-000000.tar", "train-000000.tar", "train-000001.tar"]
    with tarfile.open(out / "train-000001.tar") as tar:  # the published shards are complete
        assert len(tar.getnames()) == 6


def test_stale_shards_are_removed(images, tmp_path: Path) -> None:
    root, rows = images
    out = tmp_path / "out"
    write_shards(pa.Table.from_pylist(rows), root, out, image_size=48, samples_per_shard=2)
    assert (out / "train-000003.tar").exists()
    (out / "README.txt").write_text("keep me")
    counts = write_shards(pa.Table.from_pylist(rows), root, out, image_size=48, samples_per_shard=5)
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-000000.tar", "train-000000.tar", "train-000001.tar"]
    assert counts.stale_removed == 3 and (out / "README.txt").exists()


def test_manifest_without_split_and_jpg_format(images, tmp_path: Path) -> None:
    root, rows = images
    table = pa.Table.from_pylist([{"key": r["key"], "path": r["path"]} for r in rows])
    write_shards(table, root, tmp_path / "out", image_size=40, image_format="jpg")
    assert [p.name for p in (tmp_path / "out").glob("*.tar")] == ["all-000000.tar"]
    samples = list(iter_samples(shard_paths(tmp_path / "out" / "manifest.parquet", "all")))
    assert [s["key"] for s in samples] == sorted(r["key"] for r in rows)
    assert samples[0]["meta"]["study_id"] is None and samples[0]["meta"]["split"] == "all"


def test_iter_samples_returns_the_resized_pixels_in_file_order(images, tmp_path: Path) -> None:
    root, rows = images
    write_shards(pa.Table.from_pylist(rows), root, tmp_path / "out", image_size=48, samples_per_shard=3)
    paths = shard_paths(tmp_path / "out" / "manifest.parquet", "test")
    samples = list(iter_samples(paths))
    assert [s["key"] for s in samples] == ["k00", "k01", "k02"]
    source = np.array(Image.open(root / "img9.png"))  # key k00
    square = np.array(Image.fromarray(source).resize((48, 48), Image.Resampling.LANCZOS))  # the default
    np.testing.assert_array_equal(samples[0]["image"], square)
    with pytest.raises(ValueError, match="no shards for split 'validate'"):
        shard_paths(tmp_path / "out" / "manifest.parquet", "validate")


def test_command_reads_csv_manifest(images, tmp_path: Path) -> None:
    root, rows = images
    csv = tmp_path / "images.csv"
    lines = ["key,path,split,study_id"] + [f"{r['key']},{r['path']},{r['split']},{r['study_id']}" for r in rows]
    csv.write_text("\n".join(lines) + "\n")
    parser = argparse.ArgumentParser()
    shards_command.add_arguments(parser)
    args = parser.parse_args([str(csv), "--root", str(root), "--out", str(tmp_path / "out"), "--image-size", "32"])
    assert shards_command.main(args) == 0
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet")
    assert manifest.num_rows == len(rows)
    assert manifest.schema.field("study_id").type == pa.int64()
    assert {b"imitate.shards", b"imitate.provenance"} <= set(manifest.schema.metadata)
    assert json.loads(manifest.schema.metadata[b"imitate.shards"])["image_size"] == 32


def test_reader_names_the_shard_of_a_malformed_sample(tmp_path: Path) -> None:
    shard = tmp_path / "train-000000.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("lonely.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    with pytest.raises(ValueError, match=r"train-000000\.tar: sample 'lonely' needs one .png/.jpg and one .json"):
        list(iter_samples([shard]))


def test_crop_nonzero_keeps_the_box_to_map_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    image = np.zeros((120, 100), np.uint8)  # black borders around a 60 x 80 content area
    image[30:90, 10:90] = np.tile(np.linspace(40, 200, 80).astype(np.uint8), (60, 1))
    Image.fromarray(image).save(root / "bordered.png")
    table = pa.Table.from_pylist([row("b0", "bordered.png")])
    write_shards(table, root, tmp_path / "out", image_size=30, crop=True, resize="shorter_side")
    (sample,) = iter_samples(shard_paths(tmp_path / "out" / "manifest.parquet", "train"))
    assert sample["meta"]["crop_box"] == [10, 30, 90, 90]
    (record,) = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    assert (record["crop_x0"], record["crop_y0"], record["crop_x1"], record["crop_y1"]) == (10, 30, 90, 90)
    assert (record["orig_width"], record["orig_height"], record["width"], record["height"]) == (100, 120, 40, 30)
    # the crop's own size: no resize
    write_shards(table, root, tmp_path / "same", image_size=60, crop=True, resize="shorter_side")
    (sample,) = iter_samples(shard_paths(tmp_path / "same" / "manifest.parquet", "train"))
    assert sample["image"].shape == (60, 80) and sample["image"].min() == 0 and sample["image"].max() == 255


def test_killed_run_leaves_only_complete_shards_and_a_rerun_matches(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    small = np.random.default_rng(2).integers(0, 256, (40, 48), dtype=np.uint8)
    Image.fromarray(small).resize((1200, 1000), Image.Resampling.BICUBIC).save(root / "big.jpg", quality=90)
    csv = tmp_path / "images.csv"
    csv.write_text("key,path\n" + "".join(f"k{i:03d},big.jpg\n" for i in range(45)))
    command = [sys.executable, "-m", "imitate", "shards", str(csv), "--root", str(root), "--image-size", "32",
               "--samples-per-shard", "3"]
    subprocess.run([*command, "--out", str(tmp_path / "clean")], check=True, capture_output=True)
    clean = digests(tmp_path / "clean")
    out = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob("*-000002.tar")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.kill()
    process.wait()
    published = sorted(p.name for p in out.glob("*.tar"))
    assert 3 <= len(published) < 15, "the kill must land mid-run"
    assert not (out / "manifest.parquet").exists()  # nothing describes the interrupted run as complete
    assert {name: clean[name] for name in published} == {name: digests(out)[name] for name in published}
    subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
    data = {name: digest for name, digest in digests(out).items() if not name.endswith(".provenance.json")}
    assert data == {name: digest for name, digest in clean.items() if not name.endswith(".provenance.json")}
    assert len(data) == 15 + 2 and not list(out.glob(".*"))
