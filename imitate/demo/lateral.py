"""The lateral film as a density map: thorax, lungs and heart, soft tissue, lung markings, the findings,
airways and bones. x = 0 is the anterior chest wall; the patient faces the image left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imitate.demo.anatomy import Atelectasis, Findings, device_routes
from imitate.demo.canvas import Canvas, Layers, band, blob, draw_edema, step

# Lobe centres: (fraction of chest depth from the sternum, fraction of lung height).
_LOBES = {
    "right upper lobe": (0.3, 0.22),
    "left upper lobe": (0.3, 0.22),
    "right middle lobe": (0.25, 0.62),
    "lingula": (0.25, 0.62),
    "right lower lobe": (0.72, 0.8),
    "left lower lobe": (0.72, 0.8),
}


@dataclass(frozen=True)
class _Chest:
    """A lateral view's thorax, lungs and heart, in canvas arrays; shared by its layers and findings."""

    ratio: float  # cardiothoracic ratio as drawn
    thorax: np.ndarray  # 0..1
    lung: np.ndarray  # 0..1, down to the lower (left) hemidiaphragm
    high: np.ndarray  # the higher (right) hemidiaphragm
    low: np.ndarray  # the lower (left) hemidiaphragm
    heart: np.ndarray  # 0..1
    hilum_x: float
    hilum_y: float


def lateral_density(c: Canvas, f: Findings) -> np.ndarray:
    """Density map of a lateral film."""
    chest = _chest(c, f)
    body, density = _soft_tissue(c)
    air = chest.lung * (1.0 - 0.5 * step((c.y - chest.high) / 0.25)) * (1.0 - 0.75 * chest.heart)
    layers = Layers(density, air, _markings(c, chest))
    _findings(c, f, chest, layers)
    density -= 0.45 * layers.air
    hilum = np.exp(-((np.hypot(c.x - chest.hilum_x, c.y - chest.hilum_y) / 1.8) ** 2))
    density += 0.09 * layers.vessels + 0.08 * hilum * chest.lung
    _airways(c, density, chest)
    _bones(c, chest, density, body)
    if f.devices:
        density += c.devices(device_routes(c.an, f.devices, chest.ratio))
    return density


def _chest(c: Canvas, f: Findings) -> _Chest:
    """Thorax rounded above, the two hemidiaphragms below (the right one higher), heart anteriorly."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    ratio = f.cardiomegaly.ratio if f.cardiomegaly else an.heart_ratio
    centre_x, centre_y, semi_x, semi_y = 0.5 * dp + 1.2, 0.55 * lh, 0.5 * dp + 0.8, 0.6 * lh
    oval = np.hypot((x - centre_x) / semi_x, np.minimum(y - centre_y, 0.0) / semi_y)
    along = x - 0.35 * dp
    arc = np.where(along > 0, (along / (0.55 * dp)) ** 2, 0.5 * (along / (0.5 * dp)) ** 2)
    high, low = lh - an.dome_right * (1.0 - arc), lh - an.dome_left * (1.0 - arc)
    thorax = step((1.0 - oval) * semi_y / 0.4)
    lung = thorax * step((low - y) / 0.25)
    heart_x, heart_y = 0.3 * dp, 0.8 * lh
    heart = step((1.0 - np.hypot((x - heart_x) / (0.24 * dp * ratio / 0.44), (y - heart_y) / (0.25 * lh))) / 0.05)
    return _Chest(ratio, thorax, lung, high, low, heart, 0.5 * dp, 0.42 * lh)


def _soft_tissue(c: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Chest wall, breasts and back between the skin lines: the body outline and its density."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    skin_front = -an.soft_tissue - 1.0 - 1.5 * an.breast * np.exp(-(((y - 0.8 * lh) / 4.0) ** 2))
    skin_front = skin_front + 0.35 * dp * (1.0 - step((y + 3.0) / 2.0))
    skin_back = dp + 3.0 + an.soft_tissue
    body = step((x - skin_front) / 0.5) * step((skin_back - x) / 0.5)
    half = (skin_back - skin_front) / 2
    depth = np.sqrt(np.clip(1.0 - ((x - skin_front - half) / (half + 0.5)) ** 2, 0.02, 1.0))
    return body, body * (0.35 + 0.5 * depth)


def _markings(c: Canvas, chest: _Chest) -> np.ndarray:
    """Vessels radiating from the superimposed hila (one pattern for both lungs)."""
    lh, dp = c.an.lung_height, c.an.depth
    w = c.window(0.0, dp + 2.5, -1.0, lh + 3.0)
    vessels = np.zeros_like(chest.lung)
    markings = c.vessels(w.x - chest.hilum_x, w.y - chest.hilum_y, 0.5 * dp, np.zeros_like(w.x, dtype=np.int32))
    vessels[w.at] = markings * chest.lung[w.at] * c.an.markings
    return vessels


def _findings(c: Canvas, f: Findings, chest: _Chest, layers: Layers) -> None:
    """Draw the findings into ``layers``; their lesions are listed in this order."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    if f.effusion:
        height = f.effusion.height * lh
        level = lh + 1.5 - 1.3 * height - (0.35 * height + 0.8) * np.clip((x - 0.3 * dp) / (0.8 * dp), 0.0, 1.0)
        fluid = step((y - level) / 0.6)
        layers.air *= 1.0 - (0.9 if len(f.effusion.sides) == 2 else 0.6) * fluid
        c.add_lesion("Pleural Effusion", "effusion", fluid * chest.lung, f.effusion.certain)
    if f.consolidation:
        k = f.consolidation
        across, down = _LOBES[k.lobe]
        opacity = blob(c, (across * dp, down * lh), 0.9 * k.radius, k.shape_seed)
        layers.air *= 1.0 - 0.8 * k.density * opacity
        c.add_lesion("Consolidation", "consolidation", opacity * chest.lung, k.certain)
    if f.edema:
        distance = np.hypot(x - chest.hilum_x, y - chest.hilum_y)
        draw_edema(c, f.edema, np.exp(-((distance / (0.35 * dp)) ** 2)), chest.lung, layers)
    if f.atelectasis:
        _atelectasis(c, f.atelectasis, chest, layers)
    if f.cardiomegaly:
        c.add_lesion("Cardiomegaly", "heart", chest.heart * step((chest.low - y) / 0.25), f.cardiomegaly.certain)


