"""Real DICOM files shipped by the ``pydicom-data`` package (import ``data_store``) and pydicom itself.

RG1 is a real computed radiography chest PA (1955 x 1841, MONOCHROME1, 15 bits stored) in three
encodings: uncompressed (UNCR), JPEG 2000 lossless (J2KR) and JPEG 2000 lossy (J2KI).
"""

from __future__ import annotations

import math
from pathlib import Path

import data_store
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from imitate.images.pixels import ImageError, read_image

DATA = Path(data_store.__file__).parent / "data"


def rg1(encoding: str) -> np.ndarray:
    return read_image(DATA / f"RG1_{encoding}.dcm").array


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_jpeg2000_lossless_gives_the_uncompressed_pixels() -> None:
    np.testing.assert_array_equal(rg1("J2KR"), rg1("UNCR"))


def test_jpeg2000_lossy_is_close_to_the_uncompressed_pixels() -> None:
    # measured 51.5 dB, mean absolute error 0.43 grey levels
    assert psnr(rg1("J2KI"), rg1("UNCR")) > 45


def test_monochrome1_chest_shows_dense_structures_bright() -> None:
    image = read_image(DATA / "RG1_UNCR.dcm")
    assert (image.orig_height, image.orig_width) == (1955, 1841)
    assert image.pixel_spacing is None  # the file's ImagerPixelSpacing is 0\0, which counts as absent
    height, width = image.array.shape
    band = image.array[int(0.3 * height) : int(0.55 * height)]  # mid-thorax, above the diaphragm

    def column_mean(lo: float, hi: float) -> float:
        return float(band[:, int(lo * width) : int(hi * width)].mean())

    spine_and_mediastinum = column_mean(0.46, 0.54)
    lungs = (column_mean(0.2, 0.32), column_mean(0.68, 0.8))
    assert all(spine_and_mediastinum > lung + 40 for lung in lungs), (spine_and_mediastinum, lungs)


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless (pylibjpeg-libjpeg)
        ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE lossless
        ("693_J2KR.dcm", "693_UNCR.dcm"),  # JPEG 2000 lossless, signed CT
    ],
)
def test_lossless_transfer_syntaxes_match_their_uncompressed_twin(compressed: str, uncompressed: str) -> None:
    np.testing.assert_array_equal(
        read_image(get_testdata_file(compressed)).array, read_image(get_testdata_file(uncompressed)).array
    )


@pytest.mark.parametrize(
    ("name", "shape"), [("JPEG-LL.dcm", (1024, 256)), ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024))]
)
def test_jpeg_lossless_decodes(name: str, shape: tuple[int, int]) -> None:
    # JPEG lossless (process 14) has no decoder in Pillow: this needs the pylibjpeg-libjpeg plugin
    image = read_image(get_testdata_file(name)).array
    assert image.shape == shape and image.min() == 0 and image.max() == 255


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("SC_rgb.dcm", "dicom_rgb"),
        ("SC_rgb_jpeg_dcmtk.dcm", "dicom_rgb"),
        ("emri_small.dcm", "dicom_multiframe"),
        ("OBXXXX1A.dcm", "dicom_photometric"),  # PALETTE COLOR ultrasound
        ("rtplan.dcm", "dicom_no_pixel_data"),
        ("JPEG-lossy.dcm", "dicom_decode_failed"),  # a known-corrupt JPEG extended stream
    ],
)
def test_real_files_that_are_not_one_grayscale_frame_are_rejected(name: str, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        read_image(get_testdata_file(name))
    assert info.value.reason == reason
