"""Write a drawn radiograph as a MIMIC-CXR-like DICOM file.

Uncompressed explicit VR little endian, 16 bits allocated with 12-16 stored, MONOCHROME2 for most
files and MONOCHROME1 (inverted stored values) for some. The stored values use only part of the
range, as raw detector data does; files with a VOI window carry the range that displays the image as
drawn. Every UID is derived from the seed and the identifiers, and no date or time comes from the
clock, so the bytes are reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

_SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
}
_ORIENTATION = {"PA": ["L", "F"], "AP": ["L", "F"], "LATERAL": ["P", "F"]}


def demo_uid(seed: int, *parts: object) -> str:
    """A deterministic UID under the UUID-derived root ``2.25`` (at most 44 characters)."""
    digest = hashlib.sha256("/".join(["imitate-demo", str(seed), *map(str, parts)]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


@dataclass(frozen=True)
class Encoding:
    """How the pixel values are stored."""

    modality: str  # "CR" / "DX"
    bits_stored: int
    monochrome1: bool
    low: float  # fraction of the stored range where black (MONOCHROME2) falls
    high: float
    window: bool  # write WindowCenter / WindowWidth

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Encoding:
        """A MIMIC-like mix: mostly CR, 12-16 bits, a quarter MONOCHROME1, windows on about half."""
        return cls(
            modality="CR" if rng.random() < 0.7 else "DX",
            bits_stored=int(rng.choice([12, 14, 15, 16], p=[0.35, 0.2, 0.2, 0.25])),
            monochrome1=bool(rng.random() < 0.25),
            low=float(rng.uniform(0.02, 0.15)),
            high=float(rng.uniform(0.75, 0.97)),
            window=bool(rng.random() < 0.5),
        )

    def stored(self, pixels: np.ndarray) -> np.ndarray:
        """Display values in [0, 1] (bright = dense) -> stored uint16."""
        top = (1 << self.bits_stored) - 1
        values = np.round((self.low + (self.high - self.low) * pixels) * top)
        if self.monochrome1:
            values = top - values
        return values.astype(np.uint16)


@dataclass(frozen=True)
class DicomHeader:
    """Identifiers and acquisition facts written into the header."""

    dicom_id: str
    subject_id: int
    study_id: int
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS.ffffff
    procedure: str
    view: str
    spacing_mm: float
    seed: int


def write_dicom(path: Path, pixels: np.ndarray, header: DicomHeader, encoding: Encoding) -> None:
    """Write ``pixels`` (float in [0, 1], MONOCHROME2 sense) to ``path``."""
    stored = encoding.stored(pixels)
    rows, columns = stored.shape
    sop_class = _SOP_CLASS[encoding.modality]
    sop_uid = demo_uid(header.seed, "image", header.dicom_id)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = demo_uid(0, "implementation")
    meta.ImplementationVersionName = "IMITATE_DEMO"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = header.study_time
    ds.AccessionNumber = ""
    ds.Modality = encoding.modality
    ds.Manufacturer = "IMITATE DEMO (synthetic)"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = header.procedure
    ds.PatientName = "___"
    ds.PatientID = str(header.subject_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = header.view
    ds.StudyInstanceUID = demo_uid(header.seed, "study", header.study_id)
    ds.SeriesInstanceUID = demo_uid(header.seed, "series", header.dicom_id)
    ds.StudyID = str(header.study_id)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = _ORIENTATION[header.view]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if encoding.monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    spacing = f"{header.spacing_mm:.6f}"
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = encoding.bits_stored
    ds.HighBit = encoding.bits_stored - 1
    ds.PixelRepresentation = 0
    if encoding.window:
        top = (1 << encoding.bits_stored) - 1
        middle = (encoding.low + encoding.high) / 2
        ds.WindowCenter = f"{(1 - middle if encoding.monochrome1 else middle) * top:.1f}"
        ds.WindowWidth = f"{(encoding.high - encoding.low) * top:.1f}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
