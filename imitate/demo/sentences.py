"""The reports' sentences: each drawn finding in detail (FINDINGS) and in few words (IMPRESSION), the
support devices, the pertinent negatives, and the impression they make up.
"""

from __future__ import annotations

import numpy as np

from imitate.demo.anatomy import (
    Atelectasis,
    Cardiomegaly,
    Consolidation,
    Devices,
    Edema,
    Effusion,
    Findings,
    Pneumothorax,
)
from imitate.demo.phrases import BONES, DEVICES_OK, HEART_NORMAL, LUNGS_CLEAR, NORMAL, Phrase, choose, pick


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def describe(f: Findings, rng: np.random.Generator) -> list[tuple[Phrase, Phrase]]:
    """(detailed FINDINGS sentence, short IMPRESSION sentence) per abnormality, most urgent first."""
    out = []
    if f.pneumothorax:
        out.append(_pneumothorax(f.pneumothorax))
    if f.consolidation:
        out.append(_consolidation(f.consolidation, rng))
    if f.edema:
        out.append(_edema(f.edema, rng))
    if f.cardiomegaly:
        out.append(_cardiomegaly(f.cardiomegaly, rng))
    if f.effusion:
        out.append(_effusion(f.effusion, rng))
    if f.atelectasis:
        out.append(_atelectasis(f.atelectasis, rng))
    return out


def _pneumothorax(p: Pneumothorax) -> tuple[Phrase, Phrase]:
    if not p.certain:
        hedge = {"Pneumothorax": -1.0}
        return (
            Phrase(f"A tiny {p.side} apical pneumothorax cannot be excluded.", hedge),
            Phrase(f"Possible tiny {p.side} apical pneumothorax.", hedge),
        )
    where = "apical " if p.size == "small" else ""
    detail = f"There is a {p.size} {p.side} {where}pneumothorax, the pleural line about {p.depth:.1f} cm from the apex."
    return Phrase(detail, {"Pneumothorax": 1.0}), Phrase(
        f"{_cap(p.size)} {p.side} pneumothorax.", {"Pneumothorax": 1.0}
    )


def _consolidation(k: Consolidation, rng: np.random.Generator) -> tuple[Phrase, Phrase]:
    lobar = "lingular" if k.lobe == "lingula" else k.lobe
    if not k.certain:
        return (
            Phrase(
                f"Subtle opacity in the {k.lobe} could reflect early consolidation.",
                {"Consolidation": -1.0, "Lung Opacity": 1.0},
            ),
            Phrase(f"Possible early {lobar} consolidation.", {"Consolidation": -1.0}),
        )
    options = [
        f"There is consolidation in the {k.lobe}.",
        f"Focal airspace consolidation is seen in the {k.lobe}.",
        f"A dense {k.lobe} opacity is compatible with consolidation.",
    ]
    if "upper" not in k.lobe:  # the silhouette sign
        side = "right" if k.lobe.startswith("right") else "left"
        border = "heart border" if k.lobe in ("right middle lobe", "lingula") else "hemidiaphragm"
        options.append(f"Consolidation in the {k.lobe} obscures the {side} {border}.")
    detail = Phrase(pick(rng, options), {"Consolidation": 1.0, "Lung Opacity": 1.0})
    if not k.pneumonia:
        return detail, Phrase(f"{_cap(lobar)} consolidation.", {"Consolidation": 1.0})
    concerning = rng.random() < 0.5
    wording = "concerning for" if concerning else "compatible with"
    labels = {"Consolidation": 1.0, "Pneumonia": -1.0 if concerning else 1.0}
    return detail, Phrase(f"{_cap(lobar)} consolidation {wording} pneumonia.", labels)


def _edema(e: Edema, rng: np.random.Generator) -> tuple[Phrase, Phrase]:
    if not e.certain:
        hedge = {"Edema": -1.0}
        return Phrase("Mild perihilar haziness may represent mild pulmonary edema.", hedge), Phrase(
            "Possible mild pulmonary edema.", hedge
        )
    detail = pick(
        rng,
        (
            f"There is {e.severity} pulmonary edema with perihilar haziness.",
            f"Perihilar haziness and indistinct vessels are consistent with {e.severity} pulmonary edema.",
        ),
    )
    return Phrase(detail, {"Edema": 1.0}), Phrase(f"{_cap(e.severity)} pulmonary edema.", {"Edema": 1.0})


def _cardiomegaly(c: Cardiomegaly, rng: np.random.Generator) -> tuple[Phrase, Phrase]:
    if not c.certain:
        hedge = {"Cardiomegaly": -1.0}
        return Phrase("The cardiac silhouette is possibly mildly enlarged.", hedge), Phrase(
            "Possible mild cardiomegaly.", hedge
        )
    adverb = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}[c.severity]
    detail = pick(rng, (f"The heart is {adverb} enlarged.", f"There is {c.severity} cardiomegaly."))
    return Phrase(detail, {"Cardiomegaly": 1.0}), Phrase(f"{_cap(c.severity)} cardiomegaly.", {"Cardiomegaly": 1.0})


