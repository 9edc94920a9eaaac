"""No patient data reaches a shard: DICOM header fields and PNG/JPEG text metadata, MIMIC and downstream.

``tests/test_shards.py`` checks a DICOM's name, birth date and PatientID on ``write_shards``. Here the
inputs carry more of what real files hold: PatientName, PatientID, AccessionNumber, InstitutionName,
ReferringPhysicianName, birth date and the Study/Series/Acquisition/Content dates in DICOMs (uncompressed
and JPEG Baseline), PNG tEXt/zTXt/iTXt/eXIf chunks and JPEG comments and EXIF, all PHI-looking. They go
through the ``imitate shards`` command (the pretraining path) and through ``imitate dataset-demo`` /
``dataset`` / ``shards`` for RSNA and SIIM (the downstream path), and every byte of every file those
stages write is searched for each string, and for each date in the ways dates are written.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from imitate.cli import main
from tests.helpers.dicom_files import dicom_dataset, jpeg_baseline_dicom, save

FAMILY, GIVEN = "Qorvathine", "Eulalindra"
PATIENT_ID = "MRN40417723"
ACCESSION = "ACC58820931"
INSTITUTION = "Saint Brumwicke Infirmary"
PHYSICIAN = "Dravenholt"
# (DICOM keyword, YYYYMMDD): every date differs, so each one is searched for on its own
DATES = {
    "StudyDate": "19531108",
    "SeriesDate": "19620317",
    "AcquisitionDate": "19740925",
    "ContentDate": "19811230",
    "PatientBirthDate": "19270604",
}
STRINGS = (FAMILY, GIVEN, PATIENT_ID, ACCESSION, INSTITUTION, "Brumwicke", PHYSICIAN)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# the chunks Pillow writes for a plain grayscale image: no text, no EXIF, no time stamp
IMAGE_CHUNKS = {b"IHDR", b"IDAT", b"IEND"}


def imitate(*args: object) -> None:
    """Run one ``imitate`` stage in this process; it must succeed."""
    assert main([str(a) for a in args]) == 0


def date_forms(yyyymmdd: str) -> list[str]:
    """The ways a date is commonly written: DICOM DA, ISO, EXIF, US and European orders."""
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:]
    return [
        f"{y}{m}{d}",
        f"{y}-{m}-{d}",
        f"{y}:{m}:{d}",
        f"{y}/{m}/{d}",
        f"{m}/{d}/{y}",
        f"{d}/{m}/{y}",
        f"{d}.{m}.{y}",
        f"{m}-{d}-{y}",
        f"{d}-{m}-{y}",
        f"{y}.{m}.{d}",
    ]


NEEDLES = [s.encode() for s in STRINGS] + [f.encode() for date in DATES.values() for f in date_forms(date)]


def add_phi(ds: pydicom.Dataset, patient_id: str | None = PATIENT_ID) -> pydicom.Dataset:
    """The identifying header fields a hospital export carries (``patient_id`` None: keep the file's)."""
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.AccessionNumber = ACCESSION
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = f"{PHYSICIAN}^Oriel"
    for keyword, value in DATES.items():
        setattr(ds, keyword, value)
    return ds


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG, read by its layout (length, type, body, CRC)."""
    assert data[:8] == PNG_SIGNATURE
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x013B] = f"{FAMILY} {GIVEN}"  # Artist
    exif[0x0132] = f"{date_forms(DATES['StudyDate'])[2]} 09:15:00"  # DateTime, EXIF's 1953:11:08
    exif[0x010E] = f"{INSTITUTION} {ACCESSION}"  # ImageDescription
    return exif.tobytes()


def text_png(path: Path, pixels: np.ndarray) -> None:
    """A PNG carrying PHI in a tEXt, a zTXt (compressed) and an iTXt chunk, and in EXIF (eXIf)."""
    info = PngInfo()
    info.add_text("Author", f"{FAMILY}^{GIVEN}")
    info.add_text(
        "Comment", f"MRN {PATIENT_ID} acc {ACCESSION} dob {date_forms(DATES['PatientBirthDate'])[1]}", zip=True
    )
    info.add_itxt(
        "Description",
        f"{INSTITUTION}, seen {date_forms(DATES['SeriesDate'])[4]} by {PHYSICIAN}",
        lang="en",
        tkey="Beschreibung",
    )
    info.add_text("Creation Time", date_forms(DATES["ContentDate"])[5])
    Image.fromarray(pixels).save(path, pnginfo=info, exif=exif_bytes())


def assert_clean(directory: Path, allowed: dict[str, set[bytes]] | None = None) -> int:
    """No PHI string or date form in any byte of any file under ``directory``, and no text chunk in any
    shard image; ``allowed`` names files that may hold some needles. Returns the number of files read."""
    allowed = allowed or {}
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        data = path.read_bytes()
        found = [n.decode() for n in NEEDLES if n in data and n not in allowed.get(path.name, set())]
        assert not found, f"{path} holds {found}"
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    body = tar.extractfile(member).read()
                    assert not [n for n in NEEDLES if n in body], member.name
                    if member.name.endswith(".png"):
                        types = {kind for kind, _ in png_chunks(body)}
                        assert types <= IMAGE_CHUNKS, f"{path}:{member.name} has chunks {sorted(types)}"
    return len(files)


def test_mimic_shards_carry_no_dicom_header_or_image_text_phi(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    rng = np.random.default_rng(7)
    # MIMIC's DICOMs: uncompressed, 12 bits stored, MONOCHROME1; RSNA/SIIM-style JPEG Baseline
    save(
        add_phi(dicom_dataset(rng.integers(0, 4096, (80, 64), dtype=np.uint16), "MONOCHROME1", 12)), root / "mono1.dcm"
    )
    save(add_phi(jpeg_baseline_dicom(rng.integers(0, 256, (64, 72), dtype=np.uint8))), root / "jpeg.dcm")
    text_png(root / "text8.png", rng.integers(0, 256, (70, 60), dtype=np.uint8))
    text_png(root / "text16.png", rng.integers(0, 65536, (60, 66), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 256, (66, 80), dtype=np.uint8)).save(
        root / "exif.jpg", quality=90, exif=exif_bytes(), comment=f"{FAMILY}^{GIVEN} {PATIENT_ID}".encode()
    )
    names = ["mono1.dcm", "jpeg.dcm", "text8.png", "text16.png", "exif.jpg"]

    # the inputs really carry every string: in the raw bytes, or (zTXt) in the decompressed chunk
    for name in ("mono1.dcm", "jpeg.dcm"):
        data = (root / name).read_bytes()
        assert all(s.encode() in data for s in STRINGS) and all(d.encode() in data for d in DATES.values())
    chunks = png_chunks((root / "text8.png").read_bytes())
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} <= {kind for kind, _ in chunks}
    ztxt = next(body for kind, body in chunks if kind == b"zTXt")
    assert PATIENT_ID.encode() in zlib.decompress(ztxt.split(b"\0", 1)[1][1:])
    assert f"{FAMILY}^{GIVEN}".encode() in (root / "exif.jpg").read_bytes()

    rows = [
        {
            "key": f"img{i}",
            "path": name,
            "split": "train" if i < 3 else "test",
            "dicom_id": f"img{i}",
            "study_id": 50000000 + i,
            "subject_id": 10000000 + i,
            "view": "PA",
        }
        for i, name in enumerate(names)
    ]
    manifest = tmp_path / "images.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    out = tmp_path / "shards"
    imitate("shards", manifest, "--root", root, "--out", out, "--image-size", 32, "--samples-per-shard", 2)

    kept = pq.read_table(out / "manifest.parquet")["key"].to_pylist()
    assert sorted(kept) == [r["key"] for r in rows]  # every image made it: none escaped the search as a reject
    assert assert_clean(out) == 3 + 2 + 2  # train x2 + test tars, both manifests and both provenance records


@pytest.mark.parametrize("dataset", ["rsna", "siim"])
def test_downstream_dicom_shards_and_tables_carry_no_header_phi(dataset: str, tmp_path: Path) -> None:
    """The demo's real-format DICOMs, given a hospital export's header fields, through dataset and shards.

    SIIM's patient is the DICOM PatientID, so it is set to MRN-like values: they become the records'
    ``patient_id`` (the dataset's own id, needed for the split by patient) and must go no further.
    """
    root, out = tmp_path / "raw", tmp_path / "results"
    imitate("dataset-demo", dataset, "--adapter", dataset, "--root", root, "--n-images", 10, "--image-size", 48)
    dicoms = sorted(root.rglob("*.dcm"))
    assert len(dicoms) == 10
    mrns: dict[str, str] = {}  # SIIM: the demo's patient -> its MRN-like PatientID (images keep their patient)
    for path in dicoms:
        ds = pydicom.dcmread(path)
        mrn = None
        if dataset == "siim":
            mrn = mrns.setdefault(str(ds.PatientID), f"{PATIENT_ID}{len(mrns):02d}")
        add_phi(ds, mrn).save_as(path, enforce_file_format=True)
        data = path.read_bytes()
        assert FAMILY.encode() in data and INSTITUTION.encode() in data and DATES["AcquisitionDate"].encode() in data

    imitate("dataset", dataset, "--adapter", dataset, "--root", root, "--seed", 0, "--out-dir", out)
    records = pq.read_table(out / "records.parquet")
    assert records.num_rows == 10  # every DICOM was read: a rejected one would escape the shard search
    imitate("shards", out / "records.parquet", "--root", root, "--out", out / "shards", "--image-size", 32)
    assert pq.read_table(out / "shards" / "manifest.parquet").num_rows == 10

    allowed = {}
    if dataset == "siim":
        assert sorted(set(records["patient_id"].to_pylist())) == sorted(mrns.values())
        allowed["records.parquet"] = {PATIENT_ID.encode()}  # the patient_id column, by design
    assert assert_clean(out, allowed) >= 8 + 5  # 4 tables + 4 records; shards, 2 manifests, 2 records
    # and the records hold the PatientID in patient_id only: no other column has it
    for column in records.column_names:
        if column != "patient_id":
            assert PATIENT_ID not in str(records[column].to_pylist()), column
