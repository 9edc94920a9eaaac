"""Writing files atomically: a hidden temporary name beside the target, renamed into place when whole.

A crash or a kill never leaves a half-written file under the final name, and a reader never sees one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary path beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, value: Any) -> Path:
    """Pretty, key-sorted JSON (the same value always gives the same bytes), written atomically."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
