"""Parameters of a synthetic radiograph: the patient's anatomy and the study's findings.

Lengths are in centimetres. A study's findings are sampled once (every image of the study shows the
same disease); the anatomy is sampled per image from a per-subject baseline, so the views of one
patient look alike but differ in positioning, inspiration and exposure.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

# Labels the drawing can show. Pneumonia is a wording of Consolidation, not a separate drawing.
DRAWN_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
    "Pneumothorax",
    "Support Devices",
)
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")
SIDES: tuple[str, ...] = ("right", "left")
LOBES: tuple[str, ...] = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
)
SIZES: tuple[str, ...] = ("small", "moderate", "large")
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
CENTRAL_LINES: tuple[str, ...] = ("right internal jugular", "left subclavian")
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Subject:
    """What stays the same across a patient's studies."""

    sex: str  # "F" / "M"
    half_width: float  # half the inner thoracic width on a PA film
    lung_height: float  # lung apex to costophrenic angle
    heart_ratio: float  # baseline cardiothoracic ratio
    soft_tissue: float  # chest wall thickness beyond the ribs


@dataclass(frozen=True)
class Anatomy:
    """Geometry and exposure of one image (the drawing is fully determined by this + the findings)."""

    view: str
    width: int
    height: int
    spacing: float  # cm per pixel
    origin_x: float  # image position (cm from the left edge) of the midline / anterior chest wall
    origin_y: float  # image position (cm from the top edge) of the lung apices
    half_width: float
    lung_height: float
    depth: float  # anterior chest wall to the back of the vertebral bodies (lateral view)
    dome_right: float  # dome height above the costophrenic angle
    dome_left: float
    heart_ratio: float
    mediastinum: float  # half width of the superior mediastinum
    shift: float  # mediastinal offset from the thoracic midline (patient rotation)
    rib_spacing: float
    soft_tissue: float
    breast: float  # 0 for men
    exposure: float  # > 1 darker (over-exposed) film
    gamma: float
    noise: float
    markings: float  # strength of the lung vessel texture
    texture_seed: int

    @property
    def carina(self) -> float:
        """Depth of the carina below the apices."""
        return 0.33 * self.lung_height

    @property
    def trachea_x(self) -> float:
        """Horizontal position of the trachea (frontal views; it follows the mediastinum halfway)."""
        return 0.6 * self.shift


@dataclass(frozen=True)
class Cardiomegaly:
    """Heart enlargement: the cardiothoracic ratio drawn on a PA film."""

    severity: str
    ratio: float
    certain: bool


@dataclass(frozen=True)
class Effusion:
    """Pleural fluid at the lung base(s), under a meniscus."""

    sides: tuple[str, ...]
    size: str
    height: float  # fluid level above the costophrenic angle, as a fraction of lung height
    certain: bool


@dataclass(frozen=True)
class Pneumothorax:
    """Air between chest wall and lung, behind a visceral pleural line."""

    side: str
    size: str
    depth: float  # pleural line to chest wall at the apex, cm
    extent: float  # how far down the lateral wall the air reaches, fraction of lung height
    certain: bool


@dataclass(frozen=True)
class Consolidation:
    """A lobar airspace opacity."""

    lobe: str
    radius: float
    density: float
    pneumonia: bool  # reported as (possible) pneumonia
    shape_seed: int
    certain: bool


@dataclass(frozen=True)
class Edema:
    """Hazy bilateral perihilar opacity with indistinct vessels."""

    severity: str
    strength: float
    certain: bool


@dataclass(frozen=True)
class Atelectasis:
    """A plate-like band at the lung base(s)."""

    sides: tuple[str, ...]
    strength: float
    tilt: float  # cm the band rises towards the lateral wall
    certain: bool


@dataclass(frozen=True)
class Devices:
    """Support devices; ``None`` / False where absent."""

    et_tube: float | None  # tip distance above the carina, cm
    enteric_tube: bool
    central_line: str | None
    pacemaker: bool


