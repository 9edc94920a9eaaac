"""Image paths in a user's table: kept inside the root, and a key derived from a path where no id is given.

Shared by the downstream table adapter and the table source of pretraining, so that both read a path, and
name an image without an id column, the same way.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def path_key(path: str) -> str:
    """A key for the image at ``path``: its file stem made key-safe (letters, digits, ``_``, ``-``) and 12 hex
    digits of the path's SHA-256. Stable, and distinct for distinct paths (48 bits: no collision is expected
    below millions of images even when every file has the same name)."""
    stem = _UNSAFE.sub("_", PurePosixPath(path).name.split(".")[0]) or "image"
    return f"{stem}-{hashlib.sha256(path.encode('utf-8')).hexdigest()[:12]}"


def relative_path(path: str, root: str | os.PathLike[str]) -> str | None:
    """``path`` relative to ``root`` (normalised, POSIX), or None when it lies outside it (``..``, or an
    absolute path elsewhere). The check is lexical: symbolic links are not resolved."""
    if os.path.isabs(path):
        base = os.path.abspath(root)
        inside = os.path.normpath(path)
        if os.path.commonpath([base, inside]) != base:
            return None
        return Path(os.path.relpath(inside, base)).as_posix()
    rel = posixpath.normpath(path)
    return None if rel == ".." or rel.startswith("../") else rel
