"""The IMITATE model: vision encoder E_v, aggregation block P(·) and the three projectors.

The text encoder E_t is frozen, so its embeddings are precomputed (``imitate embed``) and enter as
tensors; only the text projector is trained here. Table XI's unfrozen text layers compute the
embeddings in the training step instead and pass ``text_grad=True``, so the projections' gradients
reach them (the correlation prior's ``*_raw`` copies stay detached either way).

Passes per step: the official code runs the ResNet four times (2 views × 2 independent channel draws,
one draw for the V-L terms and one for the V-V terms). Channel dropping happens after the backbone, so
the four passes compute the same feature maps; here each view goes through the backbone once and P(·)
is applied twice to its features with independent draws (``mid*`` for V-L, ``mid*_vv`` for V-V). The
forward values match the official at half the backbone cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imitate.models.aggregation import ChannelSampling, HierarchicalAggregation
from imitate.models.backbone import ResNetBackbone
from imitate.models.projectors import text_projector, vision_high_projector, vision_multi_projector


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`ImitateModel` (the ``model:`` block of config.yaml, plus ``text_dim``)."""

    backbone: str = "resnet50"
    init: str = "none"
    token_size: int = 16
    keep_ratios: tuple[float, ...] = (0.15, 0.10, 0.10, 0.10)
    attn_dim: int = 256
    attn_heads: int = 4
    proj_dim: int = 512
    text_dim: int = 768
    channel_sampling: ChannelSampling = "batch"
    channel_replacement: bool = False
    attn_layer_norm: bool = False


class ImitateModel(nn.Module):
    """Two augmented views + frozen text embeddings -> the projected, L2-normalised features of the loss.

    ``forward`` returns exactly the keyword arguments of :meth:`imitate.losses.ImitateLoss.forward`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetBackbone(cfg.backbone, cfg.init)
        self.aggregation = HierarchicalAggregation(
            [info.channels for info in self.backbone.feature_info],
            cfg.keep_ratios,
            token_size=cfg.token_size,
            attn_dim=cfg.attn_dim,
            heads=cfg.attn_heads,
            sampling=cfg.channel_sampling,
            replacement=cfg.channel_replacement,
            layer_norm=cfg.attn_layer_norm,
        )
        self.high_proj = vision_high_projector(self.backbone.num_features, cfg.proj_dim)
        self.multi_proj = vision_multi_projector(cfg.attn_dim, cfg.proj_dim)
        self.text_proj = text_projector(cfg.text_dim, cfg.proj_dim)

    def encoder(self) -> ResNetBackbone:
        """The bare vision encoder E_v (P(·) and the projectors omitted), as used downstream."""
        return self.backbone

    def embed_image(self, images: Tensor) -> Tensor:
        """Images in the joint space (zero-shot, retrieval): ``normalize(high_proj(pool(last stage)))``, z_{v,h}."""
        return F.normalize(self.high_proj(self.backbone(images)), dim=-1)

    def embed_text(self, embeddings: Tensor) -> Tensor:
        """Frozen text-encoder vectors in the joint space: ``normalize(text_proj(e))``."""
        return F.normalize(self.text_proj(embeddings.float()), dim=-1)

    def _vision(self, view: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features = self.backbone.forward_features(view)
        high = F.normalize(self.high_proj(self.backbone.pool(features[-1])), dim=-1)
        mid = F.normalize(self.multi_proj(self.aggregation(features)), dim=-1)
        mid_vv = F.normalize(self.multi_proj(self.aggregation(features)), dim=-1)
        return high, mid, mid_vv

    def _findings(self, emb: Tensor, has_findings: Tensor) -> tuple[Tensor, Tensor]:
        """Project only the studies that have Findings, so the others cannot touch the BatchNorm stats.

        Fewer than two such studies cannot form a Findings term (and BatchNorm needs two rows in
        training), so then none is projected and the returned mask is all false.
        """
        if int(has_findings.sum()) < 2:
            return emb.new_zeros(emb.shape[0], self.cfg.proj_dim), torch.zeros_like(has_findings)
        projected = F.normalize(self.text_proj(emb[has_findings]), dim=-1)
        out = projected.new_zeros(emb.shape[0], projected.shape[1]).index_put((has_findings,), projected)
        return out, has_findings

    def forward(
        self,
        view1: Tensor,
        view2: Tensor,
        findings_emb: Tensor,
        impression_emb: Tensor,
        has_findings: Tensor,
        report_emb: Tensor | None = None,
        text_grad: bool = False,
    ) -> dict[str, Tensor]:
        """Features for both views (``high*``, ``mid*``, ``mid*_vv``) and both report sections.

        ``findings_raw``/``impression_raw`` are the frozen embeddings (detached) for the correlation prior;
        ``has_findings`` is the mask the Findings terms must apply. With ``report_emb`` (the whole
        report, for the Find&Imp alignment) the output also has ``report`` and ``report_raw``. With
        ``text_grad`` the text projections are taken of the embeddings as given, not of detached copies.
        """
        findings_raw = findings_emb.detach().float()
        impression_raw = impression_emb.detach().float()
        has_findings = has_findings.to(device=findings_raw.device, dtype=torch.bool)
        high1, mid1, mid1_vv = self._vision(view1)
        high2, mid2, mid2_vv = self._vision(view2)
        findings_in = findings_emb.float() if text_grad else findings_raw
        impression_in = impression_emb.float() if text_grad else impression_raw
        findings, has_findings = self._findings(findings_in, has_findings)
        impression = F.normalize(self.text_proj(impression_in), dim=-1)
        out = {
            "high1": high1,
            "mid1": mid1,
            "high2": high2,
            "mid2": mid2,
            "mid1_vv": mid1_vv,
            "mid2_vv": mid2_vv,
            "findings": findings,
            "impression": impression,
            "findings_raw": findings_raw,
            "impression_raw": impression_raw,
            "has_findings": has_findings,
        }
        if report_emb is not None:
            out["report_raw"] = report_emb.detach().float()
            report_in = report_emb.float() if text_grad else out["report_raw"]
            out["report"] = F.normalize(self.text_proj(report_in), dim=-1)
        return out
