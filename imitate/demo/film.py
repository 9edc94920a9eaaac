"""One drawn chest film for the downstream demo datasets, from a seed and the findings it shows.

The downstream demo generators (:mod:`imitate.datasets`) write each dataset's raw format; the pixels
come from here, so every dataset's images carry the same drawn findings as the pretraining demo and a
pretrained encoder has something real to transfer.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from imitate.demo.anatomy import sample_anatomy, sample_findings, sample_subject
from imitate.demo.draw import Radiograph, draw
from imitate.demo.mimic import sample_states


def film_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator per (seed, key...), so films can be drawn in any order or process."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def random_states(rng: np.random.Generator) -> dict[str, bool]:
    """Findings with the pretraining demo's co-occurrence (label -> certain?); empty means normal."""
    return sample_states(rng)[0]


def draw_film(
    states: Mapping[str, bool], view: str, image_size: int, rng: np.random.Generator
) -> Radiograph:
    """Draw one film showing ``states`` (label -> certain?) in ``view`` with shorter side ``image_size``."""
    subject = sample_subject(rng)
    findings = sample_findings(dict(states), rng)
    return draw(sample_anatomy(subject, view, image_size, rng), findings)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Drawn [0, 1] float pixels as 8-bit grey levels."""
    return np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