@dataclass(frozen=True)
class Findings:
    """Everything abnormal in a study; ``None`` means absent."""

    cardiomegaly: Cardiomegaly | None = None
    effusion: Effusion | None = None
    pneumothorax: Pneumothorax | None = None
    consolidation: Consolidation | None = None
    edema: Edema | None = None
    atelectasis: Atelectasis | None = None
    devices: Devices | None = None

    @property
    def normal(self) -> bool:
        """True when nothing but support devices is present."""
        return not any(
            (self.cardiomegaly, self.effusion, self.pneumothorax, self.consolidation, self.edema, self.atelectasis)
        )


def sample_subject(rng: np.random.Generator) -> Subject:
    """A patient's body habitus."""
    sex = "F" if rng.random() < 0.48 else "M"
    scale = 0.93 if sex == "F" else 1.0
    return Subject(
        sex=sex,
        half_width=float(rng.normal(14.8, 0.8) * scale),
        lung_height=float(rng.normal(27.5, 1.5) * scale),
        heart_ratio=float(rng.uniform(0.38, 0.47)),
        soft_tissue=float(rng.uniform(1.0, 3.5)),
    )


def sample_findings(states: dict[str, bool], rng: np.random.Generator) -> Findings:
    """Concrete findings for ``states`` (label -> True if certain, False if uncertain; absent = not there).

    Uncertain findings are drawn faintly (borderline heart, blunting only, a tiny apical pneumothorax...).
    """
    unknown = set(states) - set(DRAWN_LABELS)
    if unknown:
        raise ValueError(f"cannot draw labels {sorted(unknown)}; drawable labels are {DRAWN_LABELS}")

    return Findings(  # keyword arguments are evaluated in order, so the random draws are too
        cardiomegaly=_cardiomegaly(states["Cardiomegaly"], rng) if "Cardiomegaly" in states else None,
        effusion=_effusion(states["Pleural Effusion"], rng) if "Pleural Effusion" in states else None,
        pneumothorax=_pneumothorax(states["Pneumothorax"], rng) if "Pneumothorax" in states else None,
        consolidation=_consolidation(states["Consolidation"], rng) if "Consolidation" in states else None,
        edema=_edema(states["Edema"], rng) if "Edema" in states else None,
        atelectasis=_atelectasis(states["Atelectasis"], rng) if "Atelectasis" in states else None,
        devices=_devices(rng) if "Support Devices" in states else None,
    )


def _cardiomegaly(certain: bool, rng: np.random.Generator) -> Cardiomegaly:
    if not certain:
        return Cardiomegaly("mild", float(rng.uniform(0.51, 0.55)), False)
    severity = str(rng.choice(SEVERITIES, p=[0.5, 0.35, 0.15]))
    low = {"mild": 0.55, "moderate": 0.6, "severe": 0.66}[severity]
    return Cardiomegaly(severity, float(rng.uniform(low, low + 0.04)), True)


def _effusion(certain: bool, rng: np.random.Generator) -> Effusion:
    sides = _sides(rng, bilateral=0.35 if certain else 0.1)
    if not certain:
        return Effusion(sides, "small", float(rng.uniform(0.07, 0.1)), False)
    size = str(rng.choice(SIZES, p=[0.45, 0.4, 0.15]))
    low, high = {"small": (0.13, 0.2), "moderate": (0.25, 0.38), "large": (0.45, 0.6)}[size]
    return Effusion(sides, size, float(rng.uniform(low, high)), True)


def _pneumothorax(certain: bool, rng: np.random.Generator) -> Pneumothorax:
    size = str(rng.choice(SIZES, p=[0.45, 0.35, 0.2])) if certain else "small"
    depth, extent = {"small": (1.8, 0.45), "moderate": (3.2, 0.8), "large": (5.0, 1.0)}[size] if certain else (1.1, 0.3)
    return Pneumothorax(str(rng.choice(SIDES)), size, float(depth * rng.uniform(0.85, 1.2)), extent, certain)


