"""Write a synthetic MIMIC-CXR(-JPG) tree: images, reports, metadata / split / CheXpert CSVs.

The layout and value conventions are those of the real release (docs/architecture.md, demo-data).
Randomness comes from ``seed`` only: a plan generator draws subjects, studies, ids, dates and the
split; every study then draws from its own child generator (``SeedSequence(seed, spawn_key=(1, i))``),
every subject's habitus from ``(2, j)``, so any number of worker processes writes the same bytes.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import logging
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imitate.demo.anatomy import sample_anatomy, sample_findings, sample_subject
from imitate.demo.dicom import DicomHeader, Encoding, write_dicom
from imitate.demo.draw import draw
from imitate.demo.reports import CHEXPERT_LABELS, Exam, write_report

log = logging.getLogger(__name__)

JPG_ROOT = "mimic-cxr-jpg/2.0.0"
DICOM_FILES = "mimic-cxr/2.0.0/files"
REPORT_FILES = "mimic-cxr-reports/files"
METADATA_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS: tuple[str, ...] = ("dicom_id", "study_id", "subject_id", "split")
CHEXPERT_COLUMNS: tuple[str, ...] = ("subject_id", "study_id", *CHEXPERT_LABELS)
SPLITS: tuple[str, ...] = ("train", "validate", "test")
JPEG_QUALITY = 95

_PA_LAT, _PORTABLE = "CHEST (PA AND LAT)", "CHEST (PORTABLE AP)"
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
_UNCERTAIN_RATE = 0.12  # share of findings reported (and drawn) as uncertain
_SINGLE_FINDING_RATE = 0.3  # share of outpatient studies with one competition finding alone
_SINGLE_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


@dataclass(frozen=True)
class DemoCounts:
    """What was written; ``split_studies`` maps each split to its number of studies."""

    n_subjects: int
    n_studies: int
    n_images: int
    n_jpg: int
    n_dicom: int
    n_reports: int
    split_studies: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready counts."""
        return asdict(self)


@dataclass(frozen=True)
class _Study:
    index: int
    subject_index: int
    subject_id: int
    study_id: int
    split: str
    date: int  # YYYYMMDD
    clock: tuple[int, int, int, int]  # hour, minute, second, millisecond
    has_prior: bool


@dataclass(frozen=True)
class _Settings:
    out: Path
    seed: int
    image_size: int
    dicom_fraction: float


@dataclass(frozen=True)
class _Written:
    metadata: list[tuple[object, ...]]
    split: list[tuple[object, ...]]
    chexpert: tuple[object, ...]
    n_jpg: int
    n_dicom: int


def write_demo_mimic(
    root: Path,
    *,
    n_studies: int,
    seed: int,
    image_size: int,
    dicom_fraction: float,
    split_fractions: Mapping[str, float],
    workers: int = 1,
    overwrite: bool = False,
) -> DemoCounts:
    """Write the demo tree under ``root`` (the ``physionet.org/files`` directory) and count it.

    ``root`` must be absent or empty unless ``overwrite``; the tree is built in ``<root>.partial`` and
    moved into place when complete, so a crash never leaves a half-written ``root``.
    """
    _validate(n_studies, image_size, dicom_fraction, split_fractions, workers)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root}: demo data directory is not empty (remove it or pass overwrite)")
        shutil.rmtree(root)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)

    studies = _plan(n_studies, seed, split_fractions)
    log.info(
        "drawing %d studies of %d subjects with %d worker(s)", len(studies), studies[-1].subject_index + 1, workers
    )
    try:
        written = list(_run(_Settings(partial, seed, image_size, dicom_fraction), studies, workers))
        metadata = _write_tables(partial / JPG_ROOT, written, seed)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if root.exists():
        root.rmdir()
    os.replace(partial, root)
    per_split = Counter(s.split for s in studies)
    counts = DemoCounts(
        n_subjects=len({s.subject_id for s in studies}),
        n_studies=len(studies),
        n_images=len(metadata),
        n_jpg=sum(w.n_jpg for w in written),
        n_dicom=sum(w.n_dicom for w in written),
        n_reports=len(written),
        split_studies={name: per_split.get(name, 0) for name in SPLITS},
    )
    log.info("demo data written to %s: %s", root, counts)
    return counts


def _write_tables(jpg_root: Path, written: Sequence[_Written], seed: int) -> list[tuple[object, ...]]:
    """The metadata, split and CheXpert CSVs, sorted by subject and study; returns the metadata rows."""
    metadata = sorted((row for w in written for row in w.metadata), key=lambda r: (r[1], r[2], r[0]))
    ids = [row[0] for row in metadata]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"seed {seed} drew a duplicate dicom_id; choose another seed")
    split_rows = sorted((row for w in written for row in w.split), key=lambda r: (r[2], r[1], r[0]))
    chexpert = sorted((w.chexpert for w in written), key=lambda r: (r[0], r[1]))
    _write_csv_gz(jpg_root / "mimic-cxr-2.0.0-metadata.csv.gz", METADATA_COLUMNS, metadata)
    _write_csv_gz(jpg_root / "mimic-cxr-2.0.0-split.csv.gz", SPLIT_COLUMNS, split_rows)
    _write_csv_gz(jpg_root / "mimic-cxr-2.0.0-chexpert.csv.gz", CHEXPERT_COLUMNS, chexpert)
    return metadata


