"""Section-name normalisation: the whole mapping of the MIT-LCP MIMIC-CXR parser.

A raw header (``"CLINICAL HISTORY"``) is lower-cased and stripped, then looked up in
:data:`REFERENCE_NAMES`; failing that, the first of :data:`MAIN_SECTIONS` it contains wins; failing
that, a header describing the views of the study (:data:`VIEW_PHRASES`, e.g. ``"pa and lateral"``)
counts as ``findings``; anything else keeps its lower-cased name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

# Exact lookups, as in the reference (its comments give the MIMIC-CXR frequency of each header).
REFERENCE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "preamble": "preamble",
        "impression": "impression",
        "comparison": "comparison",
        "indication": "indication",
        "findings": "findings",
        "examination": "examination",
        "technique": "technique",
        "history": "history",
        "comparisons": "comparison",
        "clinical history": "history",
        "reason for examination": "indication",
        "notification": "notification",
        "reason for exam": "indication",
        "clinical information": "history",
        "exam": "examination",
        "clinical indication": "indication",
        "conclusion": "impression",
        "chest, two views": "findings",
        "recommendation(s)": "recommendations",
        "type of examination": "examination",
        "reference exam": "comparison",
        "patient history": "history",
        "addendum": "addendum",
        "comparison exam": "comparison",
        "date": "date",
        "comment": "comment",
        "findings and impression": "impression",
        "wet read": "wet read",
        "comparison film": "comparison",
        "recommendations": "recommendations",
        "findings/impression": "impression",
        "pfi": "history",
        "recommendation": "recommendations",
        "wetread": "wet read",
        # A truncated INDICATION; the reference sends it to impression (a quirk kept in reference mode).
        "ndication": "impression",
        "impresson": "impression",
        "imprression": "impression",
        "imoression": "impression",
        "impressoin": "impression",
        "imprssion": "impression",
        "impresion": "impression",
        "imperssion": "impression",
        "mpression": "impression",
        "impession": "impression",
        "findings/ impression": "impression",
        "finding": "findings",
        "findins": "findings",
        "findindgs": "findings",
        "findgings": "findings",
        "findngs": "findings",
        "findnings": "findings",
        "finidngs": "findings",
        "idication": "indication",
        "reference findings": "findings",
        "comparision": "comparison",
        "comparsion": "comparison",
        "comparrison": "comparison",
        "comparisions": "comparison",
    }
)

# Corrected mode: the same map with the truncated INDICATION sent where it belongs.
CORRECTED_NAMES: Mapping[str, str] = MappingProxyType({**REFERENCE_NAMES, "ndication": "indication"})

# Substring rule, checked in this order: "clinical history and impression" -> impression.
MAIN_SECTIONS: tuple[str, ...] = ("impression", "findings", "history", "comparison", "addendum")

VIEW_PHRASES: tuple[str, ...] = (
    "chest",
    "portable",
    "pa and lateral",
    "lateral and pa",
    "ap and lateral",
    "lateral and ap",
    "frontal and",
    "two views",
    "frontal view",
    "pa view",
    "ap view",
    "one view",
    "lateral view",
    "bone window",
    "frontal upright",
    "frontal semi-upright",
    "ribs",
    "pa and lat",
)
_VIEW_PATTERN = re.compile("|".join(re.escape(p) for p in VIEW_PHRASES))

# Headers with lower-case letters that corrected mode accepts: every name the map knows, so that prose
# such as "Lines and tubes: ..." inside a section is not mistaken for a header.
KNOWN_HEADERS: frozenset[str] = frozenset(CORRECTED_NAMES) - {"preamble"}


def normalize_name(raw: str, names: Mapping[str, str] = REFERENCE_NAMES) -> str:
    """Normalised section name of a raw header under ``names`` (the reference map by default)."""
    name = raw.lower().strip()
    mapped = names.get(name)
    if mapped is not None:
        return mapped
    for main in MAIN_SECTIONS:
        if main in name:
            return main
    if _VIEW_PATTERN.search(name):
        return "findings"
    return name
