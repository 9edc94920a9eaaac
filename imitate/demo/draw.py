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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from imitate.demo.anatomy import (
    Anatomy,
    Atelectasis,
    Consolidation,
    DeviceRoutes,
    Edema,
    Effusion,
    Findings,
    Pneumothorax,
    Points,
    device_routes,
)

# Lobe centres: (fraction of the hemithorax width from the midline, fraction of lung height) on
# frontal views; (fraction of chest depth from the sternum, fraction of lung height) on laterals.
_LOBE_FRONTAL = {
    "right upper lobe": (0.55, 0.22),
    "right middle lobe": (0.42, 0.68),
    "right lower lobe": (0.55, 0.86),
    "left upper lobe": (0.55, 0.25),
    "lingula": (0.5, 0.66),
    "left lower lobe": (0.5, 0.87),
}
_LOBE_LATERAL = {
    "right upper lobe": (0.3, 0.22),
    "left upper lobe": (0.3, 0.22),
    "right middle lobe": (0.25, 0.62),
    "lingula": (0.25, 0.62),
    "right lower lobe": (0.72, 0.8),
    "left lower lobe": (0.72, 0.8),
}


@dataclass(frozen=True)
class Lesion:
    """Pixel geometry of one drawn finding; ``box`` is ``(x0, y0, x1, y1)`` with exclusive ends."""

    label: str  # the CheXpert label it illustrates
    kind: str  # e.g. "effusion_left", "pneumothorax", "heart", "et_tube"
    mask: np.ndarray  # bool (height, width)
    box: tuple[int, int, int, int]
    certain: bool


@dataclass(frozen=True)
class Radiograph:
    """A drawn image (float32 in [0, 1], bright = dense, as MONOCHROME2) and its lesions."""

    pixels: np.ndarray
    lesions: tuple[Lesion, ...]


def draw(anatomy: Anatomy, findings: Findings) -> Radiograph:
    """Render one radiograph. Lesions falling entirely outside the film are not listed.

    A pneumothorax is drawn on frontal views only (it is rarely visible on a lateral).
    """
    canvas = _Canvas(anatomy)
    density = _lateral(canvas, findings) if anatomy.view == "LATERAL" else _frontal(canvas, findings)
    return Radiograph(_expose(canvas, density), tuple(canvas.lesions))


@dataclass(frozen=True)
class _Window:
    """A rectangle of the canvas: its coordinates and where it sits in the full image."""

    x: np.ndarray
    y: np.ndarray
    at: tuple[slice, slice]


