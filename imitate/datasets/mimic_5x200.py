"""MIMIC 5x200: GLoRIA's 5x200 definition applied to MIMIC-CXR, with reports, for zero-shot and retrieval.

CheXpert's reports are private, so GLoRIA's CheXpert 5x200 retrieval cannot be rerun (gloria #4, #16);
MIMIC-CXR has both labels and reports. A study is eligible for class ``c`` (one of the five competition
labels) when its CheXpert label ``c`` is 1.0 and the other 12 observations except No Finding are 0 or
blank, so an uncertain -1.0 anywhere disqualifies it (the rule of
:func:`imitate.datasets.chexpert_5x200.eligibility`, shared with CheXpert 5x200). Only studies of the
official ``test`` split are used, so no 5x200 image was seen in pretraining; one frontal image per
study (the first by dicom_id), and ``per_class`` studies per class drawn with ``seed`` from the
candidates sorted by study. Real MIMIC-CXR's test split (about 3,300 studies) holds far fewer than 200
qualifying studies for some classes (in CheXpert's train.csv 0.28 % of frontal images qualify for
Consolidation), so a class short of ``per_class`` is an error unless ``allow_fewer`` takes all of its
candidates (with a warning; the class sizes are in the records). The text of an image is its report's
Impression (GLoRIA used "Report Impression"), or its Findings when it has none.

Every metadata row ends in the records or in the rejects, with the first reason that applies:
``not_in_split`` (no split row / not the test split), ``view_not_frontal``, ``no_label_row``, the
eligibility reasons (``no_class_positive``, ``several_classes_positive``,
``other_observation_not_negative``), ``other_image_of_study``, ``not_selected``, ``report_missing``,
``no_report_text``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, records_table, rejects_table
from imitate.datasets.chexpert_5x200 import eligibility
from imitate.datasets.chexpert_csv import COMPETITION_LABELS, OBSERVATIONS
from imitate.demo.mimic import write_demo_mimic
from imitate.sections.parser import last_by_name, section_text

log = logging.getLogger(__name__)

CLASSES = COMPETITION_LABELS
# The columns read from the three CSVs (a join on dicom_id, then on study_id).
METADATA_COLUMNS: tuple[str, ...] = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS: tuple[str, ...] = ("dicom_id", "split")
LABEL_COLUMNS: tuple[str, ...] = ("study_id", *OBSERVATIONS)


class Adapter(DatasetAdapter):
    """MIMIC 5x200 from the MIMIC-CXR-JPG metadata, split and CheXpert CSVs and the report tree."""

    kind = "multiclass"
    defaults: Mapping[str, Any] = {
        "metadata": "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv.gz",
        "split": "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz",
        "labels": "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-chexpert.csv.gz",
        "reports": "mimic-cxr-reports/files",
        "image_trees": [
            {"dir": "mimic-cxr-jpg/2.0.0/files", "ext": ".jpg"},
            {"dir": "mimic-cxr/2.0.0/files", "ext": ".dcm"},
        ],
        "views": ["PA", "AP"],
        "from_split": "test",
        "per_class": 200,
        "allow_fewer": False,
        "seed": 0,
        "sections_mode": "reference",
    }

    def label_names(self) -> tuple[str, ...]:
        return CLASSES

    def raw_files(self) -> dict[str, str]:
        return {name: self.options[name] for name in ("metadata", "split", "labels")}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        return {"metadata": METADATA_COLUMNS, "split": SPLIT_COLUMNS, "labels": LABEL_COLUMNS}

    def image_dirs(self) -> tuple[str, ...]:
        """The trees of option ``image_trees`` that exist, or the first when none does.

        An image is read from the first tree that holds it, so one tree is enough (the DICOM tree is
        optional); MIMIC's own ``data.image_trees`` check warns about the others.
        """
        trees = [tree["dir"] for tree in self.options["image_trees"]]
        return tuple(tree for tree in trees if (self.root / tree).is_dir()) or tuple(trees[:1])

    def read(self) -> Parsed:
        images = self._images()
        by_study: dict[int, list[dict[str, Any]]] = {}
        rejects: list[dict[str, Any]] = []
        for image in images:
            if image["reason"] is None:
                by_study.setdefault(image["study_id"], []).append(image)
            else:
                rejects.append(_reject(self.options["metadata"], image, image["reason"]))
        candidates: dict[str, list[int]] = {c: [] for c in CLASSES}
        for study, rows in sorted(by_study.items()):
            rows.sort(key=lambda r: r["dicom_id"])
            for extra in rows[1:]:
                rejects.append(_reject(self.options["metadata"], extra, "other_image_of_study"))
            candidates[rows[0]["class"]].append(study)
        chosen = self._draw(candidates)
        records = []
        for study, rows in sorted(by_study.items()):
            image = rows[0]
            reason = None if study in chosen else "not_selected"
            text = None
            if reason is None:
                text, reason = self._report_text(image)
            if reason is not None:
                rejects.append(_reject(self.options["metadata"], image, reason))
                continue
            records.append({
                "key": image["dicom_id"], "patient_id": str(image["subject_id"]), "path": image["path"],
                "split": "test", "labels": [float(c == image["class"]) for c in CLASSES], "text": text,
            })
        return Parsed(records_table(records), rejects_table(rejects), len(images))

    def _images(self) -> list[dict[str, Any]]:
        """Every metadata row with its label class, image path and first reject reason (or None)."""
        con = duckdb.connect()
        opts, root = self.options, self.root
        observations = ", ".join(f'TRY_CAST(l."{name}" AS DOUBLE)' for name in OBSERVATIONS)
        rows = con.execute(
            f"""
            SELECT m.line, m.dicom_id, CAST(m.subject_id AS BIGINT), CAST(m.study_id AS BIGINT), m.ViewPosition,
                   s.split, l.study_id IS NOT NULL AS labelled, {observations}
            FROM (SELECT *, row_number() OVER () + 1 AS line
                  FROM read_csv(?, header=true, all_varchar=true)) m
            LEFT JOIN read_csv(?, header=true, all_varchar=true) s USING (dicom_id)
            LEFT JOIN read_csv(?, header=true, all_varchar=true) l
                   ON CAST(l.study_id AS BIGINT) = CAST(m.study_id AS BIGINT)
            ORDER BY m.line
            """,
            [str(root / opts["metadata"]), str(root / opts["split"]), str(root / opts["labels"])],
        ).fetchall()
        values = np.array([[np.nan if v is None else v for v in row[7:]] for row in rows], dtype=np.float64)
        classes, class_reasons = eligibility(values.reshape(len(rows), len(OBSERVATIONS)))
        images = []
        for (line, dicom, subject, study, view, split, labelled, *_), index, class_reason in zip(
            rows, classes, class_reasons, strict=True
        ):
            image = {"dicom_id": dicom, "subject_id": subject, "study_id": study, "line": line, "path": None,
                     "class": CLASSES[index]}
            if split != opts["from_split"]:
                image["reason"] = "not_in_split"
            elif view not in opts["views"]:
                image["reason"] = "view_not_frontal"
            elif not labelled:
                image["reason"] = "no_label_row"
            elif class_reason:
                image["reason"] = str(class_reason)
            else:
                image["reason"] = None
                image["path"] = self._image_path(subject, study, dicom)
            images.append(image)
        return images

    def _image_path(self, subject: int, study: int, dicom: str) -> str:
        """The first image tree holding the file (the first tree's path if none does: prepare rejects it)."""
        study_dir = f"p{str(subject)[:2]}/p{subject}/s{study}"
        paths = [f"{tree['dir']}/{study_dir}/{dicom}{tree['ext']}" for tree in self.options["image_trees"]]
        return next((p for p in paths if (self.root / p).is_file()), paths[0])

    def _draw(self, candidates: Mapping[str, Sequence[int]]) -> set[int]:
        per_class = int(self.options["per_class"])
        chosen: set[int] = set()
        for index, name in enumerate(CLASSES):
            pool = sorted(candidates[name])
            if len(pool) < per_class and not self.options["allow_fewer"]:
                raise ValueError(
                    f"dataset {self.name!r}: only {len(pool)} {self.options['from_split']} studies qualify for "
                    f"{name!r}, {per_class} asked (options.per_class; options.allow_fewer: true takes them all)"
                )
            take = min(per_class, len(pool))
            if take < per_class:
                log.warning("%s: %s has %d qualifying %s studies, fewer than per_class=%d: all taken",
                            self.name, name, take, self.options["from_split"], per_class)
            rng = np.random.default_rng([int(self.options["seed"]), index])
            chosen.update(pool[i] for i in sorted(rng.choice(len(pool), take, replace=False)))
        return chosen

    def _report_text(self, image: Mapping[str, Any]) -> tuple[str | None, str | None]:
        subject, study = image["subject_id"], image["study_id"]
        path = self.root / self.options["reports"] / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt"
        if not path.is_file():
            return None, "report_missing"
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        sections, names, _ = section_text(text, self.options["sections_mode"])
        found = last_by_name(sections, names, ("impression", "findings"))
        chosen = (found.get("impression") or found.get("findings") or "").strip()
        return (" ".join(chosen.split()), None) if chosen else (None, "no_report_text")

    def write_demo(self, spec: DemoSpec) -> None:
        """A small MIMIC-CXR demo tree, mostly test split (the pipeline's demo shares its own instead)."""
        write_demo_mimic(self.root, n_studies=spec.n_images, seed=spec.seed, image_size=spec.image_size,
                         dicom_fraction=0.1, split_fractions={"train": 0.2, "validate": 0.1, "test": 0.7},
                         overwrite=True)


def _reject(source: str, image: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {"source": source, "line": image["line"], "key": image["dicom_id"], "reason": reason,
            "detail": f"study {image['study_id']}"}
