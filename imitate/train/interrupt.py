"""Stopping a run cleanly on SIGTERM (SLURM preemption, ``scancel``) or SIGINT (Ctrl-C).

The handler only raises a flag; the training loop checks it after each step, writes a checkpoint and
stops, so the signal never lands in the middle of an optimizer update or a file write. A second
Ctrl-C stops at once. DataLoader workers ignore both signals (:func:`ignore_stop_signals`): SLURM's
``scancel`` and preemption, and Ctrl-C in a terminal, signal the whole process group, and a worker that
died of it would crash the main process mid-step, before its checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class StopFlag:
    """The signal received (its number), or None while none has arrived."""

    signal: int | None = None


class InterruptedRunError(Exception):
    """The run stopped on a signal after saving a checkpoint it can resume from."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name}; resume from {checkpoint} with --resume")


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within the block, SIGTERM and SIGINT set the flag instead of killing the process."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signal = signum
        log.warning("%s received: stopping after this step, with a checkpoint", signal.Signals(signum).name)

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker ignores SIGTERM and SIGINT, and the main process, having
    saved its checkpoint, shuts it down."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
