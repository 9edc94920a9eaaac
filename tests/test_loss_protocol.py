"""The loss's protocol switches: V-V priors (``vv_prior``) and where the batch ends (``gather``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from imitate.losses import ImitateLoss, LossConfig
from imitate.losses.cicl import CICLoss

FEATURES = ("high1", "mid1", "high2", "mid2", "mid1_vv", "mid2_vv", "findings", "impression")
HAS_FINDINGS = [True, False, True, True, True, True, False, True]
VL_TERMS = ("vlh1_loss", "vlm1_loss", "vlh2_loss", "vlm2_loss")


def inputs(seed: int = 0, batch: int = 8) -> dict[str, torch.Tensor]:
    """Unit-norm features and raw text sharing a component, so that the correlations are mostly positive."""
    g = torch.Generator().manual_seed(seed)
    out = {k: F.normalize(torch.randn(batch, 16, generator=g), dim=-1) for k in FEATURES}
    common = torch.randn(1, 12, generator=g)
    for text in ("findings", "impression"):
        out[f"{text}_raw"] = common + 0.5 * torch.randn(batch, 12, generator=g)
    out["has_findings"] = torch.tensor(HAS_FINDINGS[:batch])
    return out


# --- vv_prior ---------------------------------------------------------------------------------------


def expected_vv(x: dict[str, torch.Tensor], mode: str, high: str, mid: str) -> tuple[float, float]:
    """(vvh, vvm) by hand: CICL at tau_vv = 0.2 with the prior (and Findings rows) each mode names."""
    cicl = CICLoss(0.2)
    kept = x["has_findings"]
    mask = {"findings": kept, "impression": torch.ones_like(kept)}
    h, m = mask[high], mask[mid]
    with_high = cicl(x["high1"][h], x["high2"][h], x[f"{high}_raw"][h])
    if mode == "none":
        return cicl(x["high1"], x["high2"]).item(), cicl(x["mid1_vv"], x["mid2_vv"]).item()
    if mode == "official":
        return with_high.item(), cicl(x["mid1_vv"], x["mid2_vv"]).item()
    return with_high.item(), cicl(x["mid1_vv"][m], x["mid2_vv"][m], x[f"{mid}_raw"][m]).item()


@pytest.mark.parametrize("mode", ["official", "all", "none"])
@pytest.mark.parametrize(("alignment", "high", "mid"), [("hierarchical", "impression", "findings"),
                                                        ("reversed", "findings", "impression")])
def test_vv_prior_modes_against_hand_cicl(mode: str, alignment: str, high: str, mid: str):
    x = inputs()
    out = ImitateLoss(LossConfig(vv_prior=mode, alignment=alignment))(**x)  # type: ignore[arg-type]
    vvh, vvm = expected_vv(x, mode, high, mid)
    assert out["vvh_loss"].item() == pytest.approx(vvh, rel=1e-6)
    assert out["vvm_loss"].item() == pytest.approx(vvm, rel=1e-6)
    official = ImitateLoss(LossConfig(alignment=alignment))(**x)
    assert all(torch.equal(out[k], official[k]) for k in VL_TERMS)  # the V-L terms never change


def test_vv_prior_all_ignores_the_multi_level_rows_without_findings():
    x = inputs()
    y = {k: v.clone() for k, v in x.items()}
    y["mid1_vv"][~x["has_findings"]] = F.normalize(torch.randn(2, 16), dim=-1)
    loss = ImitateLoss(LossConfig(vv_prior="all"))
    assert torch.equal(loss(**x)["vvm_loss"], loss(**y)["vvm_loss"])
    assert not torch.equal(ImitateLoss(LossConfig())(**x)["vvm_loss"], ImitateLoss(LossConfig())(**y)["vvm_loss"])


def test_unknown_switch_values_are_rejected():
    with pytest.raises(ValueError, match="vv_prior"):
        LossConfig(vv_prior="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gather"):
        LossConfig(gather="all")  # type: ignore[arg-type]


# --- gather -----------------------------------------------------------------------------------------


def _losses_and_grads(x: dict[str, torch.Tensor], cfg: LossConfig, **kwargs) -> tuple[dict, dict]:
    leaves = {k: v.clone().requires_grad_(k in FEATURES) for k, v in x.items()}
    out = ImitateLoss(cfg, **kwargs)(**leaves)
    out["total_loss"].backward()
    return {k: v.detach() for k, v in out.items()}, {k: leaves[k].grad for k in FEATURES}


@pytest.fixture
def world_of_one(tmp_path: Path):
    """A gloo process group of this process alone, as ``torchrun --nproc_per_node 1`` makes."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_local_and_global_agree_bit_for_bit_in_a_world_of_one(world_of_one):
    x = inputs()
    ranks = {"rank": 0, "world_size": 1, "distributed": True}
    local = _losses_and_grads(x, LossConfig(gather="local"), **ranks)
    global_ = _losses_and_grads(x, LossConfig(gather="global"), **ranks)
    for ours, theirs in zip(local, global_, strict=True):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), ours.keys()


def _rank_worker(rank: int, store: str, out_dir: str) -> None:
    """One of two gloo ranks: its half of :func:`inputs` under both modes, saved for the test process."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        half = {k: v[4 * rank: 4 * rank + 4] for k, v in inputs().items()}
        ranks = {"rank": rank, "world_size": 2, "distributed": True}
        result = {mode: _losses_and_grads(half, LossConfig(gather=mode), **ranks) for mode in ("local", "global")}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_local_is_each_half_global_is_the_whole_batch(tmp_path: Path):
    mp.spawn(_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    x = inputs()
    whole, whole_grads = _losses_and_grads(x, LossConfig())  # one process: the concatenated batch
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        rows = slice(4 * rank, 4 * rank + 4)
        half, half_grads = _losses_and_grads({k: v[rows] for k, v in x.items()}, LossConfig())
        (local, local_grads), (global_, global_grads) = got["local"], got["global"]
        for key in whole:
            assert local[key].item() == pytest.approx(half[key].item(), rel=1e-6), (rank, key)
            assert global_[key].item() == pytest.approx(whole[key].item(), rel=1e-5), (rank, key)
        for key in FEATURES:
            torch.testing.assert_close(local_grads[key], half_grads[key], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(global_grads[key], whole_grads[key][rows], rtol=1e-5, atol=1e-7)
        assert local["total_loss"].item() != pytest.approx(global_["total_loss"].item(), rel=1e-3)
