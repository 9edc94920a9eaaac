"""imitate embed-map: the paper's Fig. 3, a t-SNE map of Findings vs Impression embeddings."""

from __future__ import annotations

import argparse
import logging

from imitate.embed.map import write_section_map
from imitate.io.files import write_json
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate embed-map``."""
    parser.add_argument("embeddings", help="embeddings Parquet from `imitate embed`")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--stats", required=True, help="JSON of the numbers (silhouette, KMeans agreement)")
    parser.add_argument("--studies", type=int, default=500, help="studies with both sections to sample")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Draw the map and record its numbers."""
    settings = {"studies": args.studies, "perplexity": args.perplexity}
    with stage_run(
        "embed-map",
        inputs={"embeddings": args.embeddings},
        settings=settings,
        outputs=[args.out, args.stats],
        run_id=args.run_id,
        seeds={"sample_tsne_kmeans": args.seed},
    ):
        stats = write_section_map(
            args.embeddings, args.out, studies=args.studies, perplexity=args.perplexity, seed=args.seed
        )
        write_json(args.stats, stats)
    log.info(
        "section map of %d studies: silhouette %.3f (map) %.3f (cosine); KMeans agreement %.1f%%, ARI %.3f",
        stats["studies"], stats["silhouette_map"], stats["silhouette_embedding_cosine"],
        100 * stats["kmeans_agreement"], stats["kmeans_adjusted_rand"],
    )
    return 0
