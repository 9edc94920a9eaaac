"""Drawn findings are really there (and survive the downscale), reports match them, DICOM encodes them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from imitate.demo.anatomy import (
    DRAWN_LABELS,
    LOBES,
    Anatomy,
    Cardiomegaly,
    Consolidation,
    Devices,
    Effusion,
    Findings,
    Pneumothorax,
    sample_anatomy,
    sample_findings,
    sample_subject,
)
from imitate.demo.dicom import DicomHeader, Encoding, demo_uid, write_dicom
from imitate.demo.draw import Radiograph, draw
from imitate.demo.mimic import sample_states
from imitate.demo.phrases import Phrase
from imitate.demo.reports import CHEXPERT_LABELS, Exam, conclusion_labels, write_report

SEEDS = (0, 1, 2)


def _anatomy(seed: int, view: str = "PA", size: int = 256, **changes: float) -> Anatomy:
    rng = np.random.default_rng(seed)
    anatomy = sample_anatomy(sample_subject(rng), view, size, rng)
    return dataclasses.replace(anatomy, **changes)


def _downscaled(pixels: np.ndarray, mask: np.ndarray, short: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The image and the lesion mask after the demo's pretraining downscale."""
    h, w = pixels.shape
    size = (short, round(short * h / w)) if w < h else (round(short * w / h), short)
    image = np.asarray(Image.fromarray((pixels * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS))
    area = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    return image / 255.0, area


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        mask = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask


def _lesion(radiograph: Radiograph, kind: str) -> np.ndarray:
    (mask,) = [lesion.mask for lesion in radiograph.lesions if lesion.kind == kind]
    return mask


@pytest.mark.parametrize("seed", SEEDS)
def test_effusion_whitens_the_costophrenic_angle(seed: int) -> None:
    anatomy = _anatomy(seed)
    normal = draw(anatomy, Findings())
    effusion = draw(anatomy, Findings(effusion=Effusion(("left",), "moderate", 0.3, True)))
    mask = _lesion(effusion, "effusion_left")
    row, col = np.argwhere(mask).mean(axis=0)
    assert col > anatomy.width / 2 and row > anatomy.height / 3  # patient's left = image right, low in the chest
    assert effusion.pixels[mask].mean() > normal.pixels[mask].mean() + 0.15
    assert np.abs(effusion.pixels - normal.pixels)[~mask].mean() < 0.01
    small, area = _downscaled(effusion.pixels, mask)
    small_normal, _ = _downscaled(normal.pixels, mask)
    assert small[area].mean() > small_normal[area].mean() + 0.15


def _heart_ratio(radiograph: Radiograph, anatomy: Anatomy) -> float:
    """Cardiothoracic ratio measured on the image: the bright run around the midline, above the domes.

    The heart is widest at 0.8 of the lung height, where a high right dome may already begin; at 0.7
    its width is 0.96 of the widest.
    """
    row = round((anatomy.origin_y + 0.7 * anatomy.lung_height) / anatomy.spacing)
    profile = radiograph.pixels[row - 3 : row + 4].mean(axis=0)
    centre = round((anatomy.origin_x + anatomy.shift) / anatomy.spacing)
    lung = round((anatomy.origin_x - 0.75 * anatomy.half_width) / anatomy.spacing)
    threshold = (profile[centre] + profile[lung]) / 2
    left = right = centre
    while profile[left - 1] > threshold:
        left -= 1
    while profile[right + 1] > threshold:
        right += 1
    return (right - left + 1) * anatomy.spacing / (2 * anatomy.half_width)


@pytest.mark.parametrize("seed", SEEDS)
def test_cardiomegaly_widens_the_heart_shadow(seed: int) -> None:
    anatomy = _anatomy(seed, noise=0.0)
    normal = draw(anatomy, Findings())
    enlarged = draw(anatomy, Findings(cardiomegaly=Cardiomegaly("moderate", 0.62, True)))
    assert _heart_ratio(normal, anatomy) < 0.5
    assert _heart_ratio(enlarged, anatomy) == pytest.approx(0.62 * 0.96, abs=0.04)
    (heart,) = enlarged.lesions
    x0, _, x1, _ = heart.box
    assert (x1 - x0) * anatomy.spacing / (2 * anatomy.half_width) == pytest.approx(0.62, abs=0.02)
    small, area = _downscaled(enlarged.pixels, heart.mask)
    assert small[area].mean() > _downscaled(normal.pixels, heart.mask)[0][area].mean() + 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumothorax_is_a_dark_rim_without_lung_markings(seed: int) -> None:
    anatomy = _anatomy(seed, noise=0.0)
    plain = dataclasses.replace(anatomy, markings=0.0)  # the same film without vessel markings
    pneumothorax = Findings(pneumothorax=Pneumothorax("right", "moderate", 3.5, 0.8, True))
    normal, collapsed = draw(anatomy, Findings()), draw(anatomy, pneumothorax)
    rim = _lesion(collapsed, "pneumothorax")
    assert np.argwhere(rim)[:, 1].mean() < anatomy.width / 2  # patient's right = image left
    assert collapsed.pixels[rim].mean() < normal.pixels[rim].mean() - 0.05
    core = _eroded(rim, 2)
    assert core.sum() > 0.5 * rim.sum()
    residual = np.abs(collapsed.pixels - draw(plain, pneumothorax).pixels)[core]
    markings = np.abs(normal.pixels - draw(plain, Findings()).pixels)[core]
    assert residual.max() < 0.01 and markings.max() > 0.04
    assert residual.mean() < 0.05 * markings.mean()
    small, area = _downscaled(collapsed.pixels, rim)
    assert small[area].mean() < _downscaled(normal.pixels, rim)[0][area].mean() - 0.04


def test_consolidation_lies_in_its_lobe() -> None:
    anatomy = _anatomy(0)
    normal = draw(anatomy, Findings())
    centres = {}
    for lobe in LOBES:
        opacity = draw(anatomy, Findings(consolidation=Consolidation(lobe, 4.5, 0.9, True, 7, True)))
        mask = _lesion(opacity, "consolidation")
        assert opacity.pixels[mask].mean() > normal.pixels[mask].mean() + 0.15, lobe
        centres[lobe] = np.argwhere(mask).mean(axis=0) * anatomy.spacing - (anatomy.origin_y, anatomy.origin_x)
    for lobe, (_, x) in centres.items():
        assert (x < 0) == lobe.startswith("right"), lobe
    assert centres["right upper lobe"][0] < centres["right middle lobe"][0] < centres["right lower lobe"][0]
    assert centres["left upper lobe"][0] < centres["lingula"][0] < centres["left lower lobe"][0]


def test_uncertain_findings_are_drawn_fainter() -> None:
    anatomy = _anatomy(1)
    normal = draw(anatomy, Findings())
    gain = {}
    for certain in (True, False):
        findings = sample_findings({"Consolidation": certain, "Pleural Effusion": certain}, np.random.default_rng(5))
        image = draw(anatomy, findings)
        gain[certain] = {lesion.kind: (image.pixels - normal.pixels)[lesion.mask].sum() for lesion in image.lesions}
    for kind, total in gain[False].items():
        assert 0 < total < 0.6 * gain[True][kind], kind


def test_devices_are_drawn_where_the_report_puts_them() -> None:
    anatomy = _anatomy(2, noise=0.0)
    devices = Devices(et_tube=4.0, enteric_tube=True, central_line="left subclavian", pacemaker=True)
    normal = draw(anatomy, Findings())
    image = draw(anatomy, Findings(devices=devices))
    kinds = {lesion.kind: lesion for lesion in image.lesions}
    assert set(kinds) == {"et_tube", "enteric_tube", "central_line", "pacemaker"}
    for lesion in kinds.values():
        assert lesion.label == "Support Devices"
        assert (image.pixels - normal.pixels)[lesion.mask].mean() > 0.15, lesion.kind
    tip_row = kinds["et_tube"].box[3] - 1
    assert tip_row * anatomy.spacing - anatomy.origin_y == pytest.approx(anatomy.carina - 4.0, abs=0.6)


@pytest.mark.parametrize("view", ["PA", "AP", "LATERAL"])
def test_lesion_geometry_is_consistent(view: str) -> None:
    anatomy = _anatomy(3, view=view, size=160)
    findings = sample_findings(dict.fromkeys(DRAWN_LABELS, True), np.random.default_rng(9))
    image = draw(anatomy, findings)
    assert image.pixels.shape == (anatomy.height, anatomy.width) and image.pixels.dtype == np.float32
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert min(image.pixels.shape) == 160
    labels = set()
    for lesion in image.lesions:
        assert lesion.mask.shape == image.pixels.shape and lesion.mask.dtype == bool
        rows, cols = np.nonzero(lesion.mask)
        assert lesion.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        labels.add(lesion.label)
    expected = set(DRAWN_LABELS) - ({"Pneumothorax"} if view == "LATERAL" else set())
    assert labels == expected
    assert np.array_equal(draw(anatomy, findings).pixels, image.pixels)


def test_unknown_labels_cannot_be_drawn() -> None:
    with pytest.raises(ValueError, match="Fracture"):
        sample_findings({"Fracture": True}, np.random.default_rng(0))


def test_conclusion_labels_aggregate_like_chexpert() -> None:
    phrases = [Phrase("a", {"Edema": 0.0}), Phrase("b", {"Edema": -1.0}), Phrase("c", {"Pneumothorax": 0.0})]
    labels = conclusion_labels(phrases)
    assert labels["Edema"] == -1.0 and labels["Pneumothorax"] == 0.0 and labels["No Finding"] is None
    assert conclusion_labels([*phrases, Phrase("d", {"Edema": 1.0})])["Edema"] == 1.0
    devices_only = conclusion_labels([Phrase("tube", {"Support Devices": 1.0}), Phrase("e", {"Edema": 0.0})])
    assert devices_only["No Finding"] == 1.0 and devices_only["Support Devices"] == 1.0
    assert list(conclusion_labels([])) == list(CHEXPERT_LABELS)


def test_normal_studies_are_reported_normal_in_varied_words() -> None:
    exam = Exam("CHEST (PA AND LAT)", False, "M", False)
    impressions = set()
    for seed in range(60):
        report = write_report(Findings(), exam, np.random.default_rng(seed))
        assert report.has_findings == ("\n FINDINGS: \n" in report.text)
        assert report.labels["No Finding"] == 1.0
        assert all(report.labels[k] in (None, 0.0) for k in CHEXPERT_LABELS if k != "No Finding")
        impressions.add(report.text.split(" IMPRESSION: \n \n")[1].split("\n \n")[0])
    assert len(impressions) >= 5


@pytest.mark.parametrize("label", [label for label in DRAWN_LABELS if label != "Support Devices"])
def test_uncertain_findings_are_hedged(label: str) -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        report = write_report(sample_findings({label: False}, rng), Exam("CHEST (PORTABLE AP)", True, "F", True), rng)
        assert report.labels[label] == -1.0 and report.labels["No Finding"] is None
        impression = report.text.split(" IMPRESSION: \n \n")[1].lower()
        assert re.search(r"possibl|cannot be excluded|may |likely|could", impression), report.text


def test_label_prevalences_are_measurable_and_co_occur() -> None:
    rows = []
    for seed in range(500):
        rng = np.random.default_rng([11, seed])
        states, icu = sample_states(rng)
        report = write_report(sample_findings(states, rng), Exam("CHEST (PA AND LAT)", icu, "F", False), rng)
        rows.append({k: v == 1.0 for k, v in report.labels.items()})
    share = {k: np.mean([r[k] for r in rows]) for k in CHEXPERT_LABELS}
    for label in ("Cardiomegaly", "Consolidation", "Pleural Effusion", "Pneumothorax", "Support Devices"):
        assert 0.12 <= share[label] <= 0.38, (label, share[label])
    assert 0.2 <= share["No Finding"] <= 0.45

    def edema_given(cardiomegaly: bool) -> float:
        return float(np.mean([r["Edema"] for r in rows if r["Cardiomegaly"] == cardiomegaly]))

    assert edema_given(True) > 2 * edema_given(False)  # heart failure: cardiomegaly with edema


def _gradient() -> np.ndarray:
    return np.linspace(0.0, 1.0, 60 * 40, dtype=np.float32).reshape(60, 40)


@pytest.mark.parametrize("monochrome1", [False, True])
def test_dicom_round_trip_honours_bits_and_photometric(tmp_path: Path, monochrome1: bool) -> None:
    header = DicomHeader(
        "0a1b2c3d-00000000-11111111-22222222-33333333",
        10000032,
        50414267,
        "21800506",
        "080556.875000",
        "CHEST (PA AND LAT)",
        "PA",
        0.9,
        0,
    )
    encoding = Encoding("CR", 12, monochrome1, 0.1, 0.9, True)
    path = tmp_path / "x.dcm"
    write_dicom(path, _gradient(), header, encoding)
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.astype(np.int64)
    top = 2**12 - 1
    display = (top - stored if monochrome1 else stored) / top
    np.testing.assert_allclose(display, 0.1 + 0.8 * _gradient(), atol=1 / top)
    assert ds.PhotometricInterpretation == ("MONOCHROME1" if monochrome1 else "MONOCHROME2")
    assert (ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (12, 11, 0)
    low, high = float(ds.WindowCenter) - float(ds.WindowWidth) / 2, float(ds.WindowCenter) + float(ds.WindowWidth) / 2
    assert low == pytest.approx(stored.min(), abs=2) and high == pytest.approx(stored.max(), abs=2)
    assert ds.StudyTime == "080556.875000" and ds.PatientID == "10000032" and str(ds.PatientName) == "___"
    again = tmp_path / "y.dcm"
    write_dicom(again, _gradient(), header, encoding)
    assert again.read_bytes() == path.read_bytes()


def test_demo_uids_are_valid_and_deterministic() -> None:
    uid = demo_uid(3, "image", "abc")
    assert uid == demo_uid(3, "image", "abc") != demo_uid(4, "image", "abc")
    assert re.fullmatch(r"2\.25\.[1-9]\d*", uid) and len(uid) <= 64