def _atelectasis(c: Canvas, a: Atelectasis, chest: _Chest, layers: Layers) -> None:
    """One plate of collapsed lung above the posterior diaphragm (the sides superimpose)."""
    lh, dp = c.an.lung_height, c.an.depth
    level = lh - c.an.dome_left - 1.5
    ends = (0.45 * dp, level), (0.9 * dp, level + 2.0 - a.tilt)
    w = c.window(0.3 * dp, dp + 1.0, level - 2.0, level + 4.0)
    plate = np.zeros_like(chest.lung)
    plate[w.at] = band(w, ends, 0.55, 0.25) * chest.lung[w.at]
    layers.air *= 1.0 - 0.75 * a.strength * plate
    c.add_lesion("Atelectasis", "atelectasis", plate, a.certain)


def _airways(c: Canvas, density: np.ndarray, chest: _Chest) -> None:
    """Subtract the air of the trachea and gastric bubble from ``density``."""
    an, dp = c.an, c.an.depth
    carina, hilum_x = an.carina, chest.hilum_x
    w = c.window(0.45 * dp - 1.5, hilum_x + 1.5, -9.0, carina + 1.0)
    density[w.at] -= 0.12 * band(w, ((0.45 * dp, -8.0), (hilum_x, carina)), 0.9, 0.2)
    bubble_x, bubble_y = 0.3 * dp, an.lung_height - an.dome_left + 2.2
    w = c.window(bubble_x - 3.0, bubble_x + 3.0, bubble_y - 2.0, bubble_y + 2.0)
    density[w.at] -= 0.18 * step((1.0 - np.hypot((w.x - bubble_x) / 2.5, (w.y - bubble_y) / 1.4)) / 0.3)


def _bones(c: Canvas, chest: _Chest, density: np.ndarray, body: np.ndarray) -> None:
    """Add the spine (vertebral bodies, posterior elements), sternum and posterior ribs to ``density``."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    spine_front = dp - 4.5 + 0.6 * np.sin(np.pi * y / (1.3 * lh))
    blocks = step((np.cos(2 * np.pi * y / 2.6) + 0.7) / 0.3) * step((y + 8.0) / 0.5)
    density += 0.08 * step((x - spine_front) / 0.2) * step((spine_front + 4.0 - x) / 0.2) * blocks
    density += 0.06 * step((x - spine_front - 4.3) / 0.3) * step((spine_front + 7.0 - x) / 0.5) * body
    density += 0.08 * step((1.1 - np.abs(x - 0.3)) / 0.2) * step((y - 0.5) / 0.5) * step((0.7 * lh - y) / 0.5)
    ribs = np.clip(np.cos(2 * np.pi * (y - 0.3 * (x - chest.hilum_x)) / an.rib_spacing) - 0.3, 0.0, 1.0)
    density += 0.04 * ribs * step((x - 0.45 * dp) / 0.5) * chest.thorax