def _effusion(e: Effusion, rng: np.random.Generator) -> tuple[Phrase, Phrase]:
    both = len(e.sides) == 2
    side, s = ("bilateral", "s") if both else (e.sides[0], "")
    angles = "both costophrenic angles" if both else f"the {side} costophrenic angle"
    if not e.certain:
        hedge = {"Pleural Effusion": -1.0}
        return (
            Phrase(f"Blunting of {angles} may reflect a trace effusion{s}.", hedge),
            Phrase(f"Possible trace {side} pleural effusion{s}.", hedge),
        )
    short = f"{_cap(e.size)} {side} pleural effusion{s}."
    if e.size == "large":
        domes = "both hemidiaphragms" if both else f"the {side} hemidiaphragm"
        detail = f"{_cap(e.size)} {side} pleural effusion{s} with a meniscus obscure{'' if both else 's'} {domes}."
    elif rng.random() < 0.5:
        detail = f"Blunting of {angles} with a meniscus is consistent with {e.size} pleural effusion{s}."
    else:
        detail = f"There {'are' if both else 'is a'} {e.size} {side} pleural effusion{s}."
    return Phrase(detail, {"Pleural Effusion": 1.0}), Phrase(short, {"Pleural Effusion": 1.0})


def _atelectasis(a: Atelectasis, rng: np.random.Generator) -> tuple[Phrase, Phrase]:
    where = "bibasilar" if len(a.sides) == 2 else f"{a.sides[0]} basilar"
    if not a.certain:
        hedge = {"Atelectasis": -1.0, "Lung Opacity": 1.0}
        return Phrase(f"Minimal {where} opacity likely reflects atelectasis.", hedge), Phrase(
            f"{_cap(where)} opacity, likely atelectasis.", hedge
        )
    bases = "both lung bases" if len(a.sides) == 2 else f"the {a.sides[0]} lung base"
    detail = pick(rng, (f"{_cap(where)} linear atelectasis.", f"Plate-like atelectasis is seen at the {bases}."))
    return Phrase(detail, {"Atelectasis": 1.0}), Phrase(f"{_cap(where)} atelectasis.", {"Atelectasis": 1.0})


def device_sentences(d: Devices | None, rng: np.random.Generator) -> list[Phrase]:
    if d is None:
        return []
    sd, out = {"Support Devices": 1.0}, []
    if d.et_tube is not None:
        out.append(f"Endotracheal tube terminates approximately {round(d.et_tube * 2) / 2:.1f} cm above the carina.")
    if d.enteric_tube:
        out.append(
            pick(
                rng,
                (
                    "An enteric tube courses below the diaphragm into the stomach.",
                    "A nasogastric tube extends into the stomach.",
                ),
            )
        )
    if d.central_line:
        out.append(f"A {d.central_line} central venous catheter terminates in the mid SVC.")
    if d.pacemaker:
        out.append("A left chest wall pacemaker is present with leads in the right atrium and right ventricle.")
    return [Phrase(text, sd) for text in out]


def _pleural_negation(f: Findings, rng: np.random.Generator) -> list[Phrase]:
    if not f.effusion and not f.pneumothorax:
        text = pick(
            rng, ("No pleural effusion or pneumothorax is seen.", "There is no pleural effusion or pneumothorax.")
        )
        return [Phrase(text, {"Pleural Effusion": 0.0, "Pneumothorax": 0.0})]
    if not f.pneumothorax:
        return [Phrase("No pneumothorax.", {"Pneumothorax": 0.0})]
    if not f.effusion:
        return [Phrase("No pleural effusion.", {"Pleural Effusion": 0.0})]
    return []


def negations(f: Findings, rng: np.random.Generator) -> list[Phrase]:
    """What a radiologist states as absent in the FINDINGS section."""
    out = _pleural_negation(f, rng)
    if not (f.consolidation or f.edema or f.atelectasis):
        out.append(choose(rng, LUNGS_CLEAR))
    if not f.cardiomegaly:
        out.append(choose(rng, HEART_NORMAL))
    elif not f.edema and rng.random() < 0.6:
        out.append(Phrase("No pulmonary edema.", {"Edema": 0.0}))
    if rng.random() < 0.4:
        out.append(Phrase(pick(rng, BONES)))
    return out


def impression(f: Findings, short: list[Phrase], rng: np.random.Generator) -> list[Phrase]:
    """The IMPRESSION: devices, then every finding in few words, sometimes a pertinent negative."""
    out = [Phrase(pick(rng, DEVICES_OK), {"Support Devices": 1.0})] if f.devices else []
    if f.normal:
        return [*out, choose(rng, NORMAL)]
    return out + short + (_pleural_negation(f, rng) if rng.random() < 0.4 else [])
