"""CICL and the six-term IMITATE loss: hand-computed values, invariances, masking, switches, gathering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imitate.losses import ImitateLoss, LossConfig, correlation_prior, infonce_loss, soft_target_ce
from imitate.losses.cicl import (
    CICLoss,
    cicl_loss,
    cicl_targets,
    official_targets,
    paper_targets,
    smooth,
    smoothed_prior,
)
from imitate.losses.imitate_loss import TERMS, terms_from_groups

FEATURES = ("high1", "mid1", "high2", "mid2", "mid1_vv", "mid2_vv", "findings", "impression", "report")
HAS_FINDINGS = [True, True, False, True, True, True, False, True]


def loss_inputs(seed: int = 0, batch: int = 8, has_findings: list[bool] | None = None) -> dict[str, torch.Tensor]:
    """Unit-norm features and raw text embeddings sharing a component (so correlations are mostly > 0)."""
    g = torch.Generator().manual_seed(seed)
    out = {k: F.normalize(torch.randn(batch, 16, generator=g), dim=-1) for k in FEATURES}
    common = torch.randn(1, 12, generator=g)
    out["findings_raw"] = common + 0.8 * torch.randn(batch, 12, generator=g)
    out["impression_raw"] = common + 0.8 * torch.randn(batch, 12, generator=g)
    out["report_raw"] = common + 0.8 * torch.randn(batch, 12, generator=g)
    mask = torch.tensor(has_findings if has_findings is not None else HAS_FINDINGS[:batch])
    out["has_findings"] = mask
    out["findings"] = out["findings"] * mask[:, None]
    return out


# --- the tiny hand-computed batch -------------------------------------------------------------------
# image features a1 = (1, 0), a2 = (0, 1); text features b1 = (1, 0), b2 = (0.6, 0.8); tau = 0.5
# logits a.bT / tau = [[2.0, 1.2], [0.0, 1.6]]
# raw text t1 = (1, 2, 3, 4), t2 = (1, 2, 3, 5): deviations (-1.5, -.5, .5, 1.5) and (-1.75, -.75, .25, 2.25),
# covariance sum 6.5, squared norms 5 and 8.75, so R12 = 6.5 / sqrt(5 * 8.75)
A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
B = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
RAW = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]])
TAU = 0.5
R12 = 6.5 / math.sqrt(5 * 8.75)
S12 = 1 - math.exp(-0.2 * R12)  # Eq. 4, lambda = 0.2


def _hand_loss(t11: float, t12: float, t21: float, t22: float) -> float:
    """Both directions of the soft-target CE over the logits above, each averaged over its 2 rows."""
    lse1, lse2 = math.log(math.exp(2.0) + math.exp(1.2)), math.log(math.exp(0.0) + math.exp(1.6))
    image_to_text = -(t11 * (2.0 - lse1) + t12 * (1.2 - lse1) + t21 * (0.0 - lse2) + t22 * (1.6 - lse2)) / 2
    # the transposed logits [[2.0, 0.0], [1.2, 1.6]]
    lse1, lse2 = math.log(math.exp(2.0) + math.exp(0.0)), math.log(math.exp(1.2) + math.exp(1.6))
    text_to_image = -(t11 * (2.0 - lse1) + t12 * (0.0 - lse1) + t21 * (1.2 - lse2) + t22 * (1.6 - lse2)) / 2
    return image_to_text + text_to_image


def test_correlation_prior_by_hand_and_against_numpy():
    r = correlation_prior(RAW)
    assert r[0, 1].item() == pytest.approx(R12, abs=1e-6)
    assert r[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(6, 20, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(correlation_prior(x).numpy(), np.corrcoef(x.numpy()), atol=1e-5)


def test_kernels_by_hand():
    r = torch.tensor([0.5, -0.5])
    assert smooth(r, "exp", 0.2).tolist() == pytest.approx([1 - math.exp(-0.1), 1 - math.exp(0.1)])
    g = 1 / math.sqrt(2 * math.pi) * math.exp(-0.125)
    assert smooth(r, "gaussian", 0.2).tolist() == pytest.approx([g, g])
    assert smooth(r, "laplacian", 0.2).tolist() == pytest.approx([0.5 * math.exp(-0.5)] * 2)
    sigmoid = [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(0.5))]
    assert smooth(r, "sigmoid", 0.2).tolist() == pytest.approx(sigmoid)
    with pytest.raises(ValueError, match="unknown kernel"):
        smooth(r, "cosine", 0.2)  # type: ignore[arg-type]


def test_paper_cicl_by_hand():
    loss = CICLoss(TAU, lam=0.2, kernel="exp", target="paper")(A, B, RAW)
    expected = _hand_loss(1 / (1 + S12), S12 / (1 + S12), S12 / (1 + S12), 1 / (1 + S12))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_official_cicl_by_hand():
    loss = CICLoss(TAU, lam=0.2, kernel="exp", target="official")(A, B, RAW)
    expected = _hand_loss(1.0, TAU * S12, TAU * S12, 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_infonce_by_hand():
    assert infonce_loss(A, B, TAU).item() == pytest.approx(_hand_loss(1.0, 0.0, 0.0, 1.0), rel=1e-5)


def test_paper_targets_clip_negatives_and_are_distributions():
    r = torch.tensor([[1.0, 0.5, -0.5], [0.5, 1.0, 0.2], [-0.5, 0.2, 1.0]])
    t = paper_targets(r, "exp", 0.2)
    assert torch.allclose(t.sum(dim=1), torch.ones(3))
    assert t[0, 2].item() == 0.0 and t[2, 0].item() == 0.0
    assert smoothed_prior(r)[0, 2].item() < 0  # Eq. 4 itself keeps the sign
    row = torch.tensor([1.0, 1 - math.exp(-0.1), 0.0])
    assert t[0].tolist() == pytest.approx((row / row.sum()).tolist())


def test_official_targets_zero_diagonal_before_kernel():
    r = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    t = official_targets(r, tau=0.1, kernel="gaussian")
    g0, g5 = 1 / math.sqrt(2 * math.pi), 1 / math.sqrt(2 * math.pi) * math.exp(-0.125)
    assert t.flatten().tolist() == pytest.approx([1 + 0.1 * g0, 0.1 * g5, 0.1 * g5, 1 + 0.1 * g0])


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_lambda_zero_gives_identity_targets_and_infonce(mode: str):
    x = loss_inputs()
    r = correlation_prior(x["impression_raw"])
    targets = cicl_targets(r, mode=mode, tau=0.07, kernel="exp", lam=0.0)  # type: ignore[arg-type]
    assert torch.equal(targets, torch.eye(8))
    cicl = cicl_loss(x["high1"], x["impression"], targets, 0.07)
    assert cicl.item() == pytest.approx(infonce_loss(x["high1"], x["impression"], 0.07).item(), rel=1e-6)


def test_soft_target_ce_with_one_hot_is_cross_entropy():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([3, 0, 1, 4, 2])
    expected = F.cross_entropy(logits, labels)
    assert soft_target_ce(logits, F.one_hot(labels, 5).float()).item() == pytest.approx(expected.item())


def test_total_is_the_sum_of_six_terms():
    out = ImitateLoss(LossConfig())(**loss_inputs())
    assert set(out) == {f"{t}_loss" for t in TERMS} | {"total_loss"}
    assert out["total_loss"].item() == pytest.approx(sum(out[f"{t}_loss"].item() for t in TERMS), rel=1e-6)


def test_permuting_the_batch_leaves_the_loss_unchanged():
    x = loss_inputs()
    perm = torch.tensor([5, 2, 7, 0, 3, 1, 6, 4])
    loss = ImitateLoss(LossConfig())
    a, b = loss(**x), loss(**{k: v[perm] for k, v in x.items()})
    for key in a:
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-5), key


def test_studies_without_findings_contribute_nothing():
    x = loss_inputs()
    masked = ~x["has_findings"]
    y = dict(x)
    y["findings"] = x["findings"].clone()
    y["findings"][masked] = F.normalize(torch.randn(int(masked.sum()), 16), dim=-1)
    y["findings_raw"] = x["findings_raw"].clone()
    y["findings_raw"][masked] = 100 * torch.randn(int(masked.sum()), 12)
    loss = ImitateLoss(LossConfig())
    a, b = loss(**x), loss(**y)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the Findings terms equal the same terms computed on the kept studies alone
    kept = {k: v[x["has_findings"]] for k, v in x.items()}
    assert a["vlm1_loss"].item() == pytest.approx(loss(**kept)["vlm1_loss"].item(), rel=1e-6)


def test_fewer_than_two_findings_gives_a_grad_safe_zero():
    x = loss_inputs(has_findings=[False, False, True, False, False, False, False, False])
    x["mid1"].requires_grad_(True)
    out = ImitateLoss(LossConfig())(**x)
    assert out["vlm1_loss"].item() == 0.0 and out["vlm2_loss"].item() == 0.0
    out["vlm1_loss"].backward()
    assert x["mid1"].grad is not None and torch.count_nonzero(x["mid1"].grad) == 0


PRIOR_TERMS = {"vlh1", "vlh2", "vlm1", "vlm2", "vvh"}


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        ({"kernel": "gaussian"}, PRIOR_TERMS),
        ({"kernel": "laplacian"}, PRIOR_TERMS),
        ({"kernel": "sigmoid"}, PRIOR_TERMS),
        ({"lam": 0.5}, PRIOR_TERMS),
        ({"target": "paper"}, PRIOR_TERMS),
        ({"cicl": False}, PRIOR_TERMS),
        ({"alignment": "impression_only"}, {"vlm1", "vlm2"}),
        ({"alignment": "reversed"}, PRIOR_TERMS),
        ({"alignment": "concat"}, PRIOR_TERMS),
        ({"tau_vl": 0.1}, {"vlh1", "vlh2", "vlm1", "vlm2"}),
        ({"tau_vv": 0.1}, {"vvh", "vvm"}),
    ],
)
def test_each_switch_changes_exactly_the_terms_it_names(change: dict, changed: set[str]):
    x = loss_inputs()
    base, other = ImitateLoss(LossConfig())(**x), ImitateLoss(LossConfig(**change))(**x)
    for term in TERMS:
        same = other[f"{term}_loss"].item() == pytest.approx(base[f"{term}_loss"].item(), rel=1e-6)
        assert same != (term in changed), term


@pytest.mark.parametrize(
    ("groups", "terms"),
    [
        (("vvh",), {"vvh"}),
        (("vvh", "vlh"), {"vvh", "vlh1", "vlh2"}),
        (("vlm",), {"vlm1", "vlm2"}),
        (("vvh", "vlh", "vvm"), {"vvh", "vlh1", "vlh2", "vvm"}),
    ],
)
def test_table_viii_groups_switch_terms_off(groups: tuple[str, ...], terms: set[str]):
    x = loss_inputs()
    full = ImitateLoss(LossConfig())(**x)
    part = ImitateLoss(LossConfig(terms=terms_from_groups(groups)))(**x)
    assert set(part) == {f"{t}_loss" for t in terms} | {"total_loss"}
    assert all(torch.equal(part[f"{t}_loss"], full[f"{t}_loss"]) for t in terms)
    assert part["total_loss"].item() == pytest.approx(sum(full[f"{t}_loss"].item() for t in terms), rel=1e-6)


def test_bad_switches_are_rejected():
    with pytest.raises(ValueError, match="alignment"):
        LossConfig(alignment="findings_only")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="terms"):
        LossConfig(terms=("vlh1", "vvx"))
    with pytest.raises(ValueError, match="groups"):
        terms_from_groups(("vlx",))


def _other_rank(x: torch.Tensor) -> torch.Tensor:
    """What the fake second rank holds: a different, deterministic tensor of the same shape."""
    return torch.roll(x.detach(), 1, dims=-1)


def _other_rank_mask(mask: torch.Tensor) -> torch.Tensor:
    """The fake second rank's mask: the loss gathers masks as uint8."""
    return _other_rank(mask.to(torch.uint8)).bool()


