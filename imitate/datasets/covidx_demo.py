"""A synthetic COVIDx copy in the real format: two list files and a mix of PNG and JPEG films.

Exactly ``spec.n_images`` images, about 15 % on the test list (patients of their own). Patients are
COVID-19 (30 % of patients: bilateral disease, drawn as consolidation with edema; sources sirm, cohen, ricord),
normal (35 %: nothing drawn) or pneumonia (35 %: one lobar consolidation), both from rsna. Ids and
file names imitate each source: sirm ``COVID 12`` / ``COVID(12).png`` (an id with a space; the first
patient is always one), cohen numeric ids and dotted journal-figure ``.jpg`` names, ricord
``MIDRC-RICORD-1C-...png``, rsna UUIDs. The lists use the labels and field count the adapter's
options ask for. The plan comes from ``film_rng(seed, 0)``, image ``i`` from ``film_rng(seed, 1, i)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imitate.datasets.base import DemoSpec
from imitate.demo.film import draw_film, film_rng, to_uint8

TEST_SHARE = 0.15
JPEG_QUALITY = 95
_CLASSES = ("COVID-19", "normal", "pneumonia")
_CLASS_SHARES = (0.3, 0.35, 0.35)
_STATES: dict[str, dict[str, bool]] = {
    "COVID-19": {"Consolidation": True, "Edema": True},
    "normal": {},
    "pneumonia": {"Consolidation": True},
}
_IMAGES_PER_PATIENT = {"rsna": (1,), "sirm": (1,), "cohen": (1, 2, 3), "ricord": (1, 2)}


@dataclass(frozen=True)
class _Image:
    patient_id: str
    filename: str
    label: str
    source: str
    view: str

    def line(self, fields: int, binary: bool) -> str:
        label = ("positive" if self.label == "COVID-19" else "negative") if binary else self.label
        return " ".join([self.patient_id, self.filename, label, self.source][:fields])


def write_covidx_demo(root: Path, options: Mapping[str, Any], spec: DemoSpec) -> None:
    """Write the demo under ``root`` as ``options`` (the COVIDx adapter's) describe it."""
    if spec.n_images < 2:
        raise ValueError(f"the COVIDx demo needs at least 2 images (train and test), got {spec.n_images}")
    n_test = max(1, round(TEST_SHARE * spec.n_images))
    plan = film_rng(spec.seed, 0)
    train, next_patient = _images(plan, spec.n_images - n_test, first_patient=0)
    test, _ = _images(plan, n_test, first_patient=next_patient)
    fields, binary = int(options["fields"]), bool(options["binary"])
    index = 0
    for role, images in (("train", train), ("test", test)):
        folder = Path(root) / options[f"{role}_dir"]
        folder.mkdir(parents=True, exist_ok=True)
        for image in images:
            film = draw_film(_STATES[image.label], image.view, spec.image_size, film_rng(spec.seed, 1, index))
            is_png = image.filename.endswith(".png")
            Image.fromarray(to_uint8(film.pixels)).save(
                folder / image.filename, "PNG" if is_png else "JPEG", **({} if is_png else {"quality": JPEG_QUALITY})
            )
            index += 1
        text = "".join(image.line(fields, binary) + "\n" for image in images)
        (Path(root) / options[f"{role}_list"]).write_text(text, encoding="utf-8")


def _images(rng: np.random.Generator, target: int, *, first_patient: int) -> tuple[list[_Image], int]:
    """Patients numbered from ``first_patient`` and their images until ``target`` images; the next number."""
    images: list[_Image] = []
    number = first_patient
    while len(images) < target:
        label = "COVID-19" if number == 0 else str(rng.choice(_CLASSES, p=_CLASS_SHARES))
        source = "sirm" if number == 0 else _source(label, rng)
        count = int(rng.choice(_IMAGES_PER_PATIENT[source]))
        patient_id, names = _names(source, number, count, rng)
        view = "AP" if rng.random() < 0.5 else "PA"
        images += [_Image(patient_id, name, label, source, view) for name in names]
        number += 1
    return images[:target], number


def _source(label: str, rng: np.random.Generator) -> str:
    return str(rng.choice(["sirm", "cohen", "ricord"])) if label == "COVID-19" else "rsna"


def _names(source: str, number: int, count: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A patient id and ``count`` image file names in the style of ``source``."""
    if source == "sirm":
        return f"COVID {number + 1}", [f"COVID({number + 1}).png"]
    if source == "rsna":
        digits = "".join(f"{int(v):04x}" for v in rng.integers(0, 2**16, size=8))
        uuid = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
        return uuid, [f"{uuid}.png"]
    if source == "cohen":
        return str(number + 1), [f"1-s2.0-S0140{number:06d}-fx{k}_lrg.jpg" for k in range(1, count + 1)]
    series = int(rng.integers(10_000, 100_000))
    return f"419{number:04d}", [f"MIDRC-RICORD-1C-419{number:04d}-{series:06d}-{k}-0.png" for k in range(count)]
