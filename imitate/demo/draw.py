"""Procedural chest radiographs: anatomy + findings -> pixels and the lesions' pixel geometry.

The image is a radiographic density map (soft tissue, minus the air of the lungs, plus bone, vessels
and devices) exposed with a tone curve and quantum noise. Findings act on the lung's aeration (fluid,
consolidation, collapse) or on its markings (pneumothorax), so they look like what they are: an
effusion whites out the costophrenic angle under a meniscus, a pneumothorax is a dark rim without
vessels behind a thin pleural line. Coordinates are in cm, x to the image right and y down, y = 0 at
the lung apices; on frontal views x = 0 is the thoracic midline and the patient's right is on the
image left; on laterals x = 0 is the anterior chest wall and the patient faces the image left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imitate.demo.anatomy import Anatomy, Findings
from imitate.demo.canvas import Canvas, Lesion
from imitate.demo.frontal import frontal_density
from imitate.demo.lateral import lateral_density


@dataclass(frozen=True)
class Radiograph:
    """A drawn image (float32 in [0, 1], bright = dense, as MONOCHROME2) and its lesions."""

    pixels: np.ndarray
    lesions: tuple[Lesion, ...]


def draw(anatomy: Anatomy, findings: Findings) -> Radiograph:
    """Render one radiograph. Lesions falling entirely outside the film are not listed.

    A pneumothorax is drawn on frontal views only (it is rarely visible on a lateral).
    """
    canvas = Canvas(anatomy)
    density = lateral_density(canvas, findings) if anatomy.view == "LATERAL" else frontal_density(canvas, findings)
    return Radiograph(_expose(canvas, density), tuple(canvas.lesions))


def _expose(c: Canvas, density: np.ndarray) -> np.ndarray:
    an = c.an
    image = np.clip(density / np.float32(an.exposure), 0.0, 1.0) ** np.float32(an.gamma)
    heel = 1.0 + 0.05 * (c.y / np.float32(an.height * an.spacing) - 0.3)
    image = image * heel + an.noise * c.rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0)
