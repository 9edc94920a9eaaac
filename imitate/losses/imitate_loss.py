"""IMITATE's total loss (paper §III-E): six contrastive terms with ablation switches.

Terms (Table VIII groups in brackets), with the default ``hierarchical`` alignment:

* ``vlh1``, ``vlh2`` [VLH]: high-level feature of view 1/2 vs Impression, τ_vl, Impression prior;
* ``vlm1``, ``vlm2`` [VLM]: multi-level feature of view 1/2 vs Findings, τ_vl, Findings prior;
* ``vvh`` [VVH]: high-level view 1 vs view 2, τ_vv, with the prior of the text the high level aligns to;
* ``vvm`` [VVM]: multi-level view 1 vs view 2 (independent channel draws), τ_vv, no prior.

``vv_prior`` picks the V-V priors: ``official`` (above: the official code's, the prior of the high
level's text on ``vvh``, none on ``vvm``), ``all`` (the paper's §III-E, CICL on every term: ``vvm`` also
takes the prior of the multi level's text, dropping the studies without Findings like the other
Findings terms) or ``none`` (plain InfoNCE on both V-V terms, over the whole batch).
Each term sums its two directions as the official does; the terms have equal weight as in the paper's
sum (the official calls each V-V term twice, with the views swapped, which doubles its weight).

``gather`` is where the batch of a term ends under several processes: ``local`` (the official code:
each rank's loss, negatives and prior span its own batch; DDP averages the gradients) or ``global``
(every rank's features gathered, so the negatives and the prior span the global batch, whose
official-target diagonal weight shrinks as it grows). In one process without a group both are the same.

Table IX alignments: ``impression_only`` aligns both levels with Impression; ``reversed`` swaps the two
sections; ``concat`` ("Find&Imp") aligns both levels with the embedding of the whole report (MGCA's
text, Impression then Findings; ``imitate embed --report``), its prior from that embedding too.

Every term that uses Findings drops the studies without Findings from its rows, columns and prior; with
fewer than two studies left the term is a zero that still carries a (zero) gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from imitate.losses.cicl import KERNELS, TARGET_MODES, CICLoss, Kernel, TargetMode

Alignment = Literal["hierarchical", "impression_only", "concat", "reversed"]
Gather = Literal["local", "global"]
VVPrior = Literal["official", "all", "none"]
GATHERS: tuple[str, ...] = ("local", "global")
VV_PRIORS: tuple[str, ...] = ("official", "all", "none")
TERMS: tuple[str, ...] = ("vlh1", "vlm1", "vlh2", "vlm2", "vvh", "vvm")
TERM_GROUPS: dict[str, tuple[str, ...]] = {
    "vvh": ("vvh",),
    "vlh": ("vlh1", "vlh2"),
    "vvm": ("vvm",),
    "vlm": ("vlm1", "vlm2"),
}
# alignment -> (text of the high level, text of the multi level)
ALIGNMENTS: dict[str, tuple[str, str]] = {
    "hierarchical": ("impression", "findings"),
    "impression_only": ("impression", "impression"),
    "concat": ("report", "report"),
    "reversed": ("findings", "impression"),
}


def terms_from_groups(groups: tuple[str, ...]) -> tuple[str, ...]:
    """Table VIII row (e.g. ``("vvh", "vlh")``) -> the enabled term names, in canonical order."""
    unknown = set(groups) - set(TERM_GROUPS)
    if unknown:
        raise ValueError(f"unknown loss groups {sorted(unknown)}; expected some of {sorted(TERM_GROUPS)}")
    enabled = {term for group in groups for term in TERM_GROUPS[group]}
    return tuple(term for term in TERMS if term in enabled)


@dataclass(frozen=True)
class LossConfig:
    """Temperatures, CICL settings and ablation switches of :class:`ImitateLoss`."""

    tau_vl: float = 0.07
    tau_vv: float = 0.2
    lam: float = 0.2
    kernel: Kernel = "exp"
    target: TargetMode = "official"
    cicl: bool = True
    alignment: Alignment = "hierarchical"
    terms: tuple[str, ...] = TERMS
    vv_prior: VVPrior = "official"
    gather: Gather = "local"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; expected one of {KERNELS}")
        if self.target not in TARGET_MODES:
            raise ValueError(f"unknown target mode {self.target!r}; expected one of {TARGET_MODES}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {self.alignment!r}; expected one of {sorted(ALIGNMENTS)}")
        if not self.terms or set(self.terms) - set(TERMS):
            raise ValueError(f"terms must be a non-empty subset of {TERMS}, got {self.terms}")
        if self.vv_prior not in VV_PRIORS:
            raise ValueError(f"unknown vv_prior {self.vv_prior!r}; expected one of {VV_PRIORS}")
        if self.gather not in GATHERS:
            raise ValueError(f"unknown gather {self.gather!r}; expected one of {GATHERS}")


class Text(NamedTuple):
    """One text target: projected features, raw embeddings for the prior, and the rows that exist."""

    proj: Tensor
    raw: Tensor
    mask: Tensor | None


def gather_features(x: Tensor, rank: int, world_size: int) -> Tensor:
    """Concatenate ``x`` over all ranks; the local slot keeps ``x`` itself so its gradient flows."""
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    parts[rank] = x
    return torch.cat(parts)


class ImitateLoss(nn.Module):
    """The six terms of §III-E; ``forward`` takes exactly the keys of :class:`ImitateModel`'s output."""

    def __init__(
        self, cfg: LossConfig, *, rank: int = 0, world_size: int = 1, distributed: bool | None = None
    ) -> None:
        """``distributed``: a process group exists (default: ``world_size > 1``); ``global`` gathers over it."""
        super().__init__()
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.gather = cfg.gather == "global" and (world_size > 1 if distributed is None else distributed)
        shared = {"lam": cfg.lam, "kernel": cfg.kernel, "target": cfg.target, "use_prior": cfg.cicl}
        self.vl = CICLoss(cfg.tau_vl, **shared)
        self.vv = CICLoss(cfg.tau_vv, **shared)

    def _gather(self, x: Tensor) -> Tensor:
        if not self.gather:
            return x
        if x.dtype == torch.bool:
            return gather_features(x.to(torch.uint8), self.rank, self.world_size).bool()
        return gather_features(x, self.rank, self.world_size)

    def _vv_priors(self, th: Text, tm: Text) -> tuple[tuple[Tensor | None, Tensor | None], ...]:
        """(prior, mask) of ``vvh`` and of ``vvm`` under ``cfg.vv_prior``."""
        if self.cfg.vv_prior == "all":
            return (th.raw, th.mask), (tm.raw, tm.mask)
        if self.cfg.vv_prior == "none":
            return (None, None), (None, None)
        return (th.raw, th.mask), (None, None)

    @staticmethod
    def _term(loss: CICLoss, a: Tensor, b: Tensor, prior: Tensor | None, mask: Tensor | None) -> Tensor:
        if mask is not None:
            a, b = a[mask], b[mask]
            prior = None if prior is None else prior[mask]
            if a.shape[0] < 2:
                return (a.sum() + b.sum()).float() * 0.0
        return loss(a, b, prior)

    def forward(
        self,
        high1: Tensor,
        mid1: Tensor,
        high2: Tensor,
        mid2: Tensor,
        mid1_vv: Tensor,
        mid2_vv: Tensor,
        findings: Tensor,
        impression: Tensor,
        findings_raw: Tensor,
        impression_raw: Tensor,
        has_findings: Tensor,
        report: Tensor | None = None,
        report_raw: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{term}_loss`` for every enabled term and ``total_loss`` (their sum)."""
        g = self._gather
        high1, mid1, high2, mid2, mid1_vv, mid2_vv = map(g, (high1, mid1, high2, mid2, mid1_vv, mid2_vv))
        high_source, mid_source = ALIGNMENTS[self.cfg.alignment]
        texts = {
            "findings": Text(g(findings), g(findings_raw), g(has_findings.bool())),
            "impression": Text(g(impression), g(impression_raw), None),
        }
        if "report" in (high_source, mid_source):
            if report is None or report_raw is None:
                raise ValueError(
                    "alignment 'concat' needs whole-report embeddings: run `imitate embed --report` "
                    "(the workflow does when pretrain.alignment is concat)"
                )
            texts["report"] = Text(g(report), g(report_raw), None)
        th, tm = texts[high_source], texts[mid_source]
        vvh, vvm = self._vv_priors(th, tm)
        pairs = {
            "vlh1": (self.vl, high1, th.proj, th.raw, th.mask),
            "vlm1": (self.vl, mid1, tm.proj, tm.raw, tm.mask),
            "vlh2": (self.vl, high2, th.proj, th.raw, th.mask),
            "vlm2": (self.vl, mid2, tm.proj, tm.raw, tm.mask),
            "vvh": (self.vv, high1, high2, *vvh),
            "vvm": (self.vv, mid1_vv, mid2_vv, *vvm),
        }
        out = {f"{name}_loss": self._term(*pairs[name]) for name in self.cfg.terms}
        out["total_loss"] = torch.stack(list(out.values())).sum()
        return out
