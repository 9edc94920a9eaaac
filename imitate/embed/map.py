"""The paper's Fig. 3: do Findings and Impression embeddings of the same reports separate?

A seeded sample of studies that have both sections gives ``2 n`` vectors (L2-normalised, the geometry
the contrastive loss sees). They are reduced with PCA (to at most 50 dimensions), mapped to 2-D with
t-SNE, and split into two clusters by KMeans on the map. The figure shows the map coloured by true
section with the KMeans boundary (the perpendicular bisector of the two centroids); the numbers are the
silhouette of the true sections on the map and in the embedding space (cosine), and how well the
KMeans clusters agree with the true sections (accuracy under the better of the two labellings, and the
adjusted Rand index). t-SNE runs on one thread so that the map, and the PNG, are the same every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from imitate.embed.store import embedding_matrix, read_embedding_facts

SECTIONS = ("findings", "impression")
PCA_DIMS = 50


@dataclass(frozen=True)
class MapStats:
    """Recorded beside the figure."""

    studies: int
    silhouette_map: float
    silhouette_embedding_cosine: float
    kmeans_agreement: float
    kmeans_adjusted_rand: float
    perplexity: float
    seed: int


@dataclass(frozen=True)
class SectionMap:
    """The 2-D map and the numbers that summarise it."""

    points: np.ndarray  # (2 n, 2): the n findings first, then the n impressions
    labels: np.ndarray  # 0 findings, 1 impression
    clusters: np.ndarray  # KMeans cluster of each point
    centroids: np.ndarray  # (2, 2)
    stats: MapStats


def sample_pairs(path: str | Path, studies: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Findings and Impression vectors (float32, n x D each) of up to ``studies`` seeded studies."""
    table = pq.read_table(path, columns=["findings_emb", "impression_emb"])
    both = pc.and_(pc.is_valid(table["findings_emb"]), pc.is_valid(table["impression_emb"]))
    table = table.filter(both)
    available = table.num_rows
    if available < 3:
        raise ValueError(f"{path}: {available} studies have both Findings and Impression; the map needs 3")
    chosen = np.sort(np.random.default_rng(seed).choice(available, min(studies, available), replace=False))
    table = table.take(chosen)
    findings, _ = embedding_matrix(table, "findings_emb", path)
    impression, _ = embedding_matrix(table, "impression_emb", path)
    return findings.astype(np.float32), impression.astype(np.float32), available


def section_map(findings: np.ndarray, impression: np.ndarray, *, perplexity: float, seed: int) -> SectionMap:
    """PCA + t-SNE map of the two sections' vectors, KMeans on the map, and the summary numbers."""
    vectors = np.concatenate([findings, impression]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = np.repeat([0, 1], len(findings))
    n_points = len(vectors)
    components = min(PCA_DIMS, vectors.shape[1], n_points - 1)
    reduced = PCA(n_components=components, svd_solver="full", random_state=seed).fit_transform(vectors)
    with threadpool_limits(1):
        points = TSNE(
            n_components=2,
            perplexity=min(perplexity, (n_points - 1) / 3),
            init="pca",
            learning_rate="auto",
            random_state=seed,
        ).fit_transform(reduced)
    kmeans = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(points)
    clusters = kmeans.labels_
    agreement = float(np.mean(clusters == labels))
    stats = MapStats(
        studies=len(findings),
        silhouette_map=float(silhouette_score(points, labels)),
        silhouette_embedding_cosine=float(silhouette_score(vectors, labels, metric="cosine")),
        kmeans_agreement=max(agreement, 1.0 - agreement),
        kmeans_adjusted_rand=float(adjusted_rand_score(labels, clusters)),
        perplexity=float(perplexity),
        seed=seed,
    )
    return SectionMap(points, labels, clusters, kmeans.cluster_centers_, stats)


def plot_section_map(result: SectionMap, out: str | Path, title: str) -> None:
    """Scatter the map by true section and draw the KMeans boundary."""
    fig = Figure(figsize=(6.5, 6), dpi=100)  # no pyplot: no global figure state, no display backend
    ax = fig.subplots()
    for label, (name, colour) in enumerate(zip(SECTIONS, ("tab:blue", "tab:orange"), strict=True)):
        chosen = result.points[result.labels == label]
        ax.scatter(chosen[:, 0], chosen[:, 1], s=8, alpha=0.6, color=colour, label=name.capitalize())
    x_limits, y_limits = ax.get_xlim(), ax.get_ylim()
    a, b = result.centroids
    middle, normal = (a + b) / 2, b - a  # boundary: points p with (p - middle) . normal == 0
    if abs(normal[1]) >= abs(normal[0]):
        xs = np.array(x_limits)
        ys = middle[1] - (xs - middle[0]) * normal[0] / normal[1]
    else:
        ys = np.array(y_limits)
        xs = middle[0] - (ys - middle[1]) * normal[1] / normal[0]
    ax.plot(xs, ys, "k--", lw=1.2, label="KMeans boundary")
    ax.set(xlim=x_limits, ylim=y_limits, xticks=[], yticks=[], title=title)
    stats = result.stats
    ax.text(
        0.01, 0.01,
        f"{stats.studies} studies; silhouette {stats.silhouette_map:.2f} (map), "
        f"{stats.silhouette_embedding_cosine:.2f} (cosine); KMeans agreement {stats.kmeans_agreement:.1%}",
        transform=ax.transAxes, fontsize=8,
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})


def write_section_map(
    embeddings: str | Path, png: str | Path, *, studies: int, perplexity: float, seed: int
) -> dict[str, object]:
    """Draw ``png`` from an embeddings file; returns the numbers (with the encoder's facts)."""
    findings, impression, available = sample_pairs(embeddings, studies, seed)
    result = section_map(findings, impression, perplexity=perplexity, seed=seed)
    facts = read_embedding_facts(embeddings)
    plot_section_map(result, png, f"Findings vs Impression: {facts.get('encoder')} ({facts.get('pooling')})")
    return {**asdict(result.stats), "studies_with_both": available, "encoder": facts.get("encoder")}
