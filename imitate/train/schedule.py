"""Learning-rate schedule: linear warm-up, then cosine annealing to zero, stepped once per batch."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """The lr multiplier of step ``s``: (s+1)/W during W warm-up steps, then a half cosine to 0.

    A callable object rather than a closure so that ``LambdaLR.state_dict`` records its settings.
    Steps past ``total_steps`` stay at 0.
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps <= total_steps >= 1, got {warmup_steps}, {total_steps}")
        self.total_steps, self.warmup_steps = total_steps, warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float) -> LambdaLR:
    """A per-step scheduler with ``round(warmup_fraction * total_steps)`` warm-up steps."""
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction}")
    return LambdaLR(optimizer, WarmupCosine(total_steps, round(warmup_fraction * total_steps)))
