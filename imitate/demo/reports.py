"""Free-text reports that describe exactly what is drawn, formatted like MIMIC-CXR report files.

Every sentence carries the CheXpert labels it asserts (1.0 positive, -1.0 hedged, 0.0 negated). The
study's label row is read off the conclusion (the IMPRESSION), as the MIMIC-CXR CheXpert labels were;
the impression names every drawn finding, hedged when it is uncertain, so no positive is lost.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imitate.demo.anatomy import Findings
from imitate.demo.phrases import (
    ADDENDUM,
    COMPARISON_NONE,
    COMPARISON_PRIOR,
    HISTORIES,
    NOTIFICATION,
    QUESTIONS,
    TECHNIQUE_PA_LAT,
    TECHNIQUE_PORTABLE,
    Phrase,
    pick,
)
from imitate.demo.sentences import describe, device_sentences, impression, negations

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
    described = describe(findings, rng)
    body = [*device_sentences(findings.devices, rng), *(detail for detail, _ in described)]
    body += negations(findings, rng)
    conclusion = impression(findings, [short for _, short in described], rng)
    impression_only = rng.random() < 0.2
    if impression_only:
        conclusion = [p for p in body if p.labels or rng.random() < 0.3] or conclusion

    header = "INDICATION" if rng.random() < 0.85 else "HISTORY"
    technique = TECHNIQUE_PORTABLE if exam.portable else TECHNIQUE_PA_LAT
    sections = [
        ("EXAMINATION", exam.procedure),
        (header, _indication(exam, rng)),
        ("TECHNIQUE", pick(rng, technique)),
        ("COMPARISON", pick(rng, COMPARISON_PRIOR if exam.has_prior else COMPARISON_NONE)),
    ]
    blocks = [("IMPRESSION", _paragraph(conclusion, numbered=len(conclusion) > 1 and rng.random() < 0.2))]
    if not impression_only:
        blocks.insert(0 if rng.random() < 0.95 else 1, ("FINDINGS", _paragraph(body, numbered=False)))
    notify = findings.pneumothorax and findings.pneumothorax.certain and rng.random() < 0.5
    closing = [("NOTIFICATION", pick(rng, NOTIFICATION))] if notify else []
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
        clock = f"{int(rng.integers(1, 13))}:{int(rng.integers(60)):02d} {pick(rng, ('AM', 'PM'))}"
        return [("WET READ", f"___ ___ {clock}  " + "  ".join(p.text for p in conclusion[:2]))]
    if draw < 0.07:
        return [("ADDENDUM", pick(rng, ADDENDUM))]
    return []


# ---- header sections -----------------------------------------------------------------------------


def _indication(exam: Exam, rng: np.random.Generator) -> str:
    person = pick(rng, ("woman", "female") if exam.sex == "F" else ("man", "male"))
    history, question = pick(rng, HISTORIES), pick(rng, QUESTIONS)
    if rng.random() < 0.5:
        return f"___ year old {person} with {history}  // {question}"
    return f"___-year-old {person} with {history}, {question}."