def _validate(
    n_studies: int, image_size: int, dicom_fraction: float, split_fractions: Mapping[str, float], workers: int
) -> None:
    if n_studies < 1:
        raise ValueError(f"n_studies must be at least 1, got {n_studies}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if not 0.0 <= dicom_fraction <= 1.0:
        raise ValueError(f"dicom_fraction must be in [0, 1], got {dicom_fraction}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    unknown = set(split_fractions) - set(SPLITS)
    if unknown or any(v < 0 for v in split_fractions.values()) or abs(sum(split_fractions.values()) - 1) > 1e-6:
        raise ValueError(
            f"split_fractions must map a subset of {SPLITS} to shares summing to 1, got {dict(split_fractions)}"
        )


def _plan(n_studies: int, seed: int, split_fractions: Mapping[str, float]) -> list[_Study]:
    """Subjects (1-5 studies each), ids, dates and the subject-level split."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    per_subject: list[int] = []
    remaining = n_studies
    while remaining:
        per_subject.append(min(int(rng.choice([1, 2, 3, 4, 5], p=[0.6, 0.2, 0.1, 0.06, 0.04])), remaining))
        remaining -= per_subject[-1]
    subject_ids = np.sort(rng.choice(10_000_000, size=len(per_subject), replace=False) + 10_000_000)
    study_ids = rng.choice(10_000_000, size=n_studies, replace=False) + 50_000_000

    order = rng.permutation(len(per_subject))
    bounds = np.cumsum([split_fractions.get(name, 0.0) for name in SPLITS])
    split_of: dict[int, str] = {}
    done = 0
    for j in order:
        middle = (done + per_subject[j] / 2) / n_studies
        split_of[int(j)] = SPLITS[min(int(np.searchsorted(bounds, middle, side="right")), len(SPLITS) - 1)]
        done += per_subject[j]

    studies: list[_Study] = []
    for j, count in enumerate(per_subject):
        day = datetime.date(int(rng.integers(2110, 2200)), 1, 1) + datetime.timedelta(days=int(rng.integers(365)))
        for k in range(count):
            clock = (int(rng.integers(24)), int(rng.integers(60)), int(rng.integers(60)), int(rng.integers(1000)))
            index = len(studies)
            studies.append(
                _Study(index, j, int(subject_ids[j]), int(study_ids[index]), split_of[j], _date_int(day), clock, k > 0)
            )
            day += datetime.timedelta(days=int(rng.integers(1, 700)))
    return studies


def _date_int(day: datetime.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _run(settings: _Settings, studies: Sequence[_Study], workers: int) -> Iterator[_Written]:
    chunks = [(settings, studies[i : i + 16]) for i in range(0, len(studies), 16)]
    step = max(1, len(chunks) // 10)
    if workers == 1:
        results: Iterator[list[_Written]] = map(_write_chunk, chunks)
        yield from _logged(results, step, len(studies))
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from _logged(pool.imap(_write_chunk, chunks), step, len(studies))


def _logged(results: Iterator[list[_Written]], step: int, total: int) -> Iterator[_Written]:
    done = 0
    for i, chunk in enumerate(results, 1):
        done += len(chunk)
        if i % step == 0:
            log.info("%d / %d studies written", done, total)
        yield from chunk


def _write_chunk(job: tuple[_Settings, Sequence[_Study]]) -> list[_Written]:
    settings, studies = job
    return [_write_study(settings, study) for study in studies]


def sample_states(rng: np.random.Generator) -> tuple[dict[str, bool], bool]:
    """Which findings a study has (label -> certain?) and whether it is an inpatient/ICU film.

    Realistic co-occurrence: heart failure (cardiomegaly, edema, effusions), pneumonia with
    parapneumonic effusion, devices and pneumothorax in the ICU. A share of outpatient films shows one
    finding alone, enough for the 5x200 sets (one competition finding, nothing else) of a small demo.
    """
    icu = bool(rng.random() < 0.3)
    present: set[str] = set()
    if not icu and rng.random() < _SINGLE_FINDING_RATE:
        present.add(str(rng.choice(_SINGLE_FINDINGS)))
    elif rng.random() < (0.85 if icu else 0.6):
        cardio = rng.random() < 0.35
        edema = rng.random() < (0.4 if cardio else 0.1)
        consolidation = rng.random() < 0.33
        effusion = rng.random() < 0.15 + 0.25 * cardio + 0.2 * edema + 0.1 * consolidation
        flags = {
            "Cardiomegaly": cardio,
            "Edema": edema,
            "Consolidation": consolidation,
            "Pleural Effusion": effusion,
            "Pneumothorax": rng.random() < (0.35 if icu else 0.15),
            "Atelectasis": rng.random() < 0.18 + 0.15 * effusion,
        }
        present = {label for label, on in flags.items() if on}
        if not present:
            present.add(
                str(rng.choice(["Cardiomegaly", "Consolidation", "Pleural Effusion", "Pneumothorax", "Atelectasis"]))
            )
    if rng.random() < (0.75 if icu else 0.04):
        present.add("Support Devices")
    states = {label: bool(label == "Support Devices" or rng.random() >= _UNCERTAIN_RATE) for label in sorted(present)}
    return states, icu


def _sample_views(rng: np.random.Generator, icu: bool) -> tuple[str, tuple[str, ...]]:
    """Procedure name and the views of the study's images."""
    draw_ = rng.random()
    if icu:
        options = ((0.7, _PORTABLE, ("AP",)), (0.85, _PORTABLE, ("AP", "AP")), (1.0, _PA_LAT, ("AP", "LATERAL")))
    else:
        options = (
            (0.78, _PA_LAT, ("PA", "LATERAL")),
            (0.85, _PA_LAT, ("PA", "LATERAL", "PA")),
            (0.9, _PA_LAT, ("PA",)),
            (1.0, _PORTABLE, ("AP",)),
        )
    for bound, procedure, views in options:
        if draw_ < bound:
            return procedure, views
    raise AssertionError("unreachable: the last bound is 1.0")


def _orientation(view: str, rng: np.random.Generator) -> str:
    if view != "AP":
        return "Erect"
    return str(rng.choice(["Recumbent", "Erect", ""], p=[0.6, 0.15, 0.25]))


def _study_dir(top: Path, study: _Study) -> Path:
    subject = str(study.subject_id)
    return top / f"p{subject[:2]}" / f"p{subject}" / f"s{study.study_id}"


def _write_study(settings: _Settings, study: _Study) -> _Written:
    """Draw, describe and write one study; returns its CSV rows."""
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(1, study.index)))
    subject = sample_subject(
        np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(2, study.subject_index)))
    )
    states, icu = sample_states(rng)
    procedure, views = _sample_views(rng, icu)
    findings = sample_findings(states, rng)
    report = write_report(findings, Exam(procedure, procedure == _PORTABLE, subject.sex, study.has_prior), rng)
    report_path = _study_dir(settings.out / REPORT_FILES, study).with_suffix(".txt")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report.text, encoding="utf-8")

    metadata, split, n_dicom = [], [], 0
    for view in views:
        dicom_id = "-".join(f"{v:08x}" for v in rng.integers(0, 2**32, size=5, dtype=np.uint64))
        anatomy = sample_anatomy(subject, view, settings.image_size, rng)
        pixels = draw(anatomy, findings).pixels
        if rng.random() < settings.dicom_fraction:
            n_dicom += 1
            header = DicomHeader(
                dicom_id=dicom_id,
                subject_id=study.subject_id,
                study_id=study.study_id,
                study_date=str(study.date),
                study_time=_dicom_time(study.clock),
                procedure=procedure,
                view=view,
                spacing_mm=anatomy.spacing * 10,
                seed=settings.seed,
            )
            _write_dicom_image(settings, study, header, pixels, Encoding.sample(rng))
        else:
            path = _study_dir(settings.out / JPG_ROOT / "files", study) / f"{dicom_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path, "JPEG", quality=JPEG_QUALITY)
        ids = (dicom_id, study.subject_id, study.study_id)
        acquisition = (procedure, view, anatomy.height, anatomy.width, study.date, _csv_time(study.clock))
        metadata.append((*ids, *acquisition, procedure, _VIEW_MEANING[view], _orientation(view, rng)))
        split.append((dicom_id, study.study_id, study.subject_id, study.split))
    labels = tuple("" if report.labels[name] is None else f"{report.labels[name]:.1f}" for name in CHEXPERT_LABELS)
    return _Written(metadata, split, (study.subject_id, study.study_id, *labels), len(views) - n_dicom, n_dicom)


def _write_dicom_image(
    settings: _Settings, study: _Study, header: DicomHeader, pixels: np.ndarray, encoding: Encoding
) -> None:
    path = _study_dir(settings.out / DICOM_FILES, study) / f"{header.dicom_id}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, pixels, header, encoding)


def _dicom_time(clock: tuple[int, int, int, int]) -> str:
    """DICOM TM: ``HHMMSS.FFFFFF``."""
    hour, minute, second, milli = clock
    return f"{hour:02d}{minute:02d}{second:02d}.{milli:03d}000"


def _csv_time(clock: tuple[int, int, int, int]) -> str:
    """MIMIC's StudyTime: HHMMSS.fff read as a float, so without leading zeros (``80556.875``)."""
    hour, minute, second, milli = clock
    return str(float(f"{hour}{minute:02d}{second:02d}.{milli:03d}"))


def _write_csv_gz(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """CSV (``\\n`` line ends, minimal quoting) gzipped without a file name or timestamp in the header."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        packed.write(text.getvalue().encode("utf-8"))
