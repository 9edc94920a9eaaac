"""Foreign objects on a drawn film (coins, buttons, clips, cards, keys, pendants), shaped as Object-CXR marks them.

Object-CXR outlines each object with one closed shape: an axis-aligned rectangle, an ellipse given by its
bounding box, or a polygon. The demo draws exactly those shapes at integer pixel coordinates (the real
file writes integers), so an annotation is the drawn geometry itself, not a fit to it.

Coordinates are continuous pixels: pixel column ``i`` covers ``[i, i + 1)``, so a rectangle with corners
``(x0, y0)`` and ``(x1, y1)`` covers columns ``x0 .. x1 - 1`` and its box is ``[x0, y0, x1, y1]``. Edges are
anti-aliased by drawing at 8x and averaging. Objects are dense: an object stopping a share ``density`` of
the radiation turns a film value ``v`` into ``1 - (1 - v) * (1 - density * coverage)``, so it is brighter
than whatever lies under it on a MONOCHROME2 film.

Placement: :func:`imitate.demo.film.draw_film` does not expose its anatomy, so "over the chest" is the
part of the film where the lung fields of its frontal views lie (:data:`CHEST_WINDOW`); most objects are
centred there, the rest anywhere on the film (a necklace at the neck, a buckle at the belly). Objects keep
a gap between their boxes, so none hides another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("rectangle", "ellipse", "polygon")
# Where object centres fall "over the chest": (left, right, top, bottom) as fractions of the film.
CHEST_WINDOW: tuple[float, float, float, float] = (0.2, 0.8, 0.15, 0.72)
_OVER_CHEST = 0.85  # share of objects centred in the chest window
_SUPERSAMPLE = 8
_PLACEMENT_TRIES = 30
_MIN_SIDE = 4  # pixels: smaller objects vanish when a small film is shrunk


@dataclass(frozen=True)
class _Kind:
    shape: str
    size: tuple[float, float]  # longer side, as a share of the film's shorter side
    aspect: tuple[float, float]  # shorter side / longer side
    density: tuple[float, float]


_KINDS: dict[str, _Kind] = {
    "coin": _Kind("ellipse", (0.06, 0.10), (0.9, 1.0), (0.85, 0.95)),
    "button": _Kind("ellipse", (0.06, 0.10), (0.85, 1.0), (0.6, 0.8)),  # with two or four holes
    "clip": _Kind("rectangle", (0.08, 0.15), (0.25, 0.4), (0.85, 0.95)),
    "card": _Kind("rectangle", (0.10, 0.15), (0.6, 0.75), (0.5, 0.65)),
    "key": _Kind("polygon", (0.09, 0.15), (0.35, 0.55), (0.85, 0.95)),
    "pendant": _Kind("polygon", (0.06, 0.12), (0.75, 1.0), (0.8, 0.95)),
}
KINDS: tuple[str, ...] = tuple(_KINDS)


@dataclass(frozen=True)
class ForeignObject:
    """One object: its shape's integer points, the share of radiation it stops and any holes through it.

    ``points`` are the top-left and bottom-right corners of a rectangle or of an ellipse's bounding box,
    or a polygon's vertices in order. ``holes`` are circles ``(x, y, radius)`` in pixels (a button's).
    """

    kind: str
    shape: str
    points: tuple[tuple[int, int], ...]
    density: float
    holes: tuple[tuple[float, float, float], ...] = ()

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the extent of the points."""
        xs, ys = [x for x, _ in self.points], [y for _, y in self.points]
        return min(xs), min(ys), max(xs), max(ys)


def sample_objects(height: int, width: int, rng: np.random.Generator) -> list[ForeignObject]:
    """One to three objects of random kinds on a ``height`` x ``width`` film, inside it and apart.

    Sizes are 6-15 % of the film's shorter side (at least 5 by 4 pixels), so they stay visible when
    the film is shrunk. The first object is always placed; a later one is dropped if no free spot is
    found in a few tries.
    """
    gap = max(2, round(0.03 * min(height, width)))
    objects: list[ForeignObject] = []
    for _ in range(int(rng.choice((1, 2, 3), p=(0.5, 0.3, 0.2)))):
        kind = str(rng.choice(KINDS))
        for _ in range(_PLACEMENT_TRIES):
            candidate = _sample_object(kind, height, width, rng)
            if not any(_near(candidate.box, other.box, gap) for other in objects):
                objects.append(candidate)
                break
    return objects


def draw_objects(pixels: np.ndarray, objects: Sequence[ForeignObject]) -> np.ndarray:
    """A copy of ``pixels`` (float in [0, 1], bright = dense) with ``objects`` drawn on it."""
    out = np.array(pixels, dtype=np.float32)
    height, width = out.shape
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(f"{obj.kind} box {obj.box} is not inside the {height}x{width} film")
        under = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = 1.0 - (1.0 - under) * (1.0 - np.float32(obj.density) * coverage(obj))
    return out


