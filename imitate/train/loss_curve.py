"""The pretraining loss curve (per step and per epoch, every loss term) from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """The ``step`` and ``epoch`` records of a metrics.jsonl file."""
    steps, epochs = [], []
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not a JSON line ({exc})") from exc
            (steps if record.get("type") == "step" else epochs).append(record)
    if not steps:
        raise ValueError(f"{path}: no step records")
    return steps, epochs


def plot_loss_curve(metrics: str | Path, out: str | Path) -> None:
    """Draw the total and per-term training losses per step and the validation loss per epoch."""
    steps, epochs = read_metrics(metrics)
    terms = sorted(k for k in steps[0] if k.endswith("_loss") and k != "total_loss")
    fig = Figure(figsize=(11, 4), dpi=100)  # no pyplot: no global figure state, no display backend
    left, right = fig.subplots(1, 2)
    x = [s["step"] for s in steps]
    left.plot(x, [s["total_loss"] for s in steps], color="black", lw=1.5, label="train total")
    last_steps = [e["step"] for e in epochs]
    left.plot(last_steps, [e["val_total_loss"] for e in epochs], "o-", color="tab:red", label="validate total")
    left.set(xlabel="step", ylabel="loss", title="IMITATE pretraining: total loss")
    left.legend()
    for term in terms:
        right.plot(x, [s[term] for s in steps], lw=1, label=term.removesuffix("_loss"))
    right.set(xlabel="step", ylabel="loss", title="per term (train)")
    right.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
