"""The single tokenisation rule behind every "fewer than N tokens" filter.

A token is a maximal run of ASCII letters or digits in the lower-cased text, as in MGCA's
preprocessing (``re.findall(r"[a-z0-9]+", text.lower())``). PHI placeholders (``___``) and
punctuation are therefore not tokens.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")
# ASCII letters and digits kept, every other byte a separator: the same tokens, by bytes.translate + split
_TOKEN_BYTES = bytes(b if chr(b).isascii() and chr(b).isalnum() else 0x20 for b in range(256))


def tokenize(text: str | None) -> list[str]:
    """Split ``text`` into lower-case alphanumeric tokens (an empty list for ``None``)."""
    return _TOKEN.findall(text.lower()) if text else []


def count_tokens(text: str | None) -> int:
    """Number of tokens in ``text`` under :func:`tokenize` (0 for ``None``).

    ASCII text (the usual case) takes a path about four times faster: there lower-casing maps only A-Z
    to a-z, so the runs of ``[a-z0-9]`` in the lower-cased text are the runs of ASCII letters and
    digits. Other text (``"\u212a".lower() == "k"``) goes through :func:`tokenize` itself.
    """
    if not text:
        return 0
    if text.isascii():
        return len(text.encode("ascii").translate(_TOKEN_BYTES).split())
    return len(tokenize(text))
