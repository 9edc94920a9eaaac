"""Object-CXR (JF Healthcare): foreign object yes/no per frontal film, with a box per annotated object.

Raw files: ``train.csv`` and ``dev.csv`` (header ``image_name,annotation``), images ``train/<image_name>``
and ``dev/<image_name>`` (JPG; ``00001.jpg``... in the real set: 8,000 train, 1,000 dev; the 1,000 test
images are hidden). ``annotation`` is empty (no foreign object) or objects joined by ``;``, each
``T x1 y1 x2 y2 ...``: numbers separated by spaces, in pixels of the original image, origin top-left.
``T`` is 0 for a rectangle and 1 for an ellipse (both given by two corners of their bounding box) and 2
for a polygon (``x1 y1 ... xn yn``, at least three points).

One record per CSV row (the unit of ``n_input``; blank lines hold no row), keyed by the image name's
stem. The dataset has no patient ids, so ``patient_id`` is the key: one image per patient as far as the
splits can tell. Labels: 1.0 when the row has at least one object. Boxes ``[x0, y0, x1, y1]``: a
rectangle's or ellipse's two corners sorted, a polygon's tight bounding box. MGCA instead turns a polygon
into a square around its polylabel centre; the polygon's own extent is what was marked, so it is kept.

Splits: the dev rows are the test split (the official test set is hidden; MGCA does the same); train
rows are split later by patient (one image each), 20 % validation: the paper's Table II lists 6,400 /
1,600 / 1,000 for the 8,000 train and 1,000 dev images (MGCA's own code holds out 10 %, 90/10).

Reject reasons (source the CSV file, its 1-based line): ``malformed_row`` (not two fields),
``invalid_image_name`` (empty; a stem a key or file name cannot hold; not .jpg/.jpeg/.png),
``duplicate_key`` (a stem already named by an earlier row of either file), ``malformed_annotation``
(the detail says which object and why).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imitate.datasets.base import (
    DatasetAdapter,
    DemoSpec,
    Parsed,
    raw_path,
    records_table,
    rejects_table,
    write_csv,
)
from imitate.demo.film import draw_film, film_rng, random_states, to_uint8
from imitate.demo.objects import SHAPES, ForeignObject, draw_objects, sample_objects

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("Foreign object",)
HEADER: tuple[str, ...] = ("image_name", "annotation")
KEY = re.compile(r"^[A-Za-z0-9_-]+$")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
OBJECT_SEPARATOR = ";"
# The CSV files in reading order, with the split their rows carry (None: drawn later).
_ROLES: tuple[tuple[str, str | None], ...] = (("train", None), ("dev", "test"))
DEV_SHARE = 0.2  # of the demo's films
JPEG_QUALITY = 95


def annotation_boxes(annotation: str) -> list[list[float]]:
    """The ``[x0, y0, x1, y1]`` box of each object of an annotation (none if it is empty).

    Raises ValueError naming the object (1-based) and what is wrong with it.
    """
    text = annotation.strip()
    if not text:
        return []
    boxes = []
    for number, part in enumerate(text.split(OBJECT_SEPARATOR), start=1):
        try:
            boxes.append(_object_box(part))
        except ValueError as error:
            raise ValueError(f"object {number} {part.strip()[:40]!r}: {error}") from None
    return boxes


def _object_box(text: str) -> list[float]:
    """The box of one object ``T x1 y1 ...``; ValueError saying why it is not one."""
    tokens = text.split()
    if not tokens:
        raise ValueError("empty object")
    code, values = tokens[0], tokens[1:]
    if code not in {str(i) for i in range(len(SHAPES))}:
        raise ValueError(f"unknown type {code!r} (0 rectangle, 1 ellipse, 2 polygon)")
    shape = SHAPES[int(code)]
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ValueError("coordinates are not all numbers") from None
    if shape == "polygon" and (len(numbers) % 2 or len(numbers) < 6):
        raise ValueError(f"a polygon needs x y pairs of at least 3 points, got {len(numbers)} numbers")
    if shape != "polygon" and len(numbers) != 4:
        raise ValueError(f"a rectangle or ellipse needs 4 numbers (x1 y1 x2 y2), got {len(numbers)}")
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("a coordinate is not finite")
    if min(numbers) < 0:
        raise ValueError("a coordinate is negative")
    xs, ys = numbers[0::2], numbers[1::2]
    box = [min(xs), min(ys), max(xs), max(ys)]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"its box {box} has zero area")
    return box


def format_annotation(objects: Sequence[ForeignObject]) -> str:
    """The ``annotation`` field of ``objects``: ``T x1 y1 ...`` per object, joined by ``;``."""
    return OBJECT_SEPARATOR.join(
        " ".join([str(SHAPES.index(obj.shape)), *(str(v) for point in obj.points for v in point)]) for obj in objects
    )


def image_key(image_name: str) -> str | None:
    """The record key of an image name (its stem), or None if the name cannot give one."""
    suffix = Path(image_name).suffix
    stem = image_name[: -len(suffix)] if suffix else image_name
    if suffix.lower() not in IMAGE_SUFFIXES or not KEY.match(stem):
        return None
    return stem


class Adapter(DatasetAdapter):
    """Object-CXR from ``train.csv`` and ``dev.csv``; images are ``<train_images|dev_images>/<image_name>``."""

    kind = "binary"
    defaults: Mapping[str, Any] = {"train": "train.csv", "dev": "dev.csv", "train_images": "train",
                                   "dev_images": "dev"}
    split_draw: Mapping[str, float] = {"validate": 0.2}

    def label_names(self) -> tuple[str, ...]:
        return LABELS

    def raw_files(self) -> dict[str, str]:
        return {"train": self.options["train"], "dev": self.options["dev"]}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        return {role: HEADER for role, _ in _ROLES}

    def image_dirs(self) -> tuple[str, ...]:
        return tuple(self.options[f"{role}_images"] for role, _ in _ROLES)

    def read(self) -> Parsed:
        records: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        seen: dict[str, str] = {}  # key -> "file line N" of the row that first named it
        for role, split in _ROLES:
            source = self.options[role]
            for line, fields in _read_rows(raw_path(self, role), source):
                record, problem = self._record(fields, line, role, split, seen)
                if problem is None:
                    records.append(record)
                else:
                    reason, detail = problem
                    rejects.append({"source": source, "line": line, "key": record.get("key"), "reason": reason,
                                    "detail": detail})
        positives = sum(record["labels"][0] == 1.0 for record in records)
        log.info("%s, %s: %d rows: %d records (%d with foreign objects), %d rejected", self.options["train"],
                 self.options["dev"], len(records) + len(rejects), len(records), positives, len(rejects))
        return Parsed(records_table(records), rejects_table(rejects), len(records) + len(rejects))

    def _record(
        self, fields: Sequence[str], line: int, role: str, split: str | None, seen: dict[str, str]
    ) -> tuple[dict[str, Any], tuple[str, str] | None]:
        """The record of one row, or a partial one (its key, when known) and the (reason, detail) rejecting it."""
        name = fields[0].strip()
        key = image_key(name)
        partial = {"key": key}
        if len(fields) != len(HEADER):
            return partial, ("malformed_row", f"{len(fields)} fields")
        if key is None:
            return partial, ("invalid_image_name", f"{name!r}: not a stem of A-Z a-z 0-9 _ - and a suffix in "
                                                   f"{IMAGE_SUFFIXES}")
        if key in seen:
            return partial, ("duplicate_key", f"{seen[key]} names the same key")
        seen[key] = f"{self.options[role]} line {line}"
        try:
            boxes = annotation_boxes(fields[1])
        except ValueError as error:
            return partial, ("malformed_annotation", str(error))
        return {"key": key, "patient_id": key, "path": f"{self.options[f'{role}_images']}/{name}", "split": split,
                "labels": [float(bool(boxes))], "boxes": boxes}, None

    def write_demo(self, spec: DemoSpec) -> None:
        """Write ``train.csv``, ``dev.csv`` and one 8-bit grayscale JPG per film for ``spec.n_images`` films.

        The last 20 % of the films (at least one, if there are two) are dev, numbered on from train as in
        the real set. About half the films of each file (at least one) carry one to three foreign objects
        (:mod:`imitate.demo.objects`) whose drawn shapes are their annotation; no film shows support
        devices, which Object-CXR leaves unannotated. Films are mostly PA. The plan comes from
        ``film_rng(seed, 0)``, film ``i`` from ``film_rng(seed, 1, i)``.
        """
        if spec.n_images < 1 or spec.image_size < 32:
            raise ValueError(f"demo needs n_images >= 1 and image_size >= 32, got {spec}")
        n_dev = max(1, round(DEV_SHARE * spec.n_images)) if spec.n_images >= 2 else 0
        sizes = {"train": spec.n_images - n_dev, "dev": n_dev}
        plan = film_rng(spec.seed, 0)
        index = 0
        for role, _ in _ROLES:
            positives = set(_positives(sizes[role], plan).tolist())
            images = self.root / self.options[f"{role}_images"]
            images.mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(sizes[role]):
                name = f"{index + 1:05d}.jpg"
                rows.append((name, _write_film(images / name, spec, index, i in positives)))
                index += 1
            write_csv(raw_path(self, role), HEADER, rows)


def _read_rows(path: Path, source: str) -> list[tuple[int, list[str]]]:
    """The data rows of one CSV file with their 1-based line numbers, after checking its header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Object-CXR label file {source!r} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if tuple(header) != HEADER:
            raise ValueError(f"{path}: header {header} is not {list(HEADER)}")
        return [(reader.line_num, fields) for fields in reader if fields]  # blank lines hold no row


def _positives(n: int, rng: np.random.Generator) -> np.ndarray:
    """Which of ``n`` films carry objects: about half, at least one, and one without if there are two."""
    count = min(max(1, round(n / 2)), max(1, n - 1))
    return rng.permutation(n)[:count]


def _write_film(path: Path, spec: DemoSpec, index: int, positive: bool) -> str:
    """Draw film ``index`` (with foreign objects if ``positive``), write it as JPG; its annotation."""
    rng = film_rng(spec.seed, 1, index)
    states = {k: v for k, v in random_states(rng).items() if k != "Support Devices"}
    view = "PA" if rng.random() < 0.8 else "AP"
    pixels = draw_film(states, view, spec.image_size, rng).pixels
    objects = sample_objects(*pixels.shape, rng) if positive else []
    Image.fromarray(to_uint8(draw_objects(pixels, objects))).save(path, "JPEG", quality=JPEG_QUALITY)
    return format_annotation(objects)