def coverage(obj: ForeignObject) -> np.ndarray:
    """The share (0..1, anti-aliased) of each pixel of ``obj.box`` that the object covers."""
    x0, y0, x1, y1 = obj.box
    k = _SUPERSAMPLE
    canvas = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k))
    pen = ImageDraw.Draw(canvas)
    if obj.shape == "polygon":
        # Pillow puts integer coordinates at sub-pixel centres; ours are pixel edges
        pen.polygon([((x - x0) * k - 0.5, (y - y0) * k - 0.5) for x, y in obj.points], fill=255)
    else:
        (pen.rectangle if obj.shape == "rectangle" else pen.ellipse)(_sub_pixels(0, 0, x1 - x0, y1 - y0), fill=255)
    for x, y, radius in obj.holes:
        pen.ellipse(_sub_pixels(x - x0 - radius, y - y0 - radius, x - x0 + radius, y - y0 + radius), fill=0)
    return np.asarray(canvas.reduce(k), dtype=np.float32) / 255.0


def _sub_pixels(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """Pillow's bounding box (ends included) of the sub-pixels covering ``[x0, x1) x [y0, y1)``."""
    k = _SUPERSAMPLE
    return [x0 * k, y0 * k, x1 * k - 1, y1 * k - 1]


def _sample_object(kind: str, height: int, width: int, rng: np.random.Generator) -> ForeignObject:
    """An object of ``kind`` at a random place (mostly over the chest), wholly inside the film."""
    spec = _KINDS[kind]
    longer = max(_MIN_SIDE + 1, round(rng.uniform(*spec.size) * min(height, width)))
    aspect = rng.uniform(*spec.aspect)
    density = float(rng.uniform(*spec.density))
    if rng.random() < _OVER_CHEST:
        left, right, top, bottom = CHEST_WINDOW
        cx, cy = rng.uniform(left, right) * width, rng.uniform(top, bottom) * height
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    if spec.shape == "polygon":
        offsets = _polygon_offsets(longer, aspect, rng)
    else:
        shorter = max(_MIN_SIDE, round(longer * aspect))
        w, h = (longer, shorter) if rng.random() < 0.5 else (shorter, longer)
        offsets = np.array([[-(w // 2), -(h // 2)], [w - w // 2, h - h // 2]])
    # shift the whole shape, if needed, so that it lies inside the film
    low, high = offsets.min(axis=0), offsets.max(axis=0)
    x = int(np.clip(round(cx), -low[0], width - high[0]))
    y = int(np.clip(round(cy), -low[1], height - high[1]))
    points = tuple((int(x + dx), int(y + dy)) for dx, dy in offsets)
    holes = _button_holes(points, rng) if kind == "button" else ()
    return ForeignObject(kind, spec.shape, points, density, holes)


def _polygon_offsets(longer: int, aspect: float, rng: np.random.Generator) -> np.ndarray:
    """Integer vertices (4-7, relative to the centre) of an irregular outline ``longer`` pixels across.

    Vertices go round the centre at jittered angles, so the outline does not cross itself. The outline,
    ``aspect`` times as wide as long, is turned at random, then scaled so that the longer side of its
    box is ``longer``. One that rounding collapses (fewer than four points, a side under 3 pixels) is drawn
    again.
    """
    while True:
        n = int(rng.integers(4, 8))
        step = 2 * np.pi / n
        angles = rng.uniform(0, 2 * np.pi) + step * (np.arange(n) + rng.uniform(-0.3, 0.3, n))
        radii = rng.uniform(0.7, 1.0, n)
        turn = rng.uniform(0, np.pi)
        u, v = radii * np.cos(angles), aspect * radii * np.sin(angles)
        outline = np.stack([u * np.cos(turn) - v * np.sin(turn), u * np.sin(turn) + v * np.cos(turn)], axis=1)
        outline *= longer / np.ptp(outline, axis=0).max()
        points = np.rint(outline - outline.mean(axis=0)).astype(int)
        points = points[np.any(points != np.roll(points, 1, axis=0), axis=1)]
        if len(points) >= 4 and np.ptp(points, axis=0).min() >= _MIN_SIDE - 1:
            return points


def _button_holes(
    points: tuple[tuple[int, int], ...], rng: np.random.Generator
) -> tuple[tuple[float, float, float], ...]:
    """Two or four thread holes around the middle of a button whose bounding-box corners are ``points``."""
    (x0, y0), (x1, y1) = points
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0)
    spread, radius = 0.17 * size, 0.08 * size
    offsets = [(-1, 0), (1, 0)] if rng.random() < 0.5 else [(-1, -1), (1, -1), (-1, 1), (1, 1)]
    return tuple((cx + dx * spread, cy + dy * spread, radius) for dx, dy in offsets)


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Whether boxes ``a`` and ``b`` come closer than ``gap`` pixels."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap
