"""Benchmark ``imitate sections``: generate a MIMIC-formatted reports tree, then time the stage.

Writes ``--n`` reports (default 204,800) in the real ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` layout under
``DIR/files`` (kept between runs when the count matches), reads every file once to warm the page cache,
then times ``extract_sections`` plus writing both Parquet files at each ``--workers`` count and prints
reports/s and the time projected for the 227,835 reports of MIMIC-CXR.

    python benchmarks/bench_sections.py /tmp/bench_sections --n 204800 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import warm

from imitate.sections.extract import extract_sections, write_sections

MIMIC_REPORTS = 227_835
SENTENCES = (
    "There is no focal consolidation, pleural effusion or pneumothorax.",
    "The cardiomediastinal silhouette is within normal limits.",
    "Heart size is mildly enlarged, unchanged from the prior study.",
    "Mild pulmonary vascular congestion is present without frank edema.",
    "Bibasilar opacities likely reflect atelectasis, though infection is not excluded.",
    "A right internal jugular central venous catheter terminates in the mid SVC.",
    "The endotracheal tube ends 4.5 cm above the carina.",
    "Small bilateral pleural effusions are slightly larger than on ___.",
    "No displaced rib fractures are identified.",
    "Degenerative changes are seen in the thoracic spine.",
    "Lungs are hyperinflated, consistent with chronic obstructive pulmonary disease.",
    "Left lower lobe retrocardiac opacity may represent atelectasis or pneumonia.",
    "Median sternotomy wires and mediastinal clips are intact.",
    "There is no free air below the right hemidiaphragm.",
)
IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "Mild pulmonary edema, slightly improved.",
    "Left lower lobe pneumonia in the appropriate clinical setting.",
    "Lines and tubes in standard position.  No pneumothorax.",
    "Stable small bilateral pleural effusions with adjacent atelectasis.",
)


def _wrap(words: list[str]) -> list[str]:
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def report(rng: np.random.Generator) -> str:
    """One synthetic report in MIMIC-CXR formatting (about 700-1,500 bytes)."""
    findings = " ".join(SENTENCES[i] for i in rng.choice(len(SENTENCES), int(rng.integers(5, 15)), replace=False))
    impression = " ".join(IMPRESSIONS[i] for i in rng.choice(len(IMPRESSIONS), int(rng.integers(1, 3)), replace=False))
    lines = [
        "EXAMINATION:  CHEST (PA AND LAT)",
        "",
        "INDICATION:  ___F with cough and fever, evaluate for pneumonia.",
        "",
        "TECHNIQUE:  Chest PA and lateral",
        "",
        "COMPARISON:  ___",
        "",
        "FINDINGS: ",
        "",
        *_wrap(findings.split()),
        "",
        "IMPRESSION: ",
        "",
        *_wrap(impression.split()),
    ]
    return "\n".join([" " * 33 + "FINAL REPORT", *(" " + line for line in lines)]) + "\n"


def generate(root: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` reports under ``root`` (several studies per patient, ten groups p10..p19)."""
    rng = np.random.default_rng(seed)
    study, written, patient = 50_000_000, 0, 0
    while written < n:
        subject = int(f"1{patient % 10}{patient:06d}")
        folder = root / f"p{str(subject)[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(min(int(rng.integers(1, 8)), n - written)):
            study += int(rng.integers(1, 40))
            (folder / f"s{study}.txt").write_text(report(rng))
            written += 1
        patient += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="working folder (the tree goes in DIR/files)")
    parser.add_argument("--n", type=int, default=204_800, help="reports to generate")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--mode", default="reference", choices=("reference", "corrected"))
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per worker count (best is kept)")
    args = parser.parse_args()

    root = args.dir / "files"
    marker = args.dir / f"generated-{args.n}"
    if not marker.exists():
        start = time.perf_counter()
        generate(root, args.n)
        marker.touch()
        print(f"generated {args.n} reports in {time.perf_counter() - start:.1f} s")
    size = warm(root)
    print(f"tree: {args.n} reports, {size / 1e6:.1f} MB, mean {size / args.n:.0f} bytes; load {os.getloadavg()}")
    for workers in args.workers:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            sections, rejects = extract_sections(root, mode=args.mode, workers=workers)
            write_sections(sections, rejects, args.dir / "sections.parquet", args.dir / "rejects.parquet")
            best = min(best, time.perf_counter() - start)
        rate = sections.num_rows / best
        print(
            f"workers={workers}: {sections.num_rows} sections, {rejects.num_rows} rejects in {best:.2f} s: "
            f"{rate:,.0f} reports/s; {MIMIC_REPORTS:,} reports projected {MIMIC_REPORTS / rate:.1f} s"
        )


if __name__ == "__main__":
    main()
