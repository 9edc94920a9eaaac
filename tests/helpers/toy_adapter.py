"""A toy dataset adapter: the README's "Adding a dataset" example, used by the tests and the tiny workflow.

Raw format: ``labels.csv`` (``key,patient,label`` with label 0 or 1) and ``images/<key>.png``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PIL import Image

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, records_table, rejects_table
from imitate.demo.film import draw_film, film_rng, to_uint8


class Adapter(DatasetAdapter):
    """PNG films listed in labels.csv; the label says whether the film shows a pleural effusion."""

    kind = "binary"
    defaults: ClassVar[dict[str, Any]] = {"labels_file": "labels.csv"}
    split_draw: ClassVar[dict[str, float]] = {"validate": 0.25, "test": 0.25}

    def label_names(self) -> tuple[str, ...]:
        return ("Pleural Effusion",)

    def raw_files(self) -> dict[str, str]:
        return {"labels": self.options["labels_file"]}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        return {"labels": ("key", "patient", "label")}

    def image_dirs(self) -> tuple[str, ...]:
        return ("images",)

    def read(self) -> Parsed:
        source = self.options["labels_file"]
        rows, rejects = [], []
        lines = (self.root / source).read_text().splitlines()[1:]
        for number, line in enumerate(lines, start=2):
            key, patient, label = line.split(",")
            if label not in ("0", "1"):
                rejects.append({"source": source, "line": number, "key": key, "reason": "bad_label", "detail": label})
                continue
            rows.append({"key": key, "patient_id": patient, "path": f"images/{key}.png", "labels": [float(label)]})
        return Parsed(records_table(rows), rejects_table(rejects), len(lines))

    def write_demo(self, spec: DemoSpec) -> None:
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        lines = ["key,patient,label"]
        for i in range(spec.n_images):
            label = i % 2
            states = {"Pleural Effusion": True} if label else {}
            film = draw_film(states, "PA", spec.image_size, film_rng(spec.seed, i))
            Image.fromarray(to_uint8(film.pixels)).save(self.root / f"images/i{i:03d}.png")
            lines.append(f"i{i:03d},p{i // 2},{label}")
        lines.append("bad,p99,maybe")  # one malformed row: it must land in the rejects
        (self.root / self.options["labels_file"]).write_text("\n".join(lines) + "\n")


