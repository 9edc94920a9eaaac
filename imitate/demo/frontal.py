"""The frontal (PA or AP) film as a density map: thoracic outline and heart, soft tissue, lung markings,
the findings, airways and bones. x = 0 is the thoracic midline; the patient's right is on the image left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imitate.demo.anatomy import Atelectasis, Consolidation, Effusion, Findings, Pneumothorax, device_routes
from imitate.demo.canvas import Canvas, Layers, band, blob, draw_edema, step

# Lobe centres: (fraction of the hemithorax width from the midline, fraction of lung height).
_LOBES = {
    "right upper lobe": (0.55, 0.22),
    "right middle lobe": (0.42, 0.68),
    "right lower lobe": (0.55, 0.86),
    "left upper lobe": (0.55, 0.25),
    "lingula": (0.5, 0.66),
    "left lower lobe": (0.5, 0.87),
}


@dataclass(frozen=True)
class _Chest:
    """A frontal view's thoracic outline and heart, in canvas arrays; shared by its layers and findings."""

    ratio: float  # cardiothoracic ratio as drawn (AP films magnify the heart)
    u: np.ndarray  # distance from the thoracic midline
    ut: np.ndarray  # u as a fraction of the hemithorax width
    wall: np.ndarray  # lateral chest wall, as a distance from the midline
    top: np.ndarray  # lung apices
    diaphragm: np.ndarray
    heart_top: float
    heart_width: float
    ellipse: np.ndarray  # the heart's half-height profile, 0..1
    lung: np.ndarray  # 0..1
    hilum_u: float
    hilum_y: float


def frontal_density(c: Canvas, f: Findings) -> np.ndarray:
    """Density map of a PA or AP film."""
    chest = _chest(c, f)
    body, depth, density = _soft_tissue(c, chest)
    layers = Layers(density, chest.lung.copy(), _markings(c, chest))
    _findings(c, f, chest, layers)
    lh, y, lung = c.an.lung_height, c.y, chest.lung
    density -= 0.5 * layers.air * np.sqrt(depth) * (0.8 + 0.2 * np.clip(y / (0.4 * lh), 0.0, 1.0))
    hilum = np.exp(-((np.hypot(chest.u - chest.hilum_u, y - chest.hilum_y) / 1.6) ** 2))
    density += 0.13 * layers.vessels + 0.08 * hilum * lung
    _airways(c, density, body)
    _bones(c, chest, density)
    if f.devices:
        density += c.devices(device_routes(c.an, f.devices, chest.ratio))
    return density


def _chest(c: Canvas, f: Findings) -> _Chest:
    """Hemithoraces with rounded apices, diaphragm domes (the right one higher), mediastinum and heart."""
    an, x, y = c.an, c.x, c.y
    t, lh, shift, m = an.half_width, an.lung_height, an.shift, an.mediastinum
    ratio = (f.cardiomegaly.ratio + (0.035 if an.view == "AP" else 0.0)) if f.cardiomegaly else an.heart_ratio
    u, right = np.abs(x), x < 0
    ut = u / t
    wall = t * (0.45 + 0.55 * np.sqrt(np.clip(y / (0.6 * lh), 0.0, 1.0)))
    top = 3.0 * (np.minimum(ut - 0.38, 0.0) / 0.22) ** 2
    dome = np.where(right, an.dome_right, an.dome_left).astype(np.float32)
    arc = np.where(ut < 0.45, 1.0 - 0.5 * ((ut - 0.45) / 0.45) ** 2, 1.0 - ((ut - 0.45) / 0.55) ** 2)
    diaphragm = lh - dome * arc
    heart_top, heart_mid = 0.44 * lh, 0.8 * lh
    ellipse = np.sqrt(np.clip(1.0 - ((y - heart_mid) / (heart_mid - heart_top)) ** 2, 0.0, 1.0))
    heart_w = ratio * 2.0 * t
    knob = 1.3 * np.exp(-(((y - 0.26 * lh) / 1.8) ** 2))
    reach_r = np.maximum(m, 0.36 * heart_w * ellipse)
    reach_l = np.maximum(m + knob, 0.64 * heart_w * ellipse)
    medial = np.where(right, step((shift - reach_r - x) / 0.25), step((x - shift - reach_l) / 0.25))
    lung = step((wall - u) / 0.25) * step((y - top) / 0.4) * medial * step((diaphragm - y) / 0.25)
    return _Chest(ratio, u, ut, wall, top, diaphragm, heart_top, heart_w, ellipse, lung, m + 1.6, 0.42 * lh)


