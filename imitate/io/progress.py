"""Progress lines a person can follow in a stage's log file.

A terminal bar is invisible under Snakemake (each rule sends stderr to its log, where a bar's ``\\r``
updates pile up), so long stages log plain INFO lines instead: one when the work starts, then whenever
another :data:`EVERY_SHARE` of it is done or :data:`EVERY_SECONDS` have passed since the last line,
whichever comes first, and always one at 100 %::

    shards: 1,200/3,000 images (40 %), 85.3 images/s, ETA 0:00:21
    shards: 3,000/3,000 images (100 %), 85.3 images/s, in 0:00:35
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta

EVERY_SHARE = 0.1  # a line each 10 % of the work ...
EVERY_SECONDS = 60.0  # ... or each minute, whichever comes first


class ProgressLog:
    """Counts ``total`` units of work (``unit``: "images", "texts") and logs ``what``'s progress to ``logger``.

    ``clock`` gives seconds (monotonic); tests pass a fake one. A ``total`` of 0 logs its 100 % line at once.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str = "items",
        *,
        every_share: float = EVERY_SHARE,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"{what}: the total work must be >= 0, got {total}")
        if not 0 < every_share <= 1 or not every_seconds > 0:
            raise ValueError(f"{what}: need 0 < every_share <= 1 and every_seconds > 0, got "
                             f"{every_share} and {every_seconds}")
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every_share, self.every_seconds, self.clock = every_share, every_seconds, clock
        self.done = 0
        self._start = self._last = clock()
        self._share = 0  # how many whole shares the last line had reached
        self._log(self._start, "")

    @property
    def finished(self) -> bool:
        return self.done == self.total

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more units done; log a line if one is due (``note`` ends it: counts so far, a loss)."""
        if n < 0:
            raise ValueError(f"{self.what}: cannot go back {n} {self.unit}")
        if self.done + n > self.total:
            raise ValueError(f"{self.what}: {self.done + n} {self.unit} done, past the total of {self.total}")
        if n == 0:
            return
        self.done += n
        now = self.clock()
        share = self._shares()
        if self.finished or share > self._share or now - self._last >= self.every_seconds:
            self._share, self._last = share, now
            self._log(now, note)

    def _shares(self) -> int:
        # the small epsilon absorbs float error: 3/10 of the work is 3 tenths, not 2.999...
        return math.floor(self.done / self.total / self.every_share + 1e-9) if self.total else 0

    def _log(self, now: float, note: str) -> None:
        percent = 100 * self.done // self.total if self.total else 100
        parts = [f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({percent} %)"]
        elapsed = now - self._start
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{_number(rate)} {self.unit}/s")
            if not self.finished:
                parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        if self.finished and self.total:
            parts.append(f"in {_duration(elapsed)}")
        self.logger.info(", ".join(parts) + (f"; {note}" if note else ""))


def _number(rate: float) -> str:
    """A rate with three significant digits or so: 1,234, 85.3, 0.0521."""
    if rate >= 100:
        return f"{rate:,.0f}"
    return f"{rate:.1f}" if rate >= 1 else f"{rate:.3g}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