def _consolidation(certain: bool, rng: np.random.Generator) -> Consolidation:
    return Consolidation(
        lobe=str(rng.choice(LOBES, p=[0.15, 0.12, 0.28, 0.13, 0.1, 0.22])),
        radius=float(rng.uniform(5.0, 7.0) if certain else rng.uniform(2.6, 3.4)),
        density=float(rng.uniform(0.75, 0.95) if certain else rng.uniform(0.35, 0.45)),
        pneumonia=bool(rng.random() < 0.6),
        shape_seed=int(rng.integers(2**31)),
        certain=certain,
    )


def _edema(certain: bool, rng: np.random.Generator) -> Edema:
    if not certain:
        return Edema("mild", 0.28, False)
    severity = str(rng.choice(SEVERITIES, p=[0.5, 0.35, 0.15]))
    return Edema(severity, {"mild": 0.45, "moderate": 0.6, "severe": 0.75}[severity], True)


def _atelectasis(certain: bool, rng: np.random.Generator) -> Atelectasis:
    strength = float(rng.uniform(0.7, 0.9)) if certain else 0.4
    return Atelectasis(_sides(rng, bilateral=0.4), strength, float(rng.uniform(-1.0, 2.0)), certain)


def _sides(rng: np.random.Generator, *, bilateral: float) -> tuple[str, ...]:
    if rng.random() < bilateral:
        return SIDES
    return (str(rng.choice(SIDES)),)


def _devices(rng: np.random.Generator) -> Devices:
    kinds = rng.random(4) < (0.55, 0.5, 0.5, 0.2)
    if not kinds.any():
        kinds[int(rng.integers(4))] = True
    return Devices(
        et_tube=float(rng.uniform(2.5, 6.5)) if kinds[0] else None,
        enteric_tube=bool(kinds[1]),
        central_line=str(rng.choice(CENTRAL_LINES)) if kinds[2] else None,
        pacemaker=bool(kinds[3]),
    )


def _image_shape(view: str, image_size: int, rng: np.random.Generator) -> tuple[int, int]:
    """``(height, width)``: shorter side ``image_size``; portrait except some portable AP films."""
    ratio = rng.uniform(1.05, 1.25)
    longer = round(image_size * ratio)
    if view == "AP" and rng.random() < 0.35:
        return image_size, longer
    return longer, image_size


def sample_anatomy(subject: Subject, view: str, image_size: int, rng: np.random.Generator) -> Anatomy:
    """One image's geometry and exposure (AP: magnified heart, shallower inspiration)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    height, width = _image_shape(view, image_size, rng)
    spacing = 43.0 / max(height, width) * rng.uniform(0.97, 1.03)
    ap = view == "AP"
    half_width = subject.half_width * (1.05 if ap else 1.0) * rng.uniform(0.97, 1.03)
    lung_height = subject.lung_height * (rng.uniform(0.84, 0.95) if ap else rng.uniform(0.95, 1.05))
    field_h = height * spacing
    top_room = field_h - lung_height - 4.0  # keep the costophrenic angles on the film
    if view == "LATERAL":
        depth = half_width * rng.uniform(1.25, 1.45)
        origin_x = (width * spacing - depth) / 2 - rng.uniform(0.0, 1.5)
    else:
        depth = 0.0
        origin_x = width * spacing / 2 + rng.normal(0, 0.8)
    dome = rng.uniform(2.5, 4.5) * (0.8 if ap else 1.0)
    return Anatomy(
        view=view,
        width=width,
        height=height,
        spacing=float(spacing),
        origin_x=float(origin_x),
        origin_y=float(np.clip(rng.uniform(3.0, 7.0), 1.5, max(top_room, 1.5))),
        half_width=float(half_width),
        lung_height=float(lung_height),
        depth=float(depth),
        dome_right=float(dome + rng.uniform(0.8, 2.0)),
        dome_left=float(dome),
        heart_ratio=float(subject.heart_ratio + (0.035 if ap else 0.0)),
        mediastinum=float(rng.uniform(2.4, 3.4) * (1.1 if ap else 1.0)),
        shift=float(rng.normal(0, 0.5)),
        rib_spacing=float(rng.uniform(2.1, 2.6)),
        soft_tissue=subject.soft_tissue,
        breast=float(rng.uniform(0.5, 1.0)) if subject.sex == "F" else 0.0,
        exposure=float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.2)),
        noise=float(rng.uniform(0.006, 0.02)),
        markings=float(rng.uniform(0.7, 1.2)),
        texture_seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class DeviceRoutes:
    """Where each device runs on one image: polylines in cm, and the pacemaker can's centre."""

    paths: dict[str, list[Points]]  # "et_tube" / "enteric_tube" / "central_line" / "pacemaker" -> wires
    generator: tuple[float, float] | None


