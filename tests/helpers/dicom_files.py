"""Small DICOM files for tests, written with pydicom in the formats the datasets use."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def dicom_dataset(arr: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12) -> Dataset:
    """An uncompressed DX image holding ``arr`` (HxW, HxWx3 or FxHxW)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DX_STORAGE
    ds.set_pixel_data(arr, photometric, bits_stored)
    return ds


def jpeg_baseline_dicom(arr: np.ndarray, quality: int = 95) -> Dataset:
    """A CR image stored as RSNA Pneumonia and SIIM-ACR store theirs: 8-bit MONOCHROME2, JPEG Baseline."""
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=quality)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["jpeg-baseline"])
    ds.Modality = "CR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path
