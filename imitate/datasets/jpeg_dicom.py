"""Write a drawn film as RSNA Pneumonia and SIIM-ACR store theirs: an 8-bit JPEG Baseline DICOM.

Both Kaggle releases come from the same de-identification: Modality CR with ConversionType WSD (so a
Secondary Capture object), 8-bit MONOCHROME2, JPEG Baseline (``1.2.840.10008.1.2.4.50``), UIDs of the
form ``1.2.276.0.7230010.3.1.<kind>.8323329.<n>.<t>.<m>``, PatientID a UUID-like string.
:func:`imitate.demo.dicom.write_dicom` writes uncompressed 16-bit MIMIC-like files with numeric
patient ids and hashed UIDs, so these demo files are written here. Nothing comes from the clock (the
study date is fixed at 1901-01-01): the same pixels and header give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UID_ROOT = "1.2.276.0.7230010.3.1"
UID_STUDY, UID_SERIES, UID_INSTANCE = 2, 3, 4
JPEG_QUALITY = 95


def kaggle_uids(number: int, rng: np.random.Generator) -> tuple[str, str, str]:
    """Study, series and SOP instance UID of film ``number``, shaped like the RSNA/SIIM ones.

    They share the number and a time stamp that grows with it, as the real ones do; the serials are
    consecutive. Distinct numbers give distinct UIDs.
    """
    stamp = 1_517_875_153 + number // 290
    serial = int(rng.integers(100_000, 999_000))

    def uid(kind: int, offset: int) -> str:
        return f"{UID_ROOT}.{kind}.8323329.{number}.{stamp}.{serial + offset}"

    return uid(UID_STUDY, -1), uid(UID_SERIES, -2), uid(UID_INSTANCE, 0)


@dataclass(frozen=True)
class FilmHeader:
    """What the header says about one film (identifiers and the few acquisition facts the files keep)."""

    patient_id: str
    sex: str  # "M" / "F"
    age: int
    view: str  # "PA" / "AP"
    study_uid: str
    series_uid: str
    sop_uid: str
    spacing_mm: float


def write_jpeg_dicom(path: Path, pixels: np.ndarray, header: FilmHeader) -> None:
    """Write ``pixels`` (uint8, height x width, bright = dense) to ``path``, creating its folder."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = header.sop_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.ImplementationClassUID = f"{UID_ROOT}.0.1"
    meta.ImplementationVersionName = "IMITATE_DEMO"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = header.sop_uid
    ds.StudyDate = "19010101"
    ds.StudyTime = "000000.00"
    ds.AccessionNumber = ""
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = f"view: {header.view}"
    ds.PatientName = header.patient_id
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = header.sex
    ds.PatientAge = f"{header.age:03d}Y"  # the real files write a bare "38", which is not a valid AS
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = header.view
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [f"{header.spacing_mm:.3f}"] * 2
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
