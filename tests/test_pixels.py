"""imitate.images: DICOM grayscale pipeline, raster decoding, rejects, anti-aliased resizing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from imitate.images.crop import crop_nonzero, nonzero_box
from imitate.images.pixels import ImageError, read_image
from imitate.images.resize import resize_image
from tests.helpers.dicom_files import dicom_dataset, jpeg_baseline_dicom, save

MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"


def ramp(height: int = 64, width: int = 80, top: int = 4095) -> np.ndarray:
    """A left-to-right ramp from 0 to ``top`` (uint16)."""
    row = np.rint(np.linspace(0, top, width)).astype(np.uint16)
    return np.tile(row, (height, 1))


def test_monochrome2_ramp_spans_full_range_and_keeps_shape(tmp_path: Path) -> None:
    ds = dicom_dataset(ramp())
    ds.PixelSpacing = [0.2, 0.25]
    pixels = read_image(save(ds, tmp_path / "a.dcm"))
    assert pixels.array.dtype == np.uint8 and pixels.array.shape == (64, 80)
    assert (pixels.orig_height, pixels.orig_width) == (64, 80)
    assert pixels.array[0, 0] == 0 and pixels.array[0, -1] == 255
    assert (np.diff(pixels.array[0].astype(int)) >= 0).all()
    assert pixels.pixel_spacing == (0.2, 0.25)


def test_monochrome1_is_inverted_so_air_is_dark(tmp_path: Path) -> None:
    # In MONOCHROME1 the lowest value is displayed white: air is stored high, bone low.
    arr = np.full((64, 64), 100, dtype=np.uint16)
    arr[:, :32] = 4000  # air
    mono1 = read_image(save(dicom_dataset(arr, "MONOCHROME1"), tmp_path / "m1.dcm")).array
    mono2 = read_image(save(dicom_dataset(arr, "MONOCHROME2"), tmp_path / "m2.dcm")).array
    assert (mono1[:, :32] == 0).all() and (mono1[:, 32:] == 255).all()
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_window_center_width_clips_outside_the_window(tmp_path: Path) -> None:
    ds = dicom_dataset(ramp(width=4096))
    ds.WindowCenter, ds.WindowWidth = 1000, 500
    out = read_image(save(ds, tmp_path / "w.dcm")).array[0]
    assert (out[:740] == 0).all() and (out[1260:] == 255).all()
    assert abs(int(out[1000]) - 128) <= 1


def test_rescale_slope_intercept_is_applied_before_the_window(tmp_path: Path) -> None:
    # Stored 0..1000 -> rescaled -1000..1000; the window (center 0, width 1000) is in rescaled units.
    ds = dicom_dataset(ramp(width=1001, top=1000))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.WindowCenter, ds.WindowWidth = 0, 1000
    out = read_image(save(ds, tmp_path / "r.dcm")).array[0]
    assert out[240] == 0 and out[760] == 255
    assert abs(int(out[500]) - 128) <= 1


def test_voi_lut_sequence_is_applied_and_scaled_by_its_entries(tmp_path: Path) -> None:
    ds = dicom_dataset(ramp(width=4096))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "US", np.minimum(np.arange(4096) * 2, 4095).tolist())
    ds.VOILUTSequence = [item]
    out = read_image(save(ds, tmp_path / "lut.dcm")).array[0]
    assert out[0] == 0 and (out[2048:] == 255).all()
    assert abs(int(out[1024]) - 128) <= 1


def test_bits_stored_12_and_16_give_the_same_image_and_high_bits_are_ignored(tmp_path: Path) -> None:
    base = ramp()
    out12 = read_image(save(dicom_dataset(base, bits_stored=12), tmp_path / "b12.dcm")).array
    out16 = read_image(save(dicom_dataset(base * 16, bits_stored=16), tmp_path / "b16.dcm")).array
    np.testing.assert_array_equal(out12, out16)
    noisy = dicom_dataset(base, bits_stored=12)
    noisy.PixelData = (base | 0xF000).astype("<u2").tobytes()  # junk above BitsStored (e.g. overlays)
    np.testing.assert_array_equal(read_image(save(noisy, tmp_path / "noisy.dcm")).array, out12)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: dicom_dataset(np.zeros((8, 8, 3), np.uint8), "RGB", 8), "dicom_rgb"),
        (lambda: dicom_dataset(np.zeros((2, 8, 8), np.uint16)), "dicom_multiframe"),
    ],
    ids=["rgb", "multiframe"],
)
def test_unsupported_dicoms_are_rejected(tmp_path: Path, make, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        read_image(save(make(), tmp_path / "x.dcm"))
    assert info.value.reason == reason


def test_dicom_without_pixel_data_is_rejected(tmp_path: Path) -> None:
    ds = dicom_dataset(ramp())
    del ds.PixelData
    with pytest.raises(ImageError, match="dicom_no_pixel_data"):
        read_image(save(ds, tmp_path / "nopix.dcm"))


def test_transfer_syntax_without_decoder_is_rejected(tmp_path: Path) -> None:
    ds = dicom_dataset(ramp(8, 8))
    ds.file_meta.TransferSyntaxUID = MPEG2_MAIN_PROFILE  # a valid syntax that pydicom has no decoder for
    ds.PixelData = encapsulate([b"\xff\x0a not really mpeg-2"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(ImageError) as info:
        read_image(save(ds, tmp_path / "jls.dcm"))
    assert info.value.reason == "unsupported_transfer_syntax"


def test_truncated_dicom_is_rejected(tmp_path: Path) -> None:
    data = save(dicom_dataset(ramp()), tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 100])
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "cut.dcm")
    assert info.value.reason == "dicom_decode_failed"


def test_non_dicom_with_dcm_suffix_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "fake.dcm"
    path.write_text("this is a report, not an image\n")
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert info.value.reason == "dicom_invalid"


def test_rasters_decode_to_grayscale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (70, 90), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").array, gray)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.jpg", quality=95)
    rgb = read_image(tmp_path / "rgb.jpg")
    assert rgb.array.shape == (70, 90) and rgb.pixel_spacing is None
    assert np.abs(rgb.array.astype(int) - gray).mean() < 8


def test_16_bit_png_is_scaled_by_its_range(tmp_path: Path) -> None:
    values = np.tile(np.linspace(1000, 3000, 64).astype(np.uint16), (32, 1))
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")
    out = read_image(tmp_path / "deep.png").array
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out[0, -1] == 255


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (96, 96), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "cut.jpg")
    assert info.value.reason == "image_corrupt"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty_file"), (b"FINDINGS: no acute process.\n", "not_an_image")],
    ids=["zero-byte", "text"],
)
def test_bad_raster_files_are_rejected(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert info.value.reason == reason


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file_missing"):
        read_image(tmp_path / "absent.png")


def test_image_error_survives_pickling() -> None:
    # Worker processes send rejects back to the parent.
    error = pickle.loads(pickle.dumps(ImageError(Path("a/b.dcm"), "dicom_rgb", "SamplesPerPixel=3")))
    assert (error.path, error.reason, error.detail) == (Path("a/b.dcm"), "dicom_rgb", "SamplesPerPixel=3")


@pytest.mark.parametrize(("shape", "expected"), [((64, 96), (32, 48)), ((96, 64), (48, 32)), ((50, 50), (32, 32))])
def test_resize_shorter_keeps_aspect(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resize_image(np.zeros(shape, np.uint8), 32, "shorter_side").shape == expected


def test_resize_shorter_is_anti_aliased() -> None:
    # A one-pixel checkerboard shrunk 4x must average to mid-grey, not alias to black or white.
    checker = (np.indices((64, 96)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = resize_image(checker, 16, "shorter_side")
    assert small.shape == (16, 24)
    assert np.abs(small[2:-2, 2:-2].astype(int) - 128).max() <= 3


def test_resize_shorter_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        resize_image(np.zeros((8, 8), np.float32), 4, "shorter_side")


def _reference(ds: Dataset, ends: tuple[float, float] | None = None) -> np.ndarray:
    """pydicom's Modality LUT then VOI LUT on every pixel, then ``ends`` (default: the image's own value
    range) mapped linearly onto 0..255, clipped and rounded."""
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    low, high = (values.min(), values.max()) if ends is None else ends
    return np.rint(np.clip((values - low) * 255 / (high - low), 0, 255)).astype(np.uint8)


def _mlut_item(values: np.ndarray) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(values), 0, 16]
    item.ModalityLUTType = "US"
    item.add_new("LUTData", "US", values.tolist())
    return item


@pytest.mark.parametrize(
    ("header", "ends"),
    [
        ({}, None),
        ({"RescaleSlope": -1.5, "RescaleIntercept": 7000}, None),
        # the window (25..375) lies inside the rescaled values (-250..675): both ends are reached
        ({"RescaleSlope": 0.25, "RescaleIntercept": -300, "WindowCenter": 200, "WindowWidth": 350}, None),
        # a sigmoid never reaches its output range, 0 .. 2**BitsStored - 1 in pydicom: those ends become 0 and 255
        ({"WindowCenter": [900, 1500], "WindowWidth": [400, 900], "VOILUTFunction": "SIGMOID"}, (0, 2**12 - 1)),
        ({"ModalityLUTSequence": [_mlut_item((np.sin(np.arange(4096) / 300) * 3000 + 3000).astype(np.uint16))]}, None),
    ],
    ids=["range", "negative-rescale", "rescale-window", "sigmoid", "non-monotonic-mlut"],
)
def test_lookup_table_equals_pydicom_per_pixel(header: dict, ends: tuple[int, int] | None, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(200, 3900, (48, 40), dtype=np.uint16)
    ds = dicom_dataset(stored)
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    np.testing.assert_array_equal(read_image(save(ds, tmp_path / "t.dcm")).array, _reference(ds, ends))


def test_a_modality_lut_is_scaled_by_the_values_the_image_holds(tmp_path: Path) -> None:
    # stored 1000 and 3000 only; the LUT is the identity but for a spike at 2000, which no pixel holds
    stored = np.full((8, 8), 1000, np.uint16)
    stored[:, 4:] = 3000
    lut = np.arange(4096, dtype=np.uint16)
    lut[2000] = 60000
    ds = dicom_dataset(stored)
    ds.ModalityLUTSequence = [_mlut_item(lut)]
    out = read_image(save(ds, tmp_path / "m.dcm")).array
    np.testing.assert_array_equal(out, _reference(ds))
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_signed_stored_values_use_the_table_too(tmp_path: Path) -> None:
    stored = np.random.default_rng(4).integers(-2048, 2047, (40, 48), dtype=np.int16)
    ds = dicom_dataset(stored)
    ds.WindowCenter, ds.WindowWidth = -100, 1500
    out = read_image(save(ds, tmp_path / "s.dcm")).array
    np.testing.assert_array_equal(out, _reference(ds))  # the window (-850..650) lies inside the values
    assert out.min() == 0 and out.max() == 255


def test_jpeg_baseline_dicom_decodes_like_rsna_and_siim(tmp_path: Path) -> None:
    source = np.tile(np.linspace(20, 230, 96).astype(np.uint8), (80, 1))
    pixels = read_image(save(jpeg_baseline_dicom(source), tmp_path / "rsna.dcm"))
    assert pixels.array.shape == (80, 96)
    # 8-bit data without a window is scaled by its own range, as any stored values are
    expected = (source.astype(float) - source.min()) * 255 / (source.max() - source.min())
    assert np.abs(pixels.array.astype(float) - expected).mean() < 2


def test_nonzero_box_and_crop_stretch_without_wrapping() -> None:
    image = np.zeros((40, 50), np.uint8)
    image[5:30, 10:45] = 60
    image[20, 20] = 200  # the brightest pixel: the official code's x256 stretch wraps it to 0
    assert nonzero_box(image) == (10, 5, 45, 30)
    crop, box = crop_nonzero(image)
    assert box == (10, 5, 45, 30) and crop.shape == (25, 35)
    assert crop.min() == 0 and crop.max() == 255 and crop[15, 10] == 255
    assert nonzero_box(np.zeros((4, 4), np.uint8)) is None
    whole, box = crop_nonzero(np.zeros((4, 6), np.uint8))
    assert box == (0, 0, 6, 4) and whole.shape == (4, 6)


def test_large_jpeg_is_decoded_at_reduced_scale_only_down_to_the_size_asked(tmp_path: Path) -> None:
    smooth = np.asarray(
        Image.fromarray(np.random.default_rng(5).integers(0, 256, (30, 25), np.uint8)).resize(
            (1000, 1200), Image.Resampling.BICUBIC
        )
    )
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    full = read_image(tmp_path / "big.jpg")
    reduced = read_image(tmp_path / "big.jpg", min_shorter_side=240)
    assert full.array.shape == (1200, 1000)
    assert reduced.array.shape == (300, 250)  # 1/4 scale: 1/8 would make the shorter side 125 < 240
    assert (reduced.orig_height, reduced.orig_width) == (1200, 1000)  # the file's size, for mapping back
    difference = np.abs(
        resize_image(reduced.array, 80, "shorter_side").astype(int) - resize_image(full.array, 80, "shorter_side")
    )
    assert difference.mean() < 0.5 and difference.max() <= 4
    Image.fromarray(smooth).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", min_shorter_side=240).array.shape == (1200, 1000)  # PNG: whole
