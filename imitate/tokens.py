"""The single tokenisation rule behind every "fewer than N tokens" filter.

A token is a maximal run of ASCII letters or digits in the lower-cased text, as in MGCA's
preprocessing (``re.findall(r"[a-z0-9]+", text.lower())``). PHI placeholders (``___``) and
punctuation are therefore not tokens.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str | None) -> list[str]:
    """Split ``text`` into lower-case alphanumeric tokens (an empty list for ``None``)."""
    return _TOKEN.findall(text.lower()) if text else []


def count_tokens(text: str | None) -> int:
    """Number of tokens in ``text`` under :func:`tokenize`."""
    return len(tokenize(text))