def device_routes(an: Anatomy, devices: Devices, heart_ratio: float) -> DeviceRoutes:
    """Tube tips where the report says they are (the ET tube tip ``et_tube`` cm above the carina)."""
    if an.view == "LATERAL":
        return _lateral_routes(an, devices)
    t, lh, shift, m = an.half_width, an.lung_height, an.shift, an.mediastinum
    heart_w, svc = heart_ratio * 2.0 * t, (shift - 1.3, 0.3 * lh)
    paths: dict[str, list[Points]] = {}
    if devices.et_tube is not None:
        paths["et_tube"] = [_bezier((an.trachea_x, -12.0), (an.trachea_x + 0.1, an.carina - devices.et_tube))]
    if devices.enteric_tube:
        stomach = lh - 0.4 * an.dome_left + 2.5
        gullet = (an.trachea_x + 0.4, -12.0), (shift + 1.0, lh - an.dome_left)
        paths["enteric_tube"] = [_bezier(*gullet, (0.5 * t, stomach), (0.3 * t, stomach - 1.0))]
    if devices.central_line == "right internal jugular":
        paths["central_line"] = [_bezier((-(m + 3.5), -8.0), (-(m + 1.5), -1.0), svc)]
    elif devices.central_line == "left subclavian":
        paths["central_line"] = [_bezier((t + 1.5, -1.0), (m + 1.5, -0.8), (shift, 0.1 * lh), svc)]
    generator = None
    if devices.pacemaker:
        generator = (0.62 * t, -0.3)
        leads = (shift - 0.25 * heart_w, 0.62 * lh), (shift + 0.3 * heart_w, 0.88 * lh)
        paths["pacemaker"] = [_bezier(generator, (m + 1.0, -0.5), svc, tip) for tip in leads]
    return DeviceRoutes(paths, generator)


def _lateral_routes(an: Anatomy, devices: Devices) -> DeviceRoutes:
    lh, dp, carina = an.lung_height, an.depth, an.carina
    paths: dict[str, list[Points]] = {}
    if devices.et_tube is not None:
        tip = carina - devices.et_tube
        paths["et_tube"] = [_bezier((0.44 * dp, -12.0), (0.45 * dp + 0.05 * dp * (tip + 8.0) / (carina + 8.0), tip))]
    if devices.enteric_tube:
        stomach = (0.35 * dp, lh - an.dome_left + 3.0)
        paths["enteric_tube"] = [_bezier((0.55 * dp, -12.0), (dp - 6.0, 0.5 * lh), (dp - 5.0, lh), stomach)]
    if devices.central_line:
        paths["central_line"] = [_bezier((0.6 * dp, -8.0), (0.45 * dp, -1.0), (0.38 * dp, 0.3 * lh))]
    generator = None
    if devices.pacemaker:
        generator = (-1.0, 0.0)
        tips = (0.22 * dp, 0.65 * lh), (0.2 * dp, 0.88 * lh)
        paths["pacemaker"] = [_bezier(generator, (0.35 * dp, 0.2 * lh), tip) for tip in tips]
    return DeviceRoutes(paths, generator)


def _bezier(*points: tuple[float, float], n: int = 24) -> Points:
    """Points along the Bezier curve with these control points (de Casteljau)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    layer = [np.asarray(p, dtype=np.float64) for p in points]
    while len(layer) > 1:
        layer = [a * (1 - t) + b * t for a, b in pairwise(layer)]
    return [(float(px), float(py)) for px, py in layer[0]]
