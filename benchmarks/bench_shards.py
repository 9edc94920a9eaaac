"""Benchmark ``imitate shards`` and the training loader on full-size chest radiographs.

Draws ``--bases`` demo radiographs, scales each to MIMIC-CXR's full size (shorter side ``--full-size``,
about 2,500 x 3,000) with per-file quantum noise, and writes ``--n`` of them as MIMIC-CXR-JPG files
(JPEG, quality 95) and ``--n`` as MIMIC-CXR DICOMs (uncompressed, 12-16 bits stored, some
MONOCHROME1), under ``DIR`` (kept between runs when the settings match). Every file is read once to
warm the page cache; then, for each ``--workers`` count and each format, the stage writes 256-px PNG
shards and the images/s and the speed-up over one process are printed. Finally the JPEG shards are
streamed back: decoding alone, then through the pretraining loader (two augmented 224-px views per
image) at each ``--loader-workers`` count.

    python benchmarks/bench_shards.py /tmp/bench_shards --n 48 --workers 1 2 --loader-workers 0 1 2
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import machine, warm
from PIL import Image

from imitate.shards.writer import write_shards

MIMIC_IMAGES = 377_110
FORMATS = ("jpg", "dcm")


# The stage's spawned workers import this script, so the demo drawing code, the reader and the loader
# (webdataset imports torch) are imported inside the functions that use them, keeping worker start-up
# what it is under ``imitate shards``.


def base_images(count: int, seed: int) -> list[np.ndarray]:
    """``count`` drawn PA radiographs (float32 in [0, 1]) with a shorter side of 512 px."""
    from imitate.demo.anatomy import sample_anatomy, sample_findings, sample_subject
    from imitate.demo.draw import draw
    from imitate.demo.mimic import sample_states

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        subject = sample_subject(rng)
        states, _ = sample_states(rng)
        images.append(draw(sample_anatomy(subject, "PA", 512, rng), sample_findings(states, rng)).pixels)
    return images


def full_size(base: np.ndarray, shorter: int, rng: np.random.Generator) -> np.ndarray:
    """``base`` scaled (bicubic) to a shorter side of ``shorter`` px, with detector-like noise."""
    height, width = base.shape
    scale = shorter / min(height, width)
    size = (round(width * scale), round(height * scale))
    big = np.asarray(Image.fromarray(base, mode="F").resize(size, Image.Resampling.BICUBIC))
    noisy = big + rng.normal(0.0, 0.01, big.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0)


def generate(root: Path, n: int, bases: int, shorter: int, seed: int = 0) -> None:
    """Write ``n`` JPEGs and ``n`` DICOMs under ``root/jpg`` and ``root/dcm``."""
    from imitate.demo.dicom import DicomHeader, Encoding, write_dicom

    rng = np.random.default_rng(seed)
    drawn = base_images(bases, seed)
    for folder in FORMATS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = full_size(drawn[i % bases], shorter, rng)
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(root / "jpg" / f"{i:05d}.jpg", quality=95)
        header = DicomHeader(f"bench{i:05d}", 10_000_000 + i, 50_000_000 + i, "21800101", "120000.000000",
                             "CHEST (PA AND LAT)", "PA", 0.139, seed)
        write_dicom(root / "dcm" / f"{i:05d}.dcm", pixels, header, Encoding.sample(rng))


def manifest(folder: str, n: int) -> pa.Table:
    return pa.Table.from_pylist(
        [{"key": f"{folder}{i:05d}", "path": f"{folder}/{i:05d}.{folder}", "study_id": 50_000_000 + i,
          "split": "train"} for i in range(n)]
    )


def time_stage(root: Path, out: Path, folder: str, n: int, workers: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        counts = write_shards(manifest(folder, n), root, out, image_size=256, samples_per_shard=16, workers=workers)
        best = min(best, time.perf_counter() - start)
        if counts.samples != n:
            raise RuntimeError(f"{folder}: {counts}")
    return best


def worker_startup(workers: int) -> float:
    """Seconds to spawn ``workers`` processes that have imported what the stage's workers import.

    Each imports this script first, and with it the stage's modules, before running its first task.
    """
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(abs, range(workers), chunksize=1)
    return time.perf_counter() - start


def time_loader(shards: list[Path], n: int, loader_workers: int) -> float:
    """Samples/s of the pretraining loader (two 224-px views each) over ``shards``."""
    from imitate.train.data import build_pretrain_loader
    from imitate.train.study_text import StudyText

    rng = np.random.default_rng(0)
    embeddings = {50_000_000 + i: StudyText(rng.random(384, np.float32), rng.random(384, np.float32))
                  for i in range(n)}
    loader = build_pretrain_loader(shards, embeddings, crop_size=224, batch_size=16, num_samples=n,
                                   workers=loader_workers, seed=0, epoch=0, shuffle_buffer=64)
    start = time.perf_counter()
    samples = sum(len(batch["study_id"]) for batch in loader)
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="working folder (images in DIR/images, shards in DIR/out)")
    parser.add_argument("--n", type=int, default=48, help="images per format")
    parser.add_argument("--bases", type=int, default=8, help="distinct drawn radiographs")
    parser.add_argument("--full-size", type=int, default=2544, help="shorter side of the generated files")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="stage process counts")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per setting (best is kept)")
    args = parser.parse_args()

    root = args.dir / "images"
    marker = args.dir / f"generated-{args.n}-{args.bases}-{args.full_size}"
    if not marker.exists():
        start = time.perf_counter()
        generate(root, args.n, args.bases, args.full_size)
        marker.touch()
        print(f"generated {2 * args.n} full-size images in {time.perf_counter() - start:.1f} s")
    size = warm(root)
    with Image.open(root / "jpg" / "00000.jpg") as img:
        shape = img.size
    print(f"{datetime.date.today()} on {machine()}; {2 * args.n} files, {size / 1e6:.0f} MB, {shape[0]} x {shape[1]}")
    baseline: dict[str, float] = {}
    for workers in args.workers:
        for folder in FORMATS:
            seconds = time_stage(root, args.dir / "out" / folder, folder, args.n, workers, args.repeat)
            rate = args.n / seconds
            baseline.setdefault(folder, rate)
            print(f"shards {folder} workers={workers}: {rate:6.1f} images/s ({rate / workers:.1f} per process), "
                  f"speed-up {rate / baseline[folder]:.2f}x; MIMIC-CXR's {MIMIC_IMAGES:,} on 16 processes "
                  f"~{MIMIC_IMAGES / (rate / workers * 16) / 60:.0f} min")
            if workers > 1:
                startup = worker_startup(workers)
                steady = args.n / (seconds - startup)
                print(f"  of which worker start-up {startup:.2f} s; without it {steady:.1f} images/s, "
                      f"speed-up {steady / baseline[folder]:.2f}x")

    from imitate.shards.reader import iter_samples, shard_paths

    shards = shard_paths(args.dir / "out" / "jpg" / "manifest.parquet", "train")
    start = time.perf_counter()
    decoded = sum(1 for _ in iter_samples(shards))
    print(f"read back: {decoded / (time.perf_counter() - start):,.0f} images/s decoded (1 process)")
    n = pq.read_metadata(args.dir / "out" / "jpg" / "manifest.parquet").num_rows
    for loader_workers in args.loader_workers:
        rate = time_loader(shards, n, loader_workers)
        print(f"pretrain loader workers={loader_workers}: {rate:,.0f} samples/s (two 224-px views each)")


if __name__ == "__main__":
    main()