class _Canvas:
    """The pixel grid in cm, the image's texture generator and the lesions collected while drawing."""

    def __init__(self, an: Anatomy) -> None:
        self.an = an
        self.x = ((np.arange(an.width, dtype=np.float32) + 0.5) * an.spacing - an.origin_x)[None, :]
        self.y = ((np.arange(an.height, dtype=np.float32) + 0.5) * an.spacing - an.origin_y)[:, None]
        self.rng = np.random.default_rng(an.texture_seed)
        self.lesions: list[Lesion] = []

    def window(self, left: float, right: float, top: float, bottom: float) -> _Window:
        """The part of the canvas inside these cm bounds (possibly empty): small features are drawn there."""
        xs, ys = self.x[0], self.y[:, 0]
        cols = slice(int(np.searchsorted(xs, left)), int(np.searchsorted(xs, right)))
        rows = slice(int(np.searchsorted(ys, top)), int(np.searchsorted(ys, bottom)))
        return _Window(self.x[:, cols], self.y[rows], (rows, cols))

    def add_lesion(self, label: str, kind: str, field: np.ndarray, certain: bool) -> None:
        mask = field > 0.5
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            self.lesions.append(Lesion(label, kind, mask, box, certain))

    def vessels(self, dx: np.ndarray, dy: np.ndarray, reach: float, lung_index: np.ndarray) -> np.ndarray:
        """Branching vessels radiating from a hilum at ``dx = dy = 0``, tapering and fading with distance.

        Vessels are the zero crossings of a smooth random function of the (slightly wavy) angle around
        the hilum; ``lung_index`` (0 or 1 per pixel) picks an independent function per lung.
        """
        bins = 2048
        table = np.concatenate([_periodic_noise(self.rng, bins), _periodic_noise(self.rng, bins)])
        r = np.hypot(dx, dy)
        phase = self.rng.uniform(0, 6.3, 2).astype(np.float32)
        angle = np.arctan2(dy, dx) + 0.15 * np.sin(r * 0.45 + phase[0]) + 0.08 * np.sin(r * 1.1 + phase[1])
        index = ((angle + np.pi) * (bins / (2 * np.pi))).astype(np.int32) % bins + bins * lung_index
        width = 7.0 * (0.3 * np.exp(-r / 8.0) + 0.08) / (r + 0.5)  # ~3 mm at the hilum, ~1 mm at the edge
        return np.exp(-((table[index] / width) ** 2)) * np.exp(-r / np.float32(reach)) * _step(r - 1.0)

    def polylines(self, lines: Sequence[tuple[Points, float]]) -> np.ndarray:
        """Anti-aliased coverage (0..1) of polylines given as (points in cm, width in cm)."""
        an = self.an
        image = Image.new("L", (an.width, an.height))
        pen = ImageDraw.Draw(image)
        for points, width in lines:
            xy = [((px + an.origin_x) / an.spacing, (py + an.origin_y) / an.spacing) for px, py in points]
            pen.line(xy, fill=255, width=max(1, round(width / an.spacing)), joint="curve")
        return np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) / 255.0

    def devices(self, routes: DeviceRoutes) -> np.ndarray:
        """Tubes, lines and pacemaker (one lesion each); returns the density they add."""
        total = np.zeros((self.an.height, self.an.width), np.float32)
        generator = routes.generator
        for kind, curves in routes.paths.items():
            wire = self.polylines([(curve, 0.22) for curve in curves])
            total += 0.45 * wire
            if kind == "et_tube":  # a faint tube wall around the radiopaque stripe
                total += 0.07 * self.polylines([(curves[0], 0.9)])
            if kind == "pacemaker" and generator is not None:
                can = np.hypot((self.x - generator[0]) / 2.3, (self.y - generator[1]) / 1.7) < 1.0
                wire = np.maximum(wire, can)
                total += 0.8 * can
            self.add_lesion("Support Devices", kind, wire, True)
        return total


def _step(z: np.ndarray | float) -> np.ndarray:
    """Soft edge: a 0 -> 1 ramp as z goes from -1 to 1."""
    return np.clip(np.asarray(z, dtype=np.float32) * 0.5 + 0.5, 0.0, 1.0)


def _periodic_noise(rng: np.random.Generator, bins: int) -> np.ndarray:
    """Smooth periodic 1-D noise (three octaves) sampled at ``bins`` points, float32."""
    out = np.zeros(bins)
    for knots, weight in ((16, 1.0), (32, 0.6), (64, 0.3)):
        values = rng.standard_normal(knots)
        out += weight * np.interp(np.arange(bins) * knots / bins, np.arange(knots + 1), np.append(values, values[0]))
    return out.astype(np.float32)


