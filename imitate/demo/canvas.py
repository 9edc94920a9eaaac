"""The drawing surface both views share: the pixel grid in cm, its texture generator, the lesions
collected while drawing, the density layers the findings act on, and the soft shapes they are made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from imitate.demo.anatomy import Anatomy, DeviceRoutes, Edema, Points


@dataclass(frozen=True)
class Lesion:
    """Pixel geometry of one drawn finding; ``box`` is ``(x0, y0, x1, y1)`` with exclusive ends."""

    label: str  # the CheXpert label it illustrates
    kind: str  # e.g. "effusion_left", "pneumothorax", "heart", "et_tube"
    mask: np.ndarray  # bool (height, width)
    box: tuple[int, int, int, int]
    certain: bool


@dataclass(frozen=True)
class Window:
    """A rectangle of the canvas: its coordinates and where it sits in the full image."""

    x: np.ndarray
    y: np.ndarray
    at: tuple[slice, slice]


class Canvas:
    """The pixel grid in cm, the image's texture generator and the lesions collected while drawing."""

    def __init__(self, an: Anatomy) -> None:
        self.an = an
        self.x = ((np.arange(an.width, dtype=np.float32) + 0.5) * an.spacing - an.origin_x)[None, :]
        self.y = ((np.arange(an.height, dtype=np.float32) + 0.5) * an.spacing - an.origin_y)[:, None]
        self.rng = np.random.default_rng(an.texture_seed)
        self.lesions: list[Lesion] = []

    def window(self, left: float, right: float, top: float, bottom: float) -> Window:
        """The part of the canvas inside these cm bounds (possibly empty): small features are drawn there."""
        xs, ys = self.x[0], self.y[:, 0]
        cols = slice(int(np.searchsorted(xs, left)), int(np.searchsorted(xs, right)))
        rows = slice(int(np.searchsorted(ys, top)), int(np.searchsorted(ys, bottom)))
        return Window(self.x[:, cols], self.y[rows], (rows, cols))

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
        return np.exp(-((table[index] / width) ** 2)) * np.exp(-r / np.float32(reach)) * step(r - 1.0)

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


def step(z: np.ndarray | float) -> np.ndarray:
    """Soft edge: a 0 -> 1 ramp as z goes from -1 to 1."""
    return np.clip(np.asarray(z, dtype=np.float32) * 0.5 + 0.5, 0.0, 1.0)


def _periodic_noise(rng: np.random.Generator, bins: int) -> np.ndarray:
    """Smooth periodic 1-D noise (three octaves) sampled at ``bins`` points, float32."""
    out = np.zeros(bins)
    for knots, weight in ((16, 1.0), (32, 0.6), (64, 0.3)):
        values = rng.standard_normal(knots)
        out += weight * np.interp(np.arange(bins) * knots / bins, np.arange(knots + 1), np.append(values, values[0]))
    return out.astype(np.float32)


def _segment_distance(c: Canvas | Window, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    ax, ay, bx, by = (np.float32(v) for v in (*a, *b))
    dx, dy = bx - ax, by - ay
    t = np.clip(((c.x - ax) * dx + (c.y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(c.x - ax - t * dx, c.y - ay - t * dy)


def blob(c: Canvas, centre: tuple[float, float], radius: float, seed: int) -> np.ndarray:
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
    out[w.at] = step((1.0 - rho + 0.14 * wobble) / 0.25)
    return out


@dataclass
class Layers:
    """The density map being built and the two fields the findings act on before they join it."""

    density: np.ndarray  # soft tissue so far
    air: np.ndarray  # aeration of the lungs, subtracted from the density once the findings are drawn
    vessels: np.ndarray  # lung markings, added to the density after the findings


def draw_edema(c: Canvas, edema: Edema, haze: np.ndarray, lung: np.ndarray, layers: Layers) -> None:
    """Perihilar haze: fluid replaces air and blurs the vessels."""
    layers.air *= 1.0 - edema.strength * haze
    layers.vessels *= 1.0 - 0.6 * edema.strength * haze
    c.add_lesion("Edema", "edema", haze * lung, edema.certain)


def band(w: Window, ends: tuple[tuple[float, float], tuple[float, float]], half: float, edge: float) -> np.ndarray:
    """A soft band of half-thickness ``half`` cm along the segment ``ends``, within ``w``."""
    return step((half - _segment_distance(w, *ends)) / edge)