def _soft_tissue(c: Canvas, chest: _Chest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neck, shoulders, chest wall and breasts: the body outline, its relative depth and their density."""
    an, y, u = c.an, c.y, chest.u
    t, lh = an.half_width, an.lung_height
    body_half = 0.55 * t + (t + an.soft_tissue + 0.5 - 0.55 * t) * step((y + 3.0) / 4.0)
    body = step((body_half - u) / 0.6)
    depth = np.sqrt(np.clip(1.0 - (u / (body_half + 0.5)) ** 2, 0.02, 1.0))
    density = body * (0.1 + 0.7 * depth**2)
    if an.breast:
        radius, centre = 0.38 * t * (0.8 + 0.4 * an.breast), 0.85 * lh
        breast = step((radius - np.hypot(u - 0.55 * t, y - centre)) / 1.0) * step((y - centre + 0.2 * radius) / 1.5)
        density += 0.08 * an.breast * breast
    return body, depth, density


def _markings(c: Canvas, chest: _Chest) -> np.ndarray:
    """Vessels of both lungs radiating from their hila (an independent pattern per lung)."""
    t, lh = c.an.half_width, c.an.lung_height
    w = c.window(-1.05 * t, 1.05 * t, -1.0, lh + 1.0)
    vessels = np.zeros_like(chest.lung)
    markings = c.vessels(np.abs(w.x) - chest.hilum_u, w.y - chest.hilum_y, 0.9 * t, (w.x > 0).astype(np.int32))
    vessels[w.at] = markings * chest.lung[w.at] * c.an.markings
    return vessels


def _findings(c: Canvas, f: Findings, chest: _Chest, layers: Layers) -> None:
    """Draw the findings into ``layers``; their lesions are listed in this order."""
    if f.effusion:
        _effusion(c, f.effusion, chest, layers)
    if f.pneumothorax:
        _pneumothorax(c, f.pneumothorax, chest, layers)
    if f.consolidation:
        _consolidation(c, f.consolidation, chest, layers)
    if f.edema:
        distance = np.hypot(chest.u - chest.hilum_u, c.y - chest.hilum_y)
        draw_edema(c, f.edema, np.exp(-((distance / (0.5 * c.an.half_width)) ** 2)), chest.lung, layers)
    if f.atelectasis:
        _atelectasis(c, f.atelectasis, chest, layers)
    if f.cardiomegaly:
        x, y, shift, heart_w = c.x, c.y, c.an.shift, chest.heart_width
        heart = (x > shift - 0.36 * heart_w * chest.ellipse) & (x < shift + 0.64 * heart_w * chest.ellipse)
        heart &= (y > chest.heart_top) & (y < chest.diaphragm + 0.5)
        c.add_lesion("Cardiomegaly", "heart", heart, f.cardiomegaly.certain)


def _effusion(c: Canvas, effusion: Effusion, chest: _Chest, layers: Layers) -> None:
    """Fluid in the costophrenic angles under a meniscus; a second side holds less."""
    lh, x = c.an.lung_height, c.x
    for i, side in enumerate(effusion.sides):
        height = effusion.height * lh * (1.0 if i == 0 else 0.75)
        level = lh - height + (0.35 * height + 0.8) * (1.0 - np.clip(chest.ut, 0.0, 1.0) ** 2)
        fluid = step((c.y - level) / 0.6) * step((-x if side == "right" else x) / 0.2)
        layers.air *= 1.0 - 0.92 * fluid
        c.add_lesion("Pleural Effusion", f"effusion_{side}", fluid * chest.lung, effusion.certain)


def _pneumothorax(c: Canvas, p: Pneumothorax, chest: _Chest, layers: Layers) -> None:
    """A dark rim without vessels behind a thin pleural line, widest at the apex."""
    x, y = c.x, c.y
    low = p.extent * c.an.lung_height
    gap = p.depth * (1.0 - 0.6 * np.clip(y / low, 0.0, 1.0)) * step((low - y) / 1.0)
    edge = np.minimum(chest.wall - chest.u - gap, y - chest.top - 0.9 * p.depth)  # signed distance to the pleural line
    inside = chest.lung * step((-x if p.side == "right" else x) / 0.2)
    rim = step(-edge / 0.15) * inside
    layers.density += 0.14 * np.exp(-((edge / 0.12) ** 2)) * inside * (gap > 0.2) - 0.12 * rim
    layers.vessels *= 1.0 - rim
    # the collapsing lung gets denser
    layers.air *= 1.0 - min(0.5, 1.2 * p.depth / c.an.half_width) * inside * (1.0 - rim)
    c.add_lesion("Pneumothorax", "pneumothorax", rim, p.certain)


def _consolidation(c: Canvas, k: Consolidation, chest: _Chest, layers: Layers) -> None:
    """An airspace opacity in its lobe; the minor fissure bounds the right upper and middle lobes."""
    t, lh, m, y = c.an.half_width, c.an.lung_height, c.an.mediastinum, c.y
    across, down = _LOBES[k.lobe]
    side = -1.0 if k.lobe.startswith("right") else 1.0
    opacity = blob(c, (side * (m + across * (t - m)), down * lh), k.radius, k.shape_seed) * step(side * c.x / 0.2)
    if k.lobe == "right upper lobe":
        opacity *= step((0.45 * lh - y) / 0.15)
    elif k.lobe == "right middle lobe":
        opacity *= step((y - 0.45 * lh) / 0.15)
    layers.air *= 1.0 - k.density * opacity
    c.add_lesion("Consolidation", "consolidation", opacity * chest.lung, k.certain)


def _atelectasis(c: Canvas, a: Atelectasis, chest: _Chest, layers: Layers) -> None:
    """A plate of collapsed lung above each affected dome, rising towards the chest wall."""
    an = c.an
    t, lh = an.half_width, an.lung_height
    for side in a.sides:
        s = -1.0 if side == "right" else 1.0
        level = lh - (an.dome_right if side == "right" else an.dome_left) - 2.5
        ends = (s * 0.25 * t, level), (s * 0.8 * t, level - a.tilt)
        w = c.window(-t - 1.0, t + 1.0, level - abs(a.tilt) - 1.5, level + 1.5)
        plate = np.zeros_like(chest.lung)
        plate[w.at] = band(w, ends, 0.6, 0.35) * chest.lung[w.at]
        layers.air *= 1.0 - 0.6 * a.strength * plate
        c.add_lesion("Atelectasis", f"atelectasis_{side}", plate, a.certain)


def _airways(c: Canvas, density: np.ndarray, body: np.ndarray) -> None:
    """Subtract the air of the trachea, main bronchi and gastric bubble from ``density``."""
    an, x, y = c.an, c.x, c.y
    t, carina, trachea_x = an.half_width, an.carina, an.trachea_x
    density -= 0.14 * step((0.9 - np.abs(x - trachea_x)) / 0.2) * step((carina - y) / 0.3) * body
    w = c.window(trachea_x - 4.0, trachea_x + 4.5, carina - 1.0, carina + 4.0)
    for end in ((trachea_x - 3.0, carina + 2.2), (trachea_x + 3.5, carina + 2.8)):
        density[w.at] -= 0.08 * band(w, ((trachea_x, carina), end), 0.55, 0.2)
    bubble_y = an.lung_height - 0.4 * an.dome_left + 2.0
    w = c.window(0.5 * t - 3.0, 0.5 * t + 3.0, bubble_y - 2.0, bubble_y + 2.0)
    density[w.at] -= 0.2 * step((1.0 - np.hypot((w.x - 0.5 * t) / 2.5, (w.y - bubble_y) / 1.5)) / 0.3)


def _bones(c: Canvas, chest: _Chest, density: np.ndarray) -> None:
    """Add the spine, posterior and anterior ribs and clavicles to ``density``."""
    an, x, y, u, ut = c.an, c.x, c.y, chest.u, chest.ut
    t, lh = an.half_width, an.lung_height
    vertebrae = 0.8 + 0.2 * step((np.cos(2 * np.pi * y / 2.5) + 0.6) / 0.3)
    density += 0.08 * step((1.4 - np.abs(x - 0.5 * an.shift)) / 0.3) * vertebrae
    spacing = an.rib_spacing * (0.85 + 0.3 * np.clip(y / lh, 0.0, 1.2))
    cage = step((1.03 * t - u) / 0.3) * step((ut - 0.12) / 0.05) * step((y + 1.5) / 0.5)
    cage *= step((chest.diaphragm + 0.5 - y) / 1.5)
    posterior = np.cos(2 * np.pi * (y - t * (-0.6 * ut + 0.81 * ut**2)) / spacing)
    anterior = np.cos(2 * np.pi * (y - 0.6 * (t - u)) / (1.3 * spacing))
    ribs = 0.06 * np.sqrt(np.clip((posterior - 0.1) / 0.9, 0.0, 1.0))
    ribs += 0.035 * np.clip((anterior - 0.3) / 0.7, 0.0, 1.0) * step((ut - 0.35) / 0.1)
    density += cage * ribs * (0.6 + 0.4 * chest.lung)
    w = c.window(-t - 3.0, t + 3.0, -0.2 * t - 2.0, 2.0)
    wu = np.abs(w.x)
    clavicle = 0.3 - 0.2 * wu + 0.4 * np.sin(np.pi * np.clip(wu / t, 0.0, 1.0))
    bone = step((0.6 - np.abs(w.y - clavicle)) / 0.2) * step((wu - 1.2) / 0.3) * step((t + 2.5 - wu) / 0.5)
    density[w.at] += 0.12 * bone