def _segment_distance(c: _Canvas | _Window, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    ax, ay, bx, by = (np.float32(v) for v in (*a, *b))
    dx, dy = bx - ax, by - ay
    t = np.clip(((c.x - ax) * dx + (c.y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(c.x - ax - t * dx, c.y - ay - t * dy)


def _blob(c: _Canvas, centre: tuple[float, float], radius: float, seed: int) -> np.ndarray:
    """An irregular airspace opacity (0..1) whose outline in cm is the same at every resolution."""
    rng = np.random.default_rng(seed)
    angles, freqs, phases = rng.uniform(0, np.pi, 5), rng.uniform(0.8, 1.8, 5) / radius, rng.uniform(0, 6.3, 5)
    # the wobble (at most 0.7) cannot push the outline beyond twice the radius
    w = c.window(centre[0] - 2.0 * radius, centre[0] + 2.0 * radius, centre[1] - 1.6 * radius, centre[1] + 1.6 * radius)
    wobble = sum(
        np.sin((w.x * np.cos(a) + w.y * np.sin(a)) * np.float32(f) + np.float32(p))
        for a, f, p in zip(angles, freqs, phases, strict=True)
    )
    rho = np.hypot((w.x - centre[0]) / radius, (w.y - centre[1]) / (0.8 * radius))
    out = np.zeros((c.an.height, c.an.width), np.float32)
    out[w.at] = _step((1.0 - rho + 0.14 * wobble) / 0.25)
    return out


def _expose(c: _Canvas, density: np.ndarray) -> np.ndarray:
    an = c.an
    image = np.clip(density / np.float32(an.exposure), 0.0, 1.0) ** np.float32(an.gamma)
    heel = 1.0 + 0.05 * (c.y / np.float32(an.height * an.spacing) - 0.3)
    image = image * heel + an.noise * c.rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0)


@dataclass
class _Layers:
    """The density map being built and the two fields the findings act on before they join it."""

    density: np.ndarray  # soft tissue so far
    air: np.ndarray  # aeration of the lungs, subtracted from the density once the findings are drawn
    vessels: np.ndarray  # lung markings, added to the density after the findings


def _edema(c: _Canvas, edema: Edema, haze: np.ndarray, lung: np.ndarray, layers: _Layers) -> None:
    """Perihilar haze: fluid replaces air and blurs the vessels."""
    layers.air *= 1.0 - edema.strength * haze
    layers.vessels *= 1.0 - 0.6 * edema.strength * haze
    c.add_lesion("Edema", "edema", haze * lung, edema.certain)


def _band(w: _Window, ends: tuple[tuple[float, float], tuple[float, float]], half: float, edge: float) -> np.ndarray:
    """A soft band of half-thickness ``half`` cm along the segment ``ends``, within ``w``."""
    return _step((half - _segment_distance(w, *ends)) / edge)


@dataclass(frozen=True)
class _FrontalChest:
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


def _frontal(c: _Canvas, f: Findings) -> np.ndarray:
    """Density map of a PA or AP film."""
    chest = _frontal_chest(c, f)
    body, depth, density = _frontal_soft_tissue(c, chest)
    layers = _Layers(density, chest.lung.copy(), _frontal_markings(c, chest))
    _frontal_findings(c, f, chest, layers)
    lh, y, lung = c.an.lung_height, c.y, chest.lung
    density -= 0.5 * layers.air * np.sqrt(depth) * (0.8 + 0.2 * np.clip(y / (0.4 * lh), 0.0, 1.0))
    hilum = np.exp(-((np.hypot(chest.u - chest.hilum_u, y - chest.hilum_y) / 1.6) ** 2))
    density += 0.13 * layers.vessels + 0.08 * hilum * lung
    _frontal_airways(c, density, body)
    _frontal_bones(c, chest, density)
    if f.devices:
        density += c.devices(device_routes(c.an, f.devices, chest.ratio))
    return density


def _frontal_chest(c: _Canvas, f: Findings) -> _FrontalChest:
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
    medial = np.where(right, _step((shift - reach_r - x) / 0.25), _step((x - shift - reach_l) / 0.25))
    lung = _step((wall - u) / 0.25) * _step((y - top) / 0.4) * medial * _step((diaphragm - y) / 0.25)
    return _FrontalChest(ratio, u, ut, wall, top, diaphragm, heart_top, heart_w, ellipse, lung, m + 1.6, 0.42 * lh)


def _frontal_soft_tissue(c: _Canvas, chest: _FrontalChest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neck, shoulders, chest wall and breasts: the body outline, its relative depth and their density."""
    an, y, u = c.an, c.y, chest.u
    t, lh = an.half_width, an.lung_height
    body_half = 0.55 * t + (t + an.soft_tissue + 0.5 - 0.55 * t) * _step((y + 3.0) / 4.0)
    body = _step((body_half - u) / 0.6)
    depth = np.sqrt(np.clip(1.0 - (u / (body_half + 0.5)) ** 2, 0.02, 1.0))
    density = body * (0.1 + 0.7 * depth**2)
    if an.breast:
        radius, centre = 0.38 * t * (0.8 + 0.4 * an.breast), 0.85 * lh
        breast = _step((radius - np.hypot(u - 0.55 * t, y - centre)) / 1.0) * _step((y - centre + 0.2 * radius) / 1.5)
        density += 0.08 * an.breast * breast
    return body, depth, density


def _frontal_markings(c: _Canvas, chest: _FrontalChest) -> np.ndarray:
    """Vessels of both lungs radiating from their hila (an independent pattern per lung)."""
    t, lh = c.an.half_width, c.an.lung_height
    w = c.window(-1.05 * t, 1.05 * t, -1.0, lh + 1.0)
    vessels = np.zeros_like(chest.lung)
    markings = c.vessels(np.abs(w.x) - chest.hilum_u, w.y - chest.hilum_y, 0.9 * t, (w.x > 0).astype(np.int32))
    vessels[w.at] = markings * chest.lung[w.at] * c.an.markings
    return vessels


def _frontal_findings(c: _Canvas, f: Findings, chest: _FrontalChest, layers: _Layers) -> None:
    """Draw the findings into ``layers``; their lesions are listed in this order."""
    if f.effusion:
        _frontal_effusion(c, f.effusion, chest, layers)
    if f.pneumothorax:
        _frontal_pneumothorax(c, f.pneumothorax, chest, layers)
    if f.consolidation:
        _frontal_consolidation(c, f.consolidation, chest, layers)
    if f.edema:
        distance = np.hypot(chest.u - chest.hilum_u, c.y - chest.hilum_y)
        _edema(c, f.edema, np.exp(-((distance / (0.5 * c.an.half_width)) ** 2)), chest.lung, layers)
    if f.atelectasis:
        _frontal_atelectasis(c, f.atelectasis, chest, layers)
    if f.cardiomegaly:
        x, y, shift, heart_w = c.x, c.y, c.an.shift, chest.heart_width
        heart = (x > shift - 0.36 * heart_w * chest.ellipse) & (x < shift + 0.64 * heart_w * chest.ellipse)
        heart &= (y > chest.heart_top) & (y < chest.diaphragm + 0.5)
        c.add_lesion("Cardiomegaly", "heart", heart, f.cardiomegaly.certain)


def _frontal_effusion(c: _Canvas, effusion: Effusion, chest: _FrontalChest, layers: _Layers) -> None:
    """Fluid in the costophrenic angles under a meniscus; a second side holds less."""
    lh, x = c.an.lung_height, c.x
    for i, side in enumerate(effusion.sides):
        height = effusion.height * lh * (1.0 if i == 0 else 0.75)
        level = lh - height + (0.35 * height + 0.8) * (1.0 - np.clip(chest.ut, 0.0, 1.0) ** 2)
        fluid = _step((c.y - level) / 0.6) * _step((-x if side == "right" else x) / 0.2)
        layers.air *= 1.0 - 0.92 * fluid
        c.add_lesion("Pleural Effusion", f"effusion_{side}", fluid * chest.lung, effusion.certain)


def _frontal_pneumothorax(c: _Canvas, p: Pneumothorax, chest: _FrontalChest, layers: _Layers) -> None:
    """A dark rim without vessels behind a thin pleural line, widest at the apex."""
    x, y = c.x, c.y
    low = p.extent * c.an.lung_height
    gap = p.depth * (1.0 - 0.6 * np.clip(y / low, 0.0, 1.0)) * _step((low - y) / 1.0)
    edge = np.minimum(chest.wall - chest.u - gap, y - chest.top - 0.9 * p.depth)  # signed distance to the pleural line
    inside = chest.lung * _step((-x if p.side == "right" else x) / 0.2)
    rim = _step(-edge / 0.15) * inside
    layers.density += 0.14 * np.exp(-((edge / 0.12) ** 2)) * inside * (gap > 0.2) - 0.12 * rim
    layers.vessels *= 1.0 - rim
    # the collapsing lung gets denser
    layers.air *= 1.0 - min(0.5, 1.2 * p.depth / c.an.half_width) * inside * (1.0 - rim)
    c.add_lesion("Pneumothorax", "pneumothorax", rim, p.certain)


def _frontal_consolidation(c: _Canvas, k: Consolidation, chest: _FrontalChest, layers: _Layers) -> None:
    """An airspace opacity in its lobe; the minor fissure bounds the right upper and middle lobes."""
    t, lh, m, y = c.an.half_width, c.an.lung_height, c.an.mediastinum, c.y
    across, down = _LOBE_FRONTAL[k.lobe]
    side = -1.0 if k.lobe.startswith("right") else 1.0
    opacity = _blob(c, (side * (m + across * (t - m)), down * lh), k.radius, k.shape_seed) * _step(side * c.x / 0.2)
    if k.lobe == "right upper lobe":
        opacity *= _step((0.45 * lh - y) / 0.15)
    elif k.lobe == "right middle lobe":
        opacity *= _step((y - 0.45 * lh) / 0.15)
    layers.air *= 1.0 - k.density * opacity
    c.add_lesion("Consolidation", "consolidation", opacity * chest.lung, k.certain)


def _frontal_atelectasis(c: _Canvas, a: Atelectasis, chest: _FrontalChest, layers: _Layers) -> None:
    """A plate of collapsed lung above each affected dome, rising towards the chest wall."""
    an = c.an
    t, lh = an.half_width, an.lung_height
    for side in a.sides:
        s = -1.0 if side == "right" else 1.0
        level = lh - (an.dome_right if side == "right" else an.dome_left) - 2.5
        ends = (s * 0.25 * t, level), (s * 0.8 * t, level - a.tilt)
        w = c.window(-t - 1.0, t + 1.0, level - abs(a.tilt) - 1.5, level + 1.5)
        plate = np.zeros_like(chest.lung)
        plate[w.at] = _band(w, ends, 0.6, 0.35) * chest.lung[w.at]
        layers.air *= 1.0 - 0.6 * a.strength * plate
        c.add_lesion("Atelectasis", f"atelectasis_{side}", plate, a.certain)


def _frontal_airways(c: _Canvas, density: np.ndarray, body: np.ndarray) -> None:
    """Subtract the air of the trachea, main bronchi and gastric bubble from ``density``."""
    an, x, y = c.an, c.x, c.y
    t, carina, trachea_x = an.half_width, an.carina, an.trachea_x
    density -= 0.14 * _step((0.9 - np.abs(x - trachea_x)) / 0.2) * _step((carina - y) / 0.3) * body
    w = c.window(trachea_x - 4.0, trachea_x + 4.5, carina - 1.0, carina + 4.0)
    for end in ((trachea_x - 3.0, carina + 2.2), (trachea_x + 3.5, carina + 2.8)):
        density[w.at] -= 0.08 * _band(w, ((trachea_x, carina), end), 0.55, 0.2)
    bubble_y = an.lung_height - 0.4 * an.dome_left + 2.0
    w = c.window(0.5 * t - 3.0, 0.5 * t + 3.0, bubble_y - 2.0, bubble_y + 2.0)
    density[w.at] -= 0.2 * _step((1.0 - np.hypot((w.x - 0.5 * t) / 2.5, (w.y - bubble_y) / 1.5)) / 0.3)


def _frontal_bones(c: _Canvas, chest: _FrontalChest, density: np.ndarray) -> None:
    """Add the spine, posterior and anterior ribs and clavicles to ``density``."""
    an, x, y, u, ut = c.an, c.x, c.y, chest.u, chest.ut
    t, lh = an.half_width, an.lung_height
    vertebrae = 0.8 + 0.2 * _step((np.cos(2 * np.pi * y / 2.5) + 0.6) / 0.3)
    density += 0.08 * _step((1.4 - np.abs(x - 0.5 * an.shift)) / 0.3) * vertebrae
    spacing = an.rib_spacing * (0.85 + 0.3 * np.clip(y / lh, 0.0, 1.2))
    cage = _step((1.03 * t - u) / 0.3) * _step((ut - 0.12) / 0.05) * _step((y + 1.5) / 0.5)
    cage *= _step((chest.diaphragm + 0.5 - y) / 1.5)
    posterior = np.cos(2 * np.pi * (y - t * (-0.6 * ut + 0.81 * ut**2)) / spacing)
    anterior = np.cos(2 * np.pi * (y - 0.6 * (t - u)) / (1.3 * spacing))
    ribs = 0.06 * np.sqrt(np.clip((posterior - 0.1) / 0.9, 0.0, 1.0))
    ribs += 0.035 * np.clip((anterior - 0.3) / 0.7, 0.0, 1.0) * _step((ut - 0.35) / 0.1)
    density += cage * ribs * (0.6 + 0.4 * chest.lung)
    w = c.window(-t - 3.0, t + 3.0, -0.2 * t - 2.0, 2.0)
    wu = np.abs(w.x)
    clavicle = 0.3 - 0.2 * wu + 0.4 * np.sin(np.pi * np.clip(wu / t, 0.0, 1.0))
    bone = _step((0.6 - np.abs(w.y - clavicle)) / 0.2) * _step((wu - 1.2) / 0.3) * _step((t + 2.5 - wu) / 0.5)
    density[w.at] += 0.12 * bone


@dataclass(frozen=True)
class _LateralChest:
    """A lateral view's thorax, lungs and heart, in canvas arrays; shared by its layers and findings."""

    ratio: float  # cardiothoracic ratio as drawn
    thorax: np.ndarray  # 0..1
    lung: np.ndarray  # 0..1, down to the lower (left) hemidiaphragm
    high: np.ndarray  # the higher (right) hemidiaphragm
    low: np.ndarray  # the lower (left) hemidiaphragm
    heart: np.ndarray  # 0..1
    hilum_x: float
    hilum_y: float


def _lateral(c: _Canvas, f: Findings) -> np.ndarray:
    """Density map of a lateral film."""
    chest = _lateral_chest(c, f)
    body, density = _lateral_soft_tissue(c)
    air = chest.lung * (1.0 - 0.5 * _step((c.y - chest.high) / 0.25)) * (1.0 - 0.75 * chest.heart)
    layers = _Layers(density, air, _lateral_markings(c, chest))
    _lateral_findings(c, f, chest, layers)
    density -= 0.45 * layers.air
    hilum = np.exp(-((np.hypot(c.x - chest.hilum_x, c.y - chest.hilum_y) / 1.8) ** 2))
    density += 0.09 * layers.vessels + 0.08 * hilum * chest.lung
    _lateral_airways(c, density, chest)
    _lateral_bones(c, chest, density, body)
    if f.devices:
        density += c.devices(device_routes(c.an, f.devices, chest.ratio))
    return density


def _lateral_chest(c: _Canvas, f: Findings) -> _LateralChest:
    """Thorax rounded above, the two hemidiaphragms below (the right one higher), heart anteriorly."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    ratio = f.cardiomegaly.ratio if f.cardiomegaly else an.heart_ratio
    centre_x, centre_y, semi_x, semi_y = 0.5 * dp + 1.2, 0.55 * lh, 0.5 * dp + 0.8, 0.6 * lh
    oval = np.hypot((x - centre_x) / semi_x, np.minimum(y - centre_y, 0.0) / semi_y)
    along = x - 0.35 * dp
    arc = np.where(along > 0, (along / (0.55 * dp)) ** 2, 0.5 * (along / (0.5 * dp)) ** 2)
    high, low = lh - an.dome_right * (1.0 - arc), lh - an.dome_left * (1.0 - arc)
    thorax = _step((1.0 - oval) * semi_y / 0.4)
    lung = thorax * _step((low - y) / 0.25)
    heart_x, heart_y = 0.3 * dp, 0.8 * lh
    heart = _step((1.0 - np.hypot((x - heart_x) / (0.24 * dp * ratio / 0.44), (y - heart_y) / (0.25 * lh))) / 0.05)
    return _LateralChest(ratio, thorax, lung, high, low, heart, 0.5 * dp, 0.42 * lh)


def _lateral_soft_tissue(c: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Chest wall, breasts and back between the skin lines: the body outline and its density."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    skin_front = -an.soft_tissue - 1.0 - 1.5 * an.breast * np.exp(-(((y - 0.8 * lh) / 4.0) ** 2))
    skin_front = skin_front + 0.35 * dp * (1.0 - _step((y + 3.0) / 2.0))
    skin_back = dp + 3.0 + an.soft_tissue
    body = _step((x - skin_front) / 0.5) * _step((skin_back - x) / 0.5)
    half = (skin_back - skin_front) / 2
    depth = np.sqrt(np.clip(1.0 - ((x - skin_front - half) / (half + 0.5)) ** 2, 0.02, 1.0))
    return body, body * (0.35 + 0.5 * depth)


def _lateral_markings(c: _Canvas, chest: _LateralChest) -> np.ndarray:
    """Vessels radiating from the superimposed hila (one pattern for both lungs)."""
    lh, dp = c.an.lung_height, c.an.depth
    w = c.window(0.0, dp + 2.5, -1.0, lh + 3.0)
    vessels = np.zeros_like(chest.lung)
    markings = c.vessels(w.x - chest.hilum_x, w.y - chest.hilum_y, 0.5 * dp, np.zeros_like(w.x, dtype=np.int32))
    vessels[w.at] = markings * chest.lung[w.at] * c.an.markings
    return vessels


def _lateral_findings(c: _Canvas, f: Findings, chest: _LateralChest, layers: _Layers) -> None:
    """Draw the findings into ``layers``; their lesions are listed in this order."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    if f.effusion:
        height = f.effusion.height * lh
        level = lh + 1.5 - 1.3 * height - (0.35 * height + 0.8) * np.clip((x - 0.3 * dp) / (0.8 * dp), 0.0, 1.0)
        fluid = _step((y - level) / 0.6)
        layers.air *= 1.0 - (0.9 if len(f.effusion.sides) == 2 else 0.6) * fluid
        c.add_lesion("Pleural Effusion", "effusion", fluid * chest.lung, f.effusion.certain)
    if f.consolidation:
        k = f.consolidation
        across, down = _LOBE_LATERAL[k.lobe]
        opacity = _blob(c, (across * dp, down * lh), 0.9 * k.radius, k.shape_seed)
        layers.air *= 1.0 - 0.8 * k.density * opacity
        c.add_lesion("Consolidation", "consolidation", opacity * chest.lung, k.certain)
    if f.edema:
        distance = np.hypot(x - chest.hilum_x, y - chest.hilum_y)
        _edema(c, f.edema, np.exp(-((distance / (0.35 * dp)) ** 2)), chest.lung, layers)
    if f.atelectasis:
        _lateral_atelectasis(c, f.atelectasis, chest, layers)
    if f.cardiomegaly:
        c.add_lesion("Cardiomegaly", "heart", chest.heart * _step((chest.low - y) / 0.25), f.cardiomegaly.certain)


def _lateral_atelectasis(c: _Canvas, a: Atelectasis, chest: _LateralChest, layers: _Layers) -> None:
    """One plate of collapsed lung above the posterior diaphragm (the sides superimpose)."""
    lh, dp = c.an.lung_height, c.an.depth
    level = lh - c.an.dome_left - 1.5
    ends = (0.45 * dp, level), (0.9 * dp, level + 2.0 - a.tilt)
    w = c.window(0.3 * dp, dp + 1.0, level - 2.0, level + 4.0)
    plate = np.zeros_like(chest.lung)
    plate[w.at] = _band(w, ends, 0.55, 0.25) * chest.lung[w.at]
    layers.air *= 1.0 - 0.75 * a.strength * plate
    c.add_lesion("Atelectasis", "atelectasis", plate, a.certain)


def _lateral_airways(c: _Canvas, density: np.ndarray, chest: _LateralChest) -> None:
    """Subtract the air of the trachea and gastric bubble from ``density``."""
    an, dp = c.an, c.an.depth
    carina, hilum_x = an.carina, chest.hilum_x
    w = c.window(0.45 * dp - 1.5, hilum_x + 1.5, -9.0, carina + 1.0)
    density[w.at] -= 0.12 * _band(w, ((0.45 * dp, -8.0), (hilum_x, carina)), 0.9, 0.2)
    bubble_x, bubble_y = 0.3 * dp, an.lung_height - an.dome_left + 2.2
    w = c.window(bubble_x - 3.0, bubble_x + 3.0, bubble_y - 2.0, bubble_y + 2.0)
    density[w.at] -= 0.18 * _step((1.0 - np.hypot((w.x - bubble_x) / 2.5, (w.y - bubble_y) / 1.4)) / 0.3)


def _lateral_bones(c: _Canvas, chest: _LateralChest, density: np.ndarray, body: np.ndarray) -> None:
    """Add the spine (vertebral bodies, posterior elements), sternum and posterior ribs to ``density``."""
    an, x, y = c.an, c.x, c.y
    lh, dp = an.lung_height, an.depth
    spine_front = dp - 4.5 + 0.6 * np.sin(np.pi * y / (1.3 * lh))
    blocks = _step((np.cos(2 * np.pi * y / 2.6) + 0.7) / 0.3) * _step((y + 8.0) / 0.5)
    density += 0.08 * _step((x - spine_front) / 0.2) * _step((spine_front + 4.0 - x) / 0.2) * blocks
    density += 0.06 * _step((x - spine_front - 4.3) / 0.3) * _step((spine_front + 7.0 - x) / 0.5) * body
    density += 0.08 * _step((1.1 - np.abs(x - 0.3)) / 0.2) * _step((y - 0.5) / 0.5) * _step((0.7 * lh - y) / 0.5)
    ribs = np.clip(np.cos(2 * np.pi * (y - 0.3 * (x - chest.hilum_x)) / an.rib_spacing) - 0.3, 0.0, 1.0)
    density += 0.04 * ribs * _step((x - 0.45 * dp) / 0.5) * chest.thorax
