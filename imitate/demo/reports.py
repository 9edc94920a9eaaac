"""Free-text reports that describe exactly what is drawn, formatted like MIMIC-CXR report files.

Every sentence carries the CheXpert labels it asserts (1.0 positive, -1.0 hedged, 0.0 negated). The
study's label row is read off the conclusion (the IMPRESSION), as the MIMIC-CXR CheXpert labels were;
the impression names every drawn finding, hedged when it is uncertain, so no positive is lost.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
WIDTH = 79  # longest line, the leading space included
_FINAL_REPORT = " " * 33 + "FINAL REPORT"
_PRIORITY = {1.0: 2, -1.0: 1, 0.0: 0}  # CheXpert aggregation: positive > uncertain > negative


@dataclass(frozen=True)
class Phrase:
    """One sentence and the CheXpert labels it asserts."""

    text: str
    labels: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Exam:
    """What the report header needs to know about the study."""

    procedure: str  # e.g. "CHEST (PA AND LAT)"
    portable: bool
    sex: str
    has_prior: bool


@dataclass(frozen=True)
class Report:
    """A report file's text, the study's CheXpert label row and whether it has a FINDINGS section."""

    text: str
    labels: dict[str, float | None]  # the 14 CheXpert columns; None = not mentioned
    has_findings: bool


def write_report(findings: Findings, exam: Exam, rng: np.random.Generator) -> Report:
    """Compose a MIMIC-style report of ``findings`` and its CheXpert label row.

    About a fifth have no FINDINGS section (the impression then carries the detail), 5 % put the
    IMPRESSION first, a few open with a WET READ or an ADDENDUM block, some end with a NOTIFICATION.
    """
    described = _describe(findings, rng)
    body = [*_device_sentences(findings.devices, rng), *(detail for detail, _ in described)]
    body += _negations(findings, rng)
    conclusion = _conclusion(findings, [short for _, short in described], rng)
    impression_only = rng.random() < 0.2
    if impression_only:
        conclusion = [p for p in body if p.labels or rng.random() < 0.3] or conclusion

    header = "INDICATION" if rng.random() < 0.85 else "HISTORY"
    technique = _TECHNIQUE_PORTABLE if exam.portable else _TECHNIQUE_PA_LAT
    sections = [
        ("EXAMINATION", exam.procedure),
        (header, _indication(exam, rng)),
        ("TECHNIQUE", _pick(rng, technique)),
        ("COMPARISON", _pick(rng, _COMPARISON_PRIOR if exam.has_prior else _COMPARISON_NONE)),
    ]
    blocks = [("IMPRESSION", _paragraph(conclusion, numbered=len(conclusion) > 1 and rng.random() < 0.2))]
    if not impression_only:
        blocks.insert(0 if rng.random() < 0.95 else 1, ("FINDINGS", _paragraph(body, numbered=False)))
    notify = findings.pneumothorax and findings.pneumothorax.certain and rng.random() < 0.5
    closing = [("NOTIFICATION", _pick(rng, _NOTIFICATION))] if notify else []
    text = _format(_preamble_block(conclusion, rng), sections, blocks, closing)
    return Report(text, conclusion_labels(conclusion), not impression_only)


def conclusion_labels(phrases: Sequence[Phrase]) -> dict[str, float | None]:
    """CheXpert-style row: the strongest mention per label; No Finding when only devices are found."""
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    for phrase in phrases:
        for label, value in phrase.labels.items():
            current = labels[label]
            if current is None or _PRIORITY[value] > _PRIORITY[current]:
                labels[label] = value
    found = any(v in (1.0, -1.0) for k, v in labels.items() if k not in ("No Finding", "Support Devices"))
    labels["No Finding"] = None if found else 1.0
    return labels


# ---- layout --------------------------------------------------------------------------------------


def _wrap(text: str) -> list[str]:
    return [" " + line for line in textwrap.wrap(text, WIDTH - 1, break_long_words=False, break_on_hyphens=False)]


def _paragraph(phrases: Sequence[Phrase], *, numbered: bool) -> list[str]:
    """The lines of a block: sentences joined by two spaces, or one numbered item per sentence."""
    if numbered:
        return [line for i, p in enumerate(phrases, 1) for line in _wrap(f"{i}.  {p.text}")]
    return _wrap("  ".join(p.text for p in phrases))


def _format(
    preamble: Sequence[tuple[str, str]],
    sections: Sequence[tuple[str, str]],
    blocks: Sequence[tuple[str, list[str]]],
    closing: Sequence[tuple[str, str]],
) -> str:
    """MIMIC layout: FINAL REPORT centred, one leading space per line, a lone space as the blank line.

    ``sections`` and ``closing`` are inline (``NAME:  text``); ``blocks`` have the header on its own line.
    """
    lines = [_FINAL_REPORT]
    for name, text in preamble:
        lines += [*_wrap(f"{name}:  {text}"), " " + "_" * (WIDTH - 1), " "]
    for name, text in sections:
        lines += [*_wrap(f"{name}:  {text}"), " "]
    for name, paragraph in blocks:
        lines += [f" {name}: ", " ", *paragraph, " "]
    for name, text in closing:
        lines += [*_wrap(f"{name}:  {text}"), " "]
    return "\n".join(lines[:-1]) + "\n"


def _preamble_block(conclusion: Sequence[Phrase], rng: np.random.Generator) -> list[tuple[str, str]]:
    draw = rng.random()
    if draw < 0.04:
        clock = f"{int(rng.integers(1, 13))}:{int(rng.integers(60)):02d} {_pick(rng, ('AM', 'PM'))}"
        return [("WET READ", f"___ ___ {clock}  " + "  ".join(p.text for p in conclusion[:2]))]
    if draw < 0.07:
        return [("ADDENDUM", _pick(rng, _ADDENDUM))]
    return []


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


# ---- header sections -----------------------------------------------------------------------------

_TECHNIQUE_PA_LAT = (
    "Chest PA and lateral",
    "PA and lateral views of the chest.",
    "Frontal and lateral chest radiographs.",
)
_TECHNIQUE_PORTABLE = (
    "Portable AP chest radiograph.",
    "Single portable frontal view of the chest.",
    "AP portable chest",
)
_COMPARISON_NONE = ("None.", "___", "None available.")
_COMPARISON_PRIOR = (
    "___",
    "Chest radiograph from ___.",
    "Prior chest radiographs ___ and ___.",
    "Multiple prior studies.",
)
_HISTORIES = ("cough", "shortness of breath", "fever", "chest pain", "hypoxia", "fall", "sepsis", "CHF", "weakness")
_QUESTIONS = ("eval for pneumonia", "?pneumonia", "eval for effusion", "r/o pneumothorax", "eval for acute process")
_NOTIFICATION = (
    "The findings were discussed with ___, M.D. by ___, M.D. on the telephone on ___ at ___, 5 minutes after "
    "discovery of the findings.",
    "Findings were communicated to the referring clinician by telephone at the time of the study.",
)
_ADDENDUM = (
    "Comparison was made with the prior study from ___, which does not change the impression.",
    "The findings were reviewed with the attending radiologist, Dr. ___, who agrees.",
)


def _indication(exam: Exam, rng: np.random.Generator) -> str:
    person = _pick(rng, ("woman", "female") if exam.sex == "F" else ("man", "male"))
    history, question = _pick(rng, _HISTORIES), _pick(rng, _QUESTIONS)
    if rng.random() < 0.5:
        return f"___ year old {person} with {history}  // {question}"
    return f"___-year-old {person} with {history}, {question}."


# ---- sentences -----------------------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _describe(f: Findings, rng: np.random.Generator) -> list[tuple[Phrase, Phrase]]:
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
    detail = Phrase(_pick(rng, options), {"Consolidation": 1.0, "Lung Opacity": 1.0})
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
    detail = _pick(
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
    detail = _pick(rng, (f"The heart is {adverb} enlarged.", f"There is {c.severity} cardiomegaly."))
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
    detail = _pick(rng, (f"{_cap(where)} linear atelectasis.", f"Plate-like atelectasis is seen at the {bases}."))
    return Phrase(detail, {"Atelectasis": 1.0}), Phrase(f"{_cap(where)} atelectasis.", {"Atelectasis": 1.0})


def _device_sentences(d: Devices | None, rng: np.random.Generator) -> list[Phrase]:
    if d is None:
        return []
    sd, out = {"Support Devices": 1.0}, []
    if d.et_tube is not None:
        out.append(f"Endotracheal tube terminates approximately {round(d.et_tube * 2) / 2:.1f} cm above the carina.")
    if d.enteric_tube:
        out.append(
            _pick(
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


_LUNGS_CLEAR = (("The lungs are clear.", {}), ("There is no focal consolidation.", {"Consolidation": 0.0}))
_HEART_NORMAL = (
    ("Heart size is normal.", {"Cardiomegaly": 0.0}),
    ("The cardiomediastinal silhouette is within normal limits.", {"Enlarged Cardiomediastinum": 0.0}),
)
_BONES = ("No acute osseous abnormalities.", "Mild degenerative changes of the thoracic spine.")
_NORMAL = (
    ("No acute cardiopulmonary process.", {}),
    ("No acute cardiopulmonary abnormality.", {}),
    ("Normal chest radiograph.", {}),
    ("No acute intrathoracic process.", {}),
    ("No radiographic evidence of pneumonia.", {"Pneumonia": 0.0}),
)
_DEVICES_OK = ("Lines and tubes in standard position.", "Support devices as described above.")


def _choose(rng: np.random.Generator, options: Sequence[tuple[str, Mapping[str, float]]]) -> Phrase:
    return Phrase(*options[int(rng.integers(len(options)))])


def _pleural_negation(f: Findings, rng: np.random.Generator) -> list[Phrase]:
    if not f.effusion and not f.pneumothorax:
        text = _pick(
            rng, ("No pleural effusion or pneumothorax is seen.", "There is no pleural effusion or pneumothorax.")
        )
        return [Phrase(text, {"Pleural Effusion": 0.0, "Pneumothorax": 0.0})]
    if not f.pneumothorax:
        return [Phrase("No pneumothorax.", {"Pneumothorax": 0.0})]
    if not f.effusion:
        return [Phrase("No pleural effusion.", {"Pleural Effusion": 0.0})]
    return []


def _negations(f: Findings, rng: np.random.Generator) -> list[Phrase]:
    """What a radiologist states as absent in the FINDINGS section."""
    out = _pleural_negation(f, rng)
    if not (f.consolidation or f.edema or f.atelectasis):
        out.append(_choose(rng, _LUNGS_CLEAR))
    if not f.cardiomegaly:
        out.append(_choose(rng, _HEART_NORMAL))
    elif not f.edema and rng.random() < 0.6:
        out.append(Phrase("No pulmonary edema.", {"Edema": 0.0}))
    if rng.random() < 0.4:
        out.append(Phrase(_pick(rng, _BONES)))
    return out


def _conclusion(f: Findings, short: list[Phrase], rng: np.random.Generator) -> list[Phrase]:
    """The IMPRESSION: devices, then every finding in few words, sometimes a pertinent negative."""
    out = [Phrase(_pick(rng, _DEVICES_OK), {"Support Devices": 1.0})] if f.devices else []
    if f.normal:
        return [*out, _choose(rng, _NORMAL)]
    return out + short + (_pleural_negation(f, rng) if rng.random() < 0.4 else [])
