"""The reports' fixed wording: the Phrase (a sentence and the CheXpert labels it asserts), the stock
header texts and sentences, and the seeded choice among them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Phrase:
    """One sentence and the CheXpert labels it asserts."""

    text: str
    labels: Mapping[str, float] = field(default_factory=dict)


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, drawn from ``rng``."""
    return options[int(rng.integers(len(options)))]


def choose(rng: np.random.Generator, options: Sequence[tuple[str, Mapping[str, float]]]) -> Phrase:
    """One of ``options`` (text, labels), drawn from ``rng``, as a Phrase."""
    return Phrase(*options[int(rng.integers(len(options)))])


# ---- header sections -----------------------------------------------------------------------------

TECHNIQUE_PA_LAT = (
    "Chest PA and lateral",
    "PA and lateral views of the chest.",
    "Frontal and lateral chest radiographs.",
)
TECHNIQUE_PORTABLE = (
    "Portable AP chest radiograph.",
    "Single portable frontal view of the chest.",
    "AP portable chest",
)
COMPARISON_NONE = ("None.", "___", "None available.")
COMPARISON_PRIOR = (
    "___",
    "Chest radiograph from ___.",
    "Prior chest radiographs ___ and ___.",
    "Multiple prior studies.",
)
HISTORIES = ("cough", "shortness of breath", "fever", "chest pain", "hypoxia", "fall", "sepsis", "CHF", "weakness")
QUESTIONS = ("eval for pneumonia", "?pneumonia", "eval for effusion", "r/o pneumothorax", "eval for acute process")
NOTIFICATION = (
    "The findings were discussed with ___, M.D. by ___, M.D. on the telephone on ___ at ___, 5 minutes after "
    "discovery of the findings.",
    "Findings were communicated to the referring clinician by telephone at the time of the study.",
)
ADDENDUM = (
    "Comparison was made with the prior study from ___, which does not change the impression.",
    "The findings were reviewed with the attending radiologist, Dr. ___, who agrees.",
)


# ---- sentences -----------------------------------------------------------------------------------

LUNGS_CLEAR = (("The lungs are clear.", {}), ("There is no focal consolidation.", {"Consolidation": 0.0}))
HEART_NORMAL = (
    ("Heart size is normal.", {"Cardiomegaly": 0.0}),
    ("The cardiomediastinal silhouette is within normal limits.", {"Enlarged Cardiomediastinum": 0.0}),
)
BONES = ("No acute osseous abnormalities.", "Mild degenerative changes of the thoracic spine.")
NORMAL = (
    ("No acute cardiopulmonary process.", {}),
    ("No acute cardiopulmonary abnormality.", {}),
    ("Normal chest radiograph.", {}),
    ("No acute intrathoracic process.", {}),
    ("No radiographic evidence of pneumonia.", {"Pneumonia": 0.0}),
)
DEVICES_OK = ("Lines and tubes in standard position.", "Support devices as described above.")
