"""Split a radiology report into named sections, as the MIT-LCP MIMIC-CXR parser does.

``section_text(text)`` returns ``(sections, names, starts)``: the raw text of each section, its
normalised name (:mod:`imitate.sections.names`) and the index in ``text`` where it starts. The first
section is the ``preamble`` (everything before the first header), or ``full report`` if there is no
header at all.

Reference mode (the default) reproduces ``txt/section_parser.py`` of MIT-LCP/mimic-cxr exactly,
quirks included:

* a header is a newline, the one space that starts every MIMIC line, upper-case letters, spaces or
  ``()/,-``, a colon and one whitespace character (``"\\n FINDINGS: "``);
* whitespace-only ``impression``/``findings`` sections are deleted;
* if neither an ``impression`` nor a ``findings`` section remains, the last section is cut at its first
  MIMIC blank line (``"\\n \\n"``) and everything after it becomes ``last_paragraph``; its start index
  is that of the cut, as in the reference.

``mode="corrected"`` fixes these quirks (each one is pinned by a test):

1. Unindented or tab-indented headers, and a header on the very first line, are recognised:
   ``"FINDINGS: clear lungs"`` is a findings section, not the preamble.
2. Headers with lower-case letters are recognised when their lower-cased name is one the
   normalisation map knows: ``" Impression: No effusion."`` is an impression. Other mixed-case
   ``Word:`` lines (``" Lines and tubes: ..."``) stay prose.
3. A header on the line right after an empty header starts its own section. The reference's colon-
   whitespace consumes the newline, so in ``" FINDINGS:\\n IMPRESSION: No effusion."`` it keeps
   ``IMPRESSION: No effusion.`` inside the (then non-empty) findings and finds no impression.
4. ``NDICATION`` (a truncated INDICATION) is normalised to ``indication``; the reference maps it to
   ``impression``.
5. Any whitespace-only line is a paragraph break for ``last_paragraph`` (``"\\n\\n"`` and
   ``"\\n \\t\\n"`` too), and ``last_paragraph`` starts after the break.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache

from imitate.sections.names import CORRECTED_NAMES, KNOWN_HEADERS, REFERENCE_NAMES, normalize_name

MODES: tuple[str, ...] = ("reference", "corrected")

_REFERENCE_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
_CORRECTED_HEADER = re.compile(r"^[ \t]*([A-Za-z()/,-][A-Za-z ()/,-]*):(?:\s|\Z)", re.MULTILINE)
_REFERENCE_BLANK = "\n \n"
_CORRECTED_BLANK = re.compile(r"\n[ \t]*\n")
_MAIN = frozenset(("impression", "findings"))


def _reference_sections(text: str) -> tuple[list[str], list[str], list[int]]:
    # re.split yields [preamble, name, text, name, text, ...]. The reference restarts each search after
    # the first newline following the section start; every match begins with a newline, so that is the
    # same as continuing after the previous match, which is what split does.
    pieces = _REFERENCE_HEADER.split(text)
    if len(pieces) == 1:
        return [text], ["full report"], [0]
    sections, names, starts = [pieces[0] + "\n "], ["preamble"], [0]
    position = len(pieces[0])
    for i in range(1, len(pieces), 2):
        raw, section = pieces[i], pieces[i + 1]
        position += len(raw) + 4  # "\n " + name + ":" + one whitespace character
        sections.append(section)
        names.append(_normalized(raw, "reference"))
        starts.append(position)
        position += len(section)
    return sections, names, starts


def _corrected_sections(text: str) -> tuple[list[str], list[str], list[int]]:
    headers = [
        m
        for m in _CORRECTED_HEADER.finditer(text)
        if m.group(1).isupper() or m.group(1).lower().strip() in KNOWN_HEADERS
    ]
    if not headers:
        return [text], ["full report"], [0]
    sections, names, starts = [text[: headers[0].start(1)]], ["preamble"], [0]
    ends = [h.start() for h in headers[1:]] + [len(text)]
    for header, end in zip(headers, ends, strict=True):
        sections.append(text[header.end() : end])
        names.append(_normalized(header.group(1), "corrected"))
        starts.append(header.end())
    return sections, names, starts


@lru_cache(maxsize=65536)
def _normalized(raw: str, mode: str) -> str:
    # headers repeat across reports: caching their normalisation saves a third of the parsing time
    return normalize_name(raw, CORRECTED_NAMES if mode == "corrected" else REFERENCE_NAMES)


def section_text(text: str, mode: str = "reference") -> tuple[list[str], list[str], list[int]]:
    """Split ``text`` into ``(sections, normalised names, start indices)``.

    ``mode="reference"`` matches MIT-LCP's ``section_text`` output exactly; ``mode="corrected"`` fixes
    its quirks (see the module docstring).
    """
    if mode == "reference":
        sections, names, starts = _reference_sections(text)
    elif mode == "corrected":
        sections, names, starts = _corrected_sections(text)
    else:
        raise ValueError(f"unknown sectioning mode {mode!r}; expected one of {MODES}")

    for i in reversed(range(len(names))):
        if names[i] in _MAIN and not sections[i].strip():
            del sections[i], names[i], starts[i]

    if "impression" not in names and "findings" not in names:
        _split_last_paragraph(sections, names, starts, corrected=mode == "corrected")
    return sections, names, starts


def _split_last_paragraph(sections: list[str], names: list[str], starts: list[int], *, corrected: bool) -> None:
    """Cut the last section at its first blank line; the rest becomes ``last_paragraph`` (in place)."""
    last = sections[-1]
    if corrected:
        blank = _CORRECTED_BLANK.search(last)
        if blank is None:
            return
        head, rest, rest_start = last[: blank.start()], last[blank.end() :], starts[-1] + blank.end()
    else:
        if _REFERENCE_BLANK not in last:
            return
        head, _, rest = last.partition(_REFERENCE_BLANK)
        rest_start = starts[-1] + len(head)
    sections[-1] = head
    sections.append(rest)
    names.append("last_paragraph")
    starts.append(rest_start)


def last_by_name(sections: list[str], names: list[str], wanted: Collection[str] | None = None) -> dict[str, str | None]:
    """The last section of each name (of each name in ``wanted``), stripped; ``None`` where that last one is
    blank. Names without a section are absent."""
    last = dict(zip(names, sections, strict=True))
    return {name: last[name].strip() or None for name in (last if wanted is None else wanted) if name in last}