def test_gathering_across_ranks_matches_one_big_batch(monkeypatch: pytest.MonkeyPatch):
    def fake_all_gather(parts: list[torch.Tensor], tensor: torch.Tensor) -> None:
        parts[0].copy_(_other_rank(tensor))
        parts[1].copy_(tensor.detach())

    monkeypatch.setattr(torch.distributed, "all_gather", fake_all_gather)
    x = loss_inputs()
    local = {k: v.clone().requires_grad_(k in FEATURES) for k, v in x.items()}
    ref_local = {k: v.clone().requires_grad_(k in FEATURES) for k, v in x.items()}
    gathered = ImitateLoss(LossConfig(gather="global"), rank=1, world_size=2)(**local)
    ref = ImitateLoss(LossConfig())(
        **{
            k: torch.cat([_other_rank_mask(v) if v.dtype == torch.bool else _other_rank(v), v])
            for k, v in ref_local.items()
        }
    )
    for key in ref:
        assert gathered[key].item() == pytest.approx(ref[key].item(), rel=1e-5), key
    gathered["total_loss"].backward()
    ref["total_loss"].backward()
    for key in FEATURES[:-1]:  # all but "report", which only the concat alignment uses
        assert torch.allclose(local[key].grad, ref_local[key].grad, atol=1e-6), key
