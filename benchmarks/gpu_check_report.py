"""The GPU check's outputs: the whole record as JSON, and the figures against the targets as Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _met(value: float | None, target: float, tiny: bool) -> str:
    if tiny or value is None:
        return "n/a"  # the targets are for one H100/H200 at the paper's sizes
    return "yes" if value >= target else "**no**"


def _gib(value: float | None) -> str:
    return f"{value:.1f} GiB" if value is not None else "n/a"


def _pretrain_rows(runs: list[dict[str, Any]], targets: dict[str, float], tiny: bool) -> list[str]:
    rows = []
    for run in runs:
        mode = "torch.compile" if run["compile"] else "eager"
        a, b = run["pipeline_from_shards"], run["model_in_memory"]
        setting = (f"{run['backbone']}, crop {run['crop_size']}, batch {run['batch_size']}, "
                   f"loader workers {run['workers']}")
        rows += [
            f"| pretraining, {mode} ({setting}) | (b) model, in memory | {b['images_per_s']:,.0f} images/s | | |",
            f"| | (a) loop from shards | {a['images_per_s']:,.0f} images/s "
            f"(waits for data {a['data_wait_share']:.0%}) | ≥ {targets['pretrain_images_per_s']:,.0f} | "
            f"{_met(a['images_per_s'], targets['pretrain_images_per_s'], tiny)} |",
            f"| | (a)/(b) | {run['efficiency']:.2f} | ≥ {targets['pretrain_efficiency']} | "
            f"{_met(run['efficiency'], targets['pretrain_efficiency'], tiny)} |",
            f"| | peak GPU memory | {_gib(run['peak_gpu_memory_gib'])} | | |",
        ]
        if "profile" in run:
            top = run["profile"]["top_device_ops"][:3] or run["profile"]["top_cpu_ops"][:3]
            rows.append(f"| | profiled (busiest ops) | {', '.join(op['op'] for op in top)} | | |")
    return rows


def markdown(report: dict[str, Any]) -> str:
    """One table: every figure beside its target, then the workflow checks that failed and any errors."""
    env, targets, parts = report["environment"], report["targets"], report["parts"]
    tiny = env["tiny"]
    lines = [
        f"# GPU check, {env['date']}: {env['device']} ({env['cpu']}); torch {env['torch']}, CUDA {env['cuda']}, "
        f"commit {(env['commit'] or 'unknown')[:10]}{' — TINY rehearsal, not a measurement' if tiny else ''}",
        "",
        "| part | measure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    lines += _pretrain_rows(parts.get("pretrain", []), targets, tiny)
    if "text" in parts:
        text = parts["text"]
        lines += [
            f"| text embedding ({text['bert']}, batch 256) | {text['texts']:,} Open-I texts "
            f"({text['distinct_texts']:,} distinct) | {text['texts_per_s']:,.0f} texts/s | | |",
            f"| | distinct texts/s | {text['distinct_texts_per_s']:,.0f} | ≥ {targets['text_texts_per_s']:,.0f} | "
            f"{_met(text['distinct_texts_per_s'], targets['text_texts_per_s'], tiny)} |",
            f"| | MIMIC-CXR's 426,768 sections at that rate | {text['mimic_minutes_at_distinct_rate']:.1f} min | "
            "≤ 2 min | |",
        ]
    if "workflow" in parts:
        flow = parts["workflow"]
        total = len(flow["checks"])
        verdict = "all passed" if not flow["failed"] else f"**failed: {'; '.join(flow['failed'])}**"
        lines.append(f"| tiny workflow, CPU vs {flow['device']} | {total} checks | {flow['passed']}/{total} | "
                     f"all | {verdict} |")
    for dense in parts.get("dense", []):
        epochs = "; ".join(f"epoch {e['epoch']}: {e['images_per_s']:,.1f} images/s" for e in dense["epochs"])
        lines.append(f"| {dense['task']} evaluation job ({dense['backbone']}, {dense['input_size']} px, batch "
                     f"{dense['batch_size']}, loader workers {dense['workers']}) | training on "
                     f"{dense['train_images']:,} images | {epochs} (job {dense['job_seconds']:.0f} s) | | |")
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items())
    lines += ["", f"Seconds per part: {seconds}."]
    for name, error in report["errors"].items():
        lines += ["", f"**{name} failed:**", "", "```", error.strip()[-3000:], "```"]
    return "\n".join(lines) + "\n"


def write_reports(report: dict[str, Any], out: Path) -> None:
    """``gpu_check.json`` (everything) and ``gpu_check.md`` (the table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
