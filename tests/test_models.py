"""Backbone feature contract, encoder export/import, aggregation block P(·), and the IMITATE model."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from imitate.losses import ImitateLoss, LossConfig
from imitate.models import ImitateModel, ModelConfig, ResNetBackbone
from imitate.models.aggregation import HierarchicalAggregation, draw_channels, kept_channels, select_channels

REPO = Path(__file__).resolve().parents[1]
TINY = ModelConfig(backbone="resnet18", attn_dim=32, attn_heads=2, token_size=4, proj_dim=16, text_dim=12)


def batch(n: int = 6, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "view1": torch.randn(n, 3, size, size, generator=g),
        "view2": torch.randn(n, 3, size, size, generator=g),
        "findings_emb": torch.randn(n, 12, generator=g),
        "impression_emb": torch.randn(n, 12, generator=g),
        "has_findings": torch.tensor([True, False, True, True, False, True][:n]),
    }


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_feature_info_matches_the_actual_outputs(name: str):
    backbone = ResNetBackbone(name)
    features = backbone.forward_features(torch.randn(2, 3, 64, 64))
    assert len(features) == len(backbone.feature_info) == 4
    for info, feature in zip(backbone.feature_info, features, strict=True):
        assert feature.shape == (2, info.channels, 64 // info.reduction, 64 // info.reduction), info.name
    assert backbone(torch.randn(2, 3, 64, 64)).shape == (2, backbone.num_features)
    assert [i.channels for i in backbone.feature_info] == (
        [64, 128, 256, 512] if name == "resnet18" else [256, 512, 1024, 2048]
    )


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_exported_encoder_loads_into_torchvision_with_only_fc_missing(name: str):
    backbone = ResNetBackbone(name)
    state = backbone.export_torchvision_state_dict()
    net = getattr(torchvision.models, name)(weights=None)
    result = net.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    net.fc = torch.nn.Identity()
    backbone.eval(), net.eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(net(x), backbone(x), atol=1e-5)


def test_init_from_a_torchvision_file_and_from_safetensors(tmp_path: Path):
    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "rn18.pth")  # with fc: dropped on load
    loaded = ResNetBackbone("resnet18", init=str(tmp_path / "rn18.pth"))
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    save_file(loaded.export_torchvision_state_dict(), tmp_path / "enc.safetensors")
    again = ResNetBackbone("resnet18", init=str(tmp_path / "enc.safetensors"))
    assert torch.equal(again.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_bad_init_gives_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"hub/checkpoints/resnet18-f37072fd\.pth.*never downloaded"):
        ResNetBackbone("resnet18", init="imagenet")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "rn34.pth")
    with pytest.raises(ValueError, match=r"rn34\.pth: not a torchvision resnet18"):
        ResNetBackbone("resnet18", init=str(tmp_path / "rn34.pth"))
    with pytest.raises(FileNotFoundError, match=r"absent\.pth: backbone init file not found"):
        ResNetBackbone("resnet18", init=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown backbone"):
        ResNetBackbone("vgg16")


def test_kept_channels_follow_the_keep_ratios():
    kept = [kept_channels(c, r) for c, r in zip([256, 512, 1024, 2048], [0.15, 0.1, 0.1, 0.1], strict=True)]
    assert kept == [38, 51, 102, 204]
    assert kept_channels(4, 0.1) == 1
    with pytest.raises(ValueError, match="keep ratio"):
        kept_channels(64, 0.0)


def test_channel_draws():
    torch.manual_seed(0)
    shared = draw_channels(5, 40, 10, per_sample=False, replacement=False, device=torch.device("cpu"))
    assert shared.shape == (10,) and len(set(shared.tolist())) == 10
    per = draw_channels(5, 40, 10, per_sample=True, replacement=False, device=torch.device("cpu"))
    assert per.shape == (5, 10) and all(len(set(row.tolist())) == 10 for row in per)
    assert len({tuple(row.tolist()) for row in per}) > 1
    repl = draw_channels(5, 3, 10, per_sample=False, replacement=True, device=torch.device("cpu"))
    assert repl.shape == (10,) and len(set(repl.tolist())) <= 3  # 10 draws from 3 channels must repeat
    feature = torch.randn(5, 40, 3, 3)
    picked = select_channels(feature, per)
    assert torch.equal(picked[2, 7], feature[2, per[2, 7]])
    assert torch.equal(select_channels(feature, shared), feature[:, shared])


@pytest.mark.parametrize("sampling", ["batch", "sample"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_aggregation_cls_equals_full_self_attention(sampling: str, layer_norm: bool):
    block = HierarchicalAggregation(
        [8, 16], [0.5, 0.25], token_size=4, attn_dim=16, heads=2, sampling=sampling, layer_norm=layer_norm
    )  # type: ignore[arg-type]
    torch.nn.init.normal_(block.pos_embed)
    torch.nn.init.normal_(block.cls_token)
    features = [torch.randn(3, 8, 8, 8), torch.randn(3, 16, 4, 4)]
    torch.manual_seed(1)
    out = block(features)
    torch.manual_seed(1)
    x = block.token_proj(block.tokens(features))
    x = torch.cat([block.cls_token.expand(3, -1, -1), x], dim=1) + block.pos_embed
    full = block.norm(x + block.attn(x, x, x, need_weights=False)[0])[:, 0]
    assert block.num_tokens == 4 + 4 and out.shape == (3, 16)
    assert torch.allclose(out, full, atol=1e-5)


def test_model_output_keys_are_the_loss_arguments():
    model = ImitateModel(TINY)
    loss_arguments = set(inspect.signature(ImitateLoss.forward).parameters) - {"self"}
    with_report = model(**batch(), report_emb=torch.randn(6, 12))
    assert set(with_report) == loss_arguments
    out = model(**batch())
    assert set(out) == loss_arguments - {"report", "report_raw"}  # the two the loss needs only for concat
    for key in ("high1", "mid1", "high2", "mid2", "mid1_vv", "mid2_vv", "impression"):
        assert out[key].shape == (6, 16)
        assert torch.allclose(out[key].norm(dim=1), torch.ones(6), atol=1e-5), key
    assert torch.count_nonzero(out["findings"][~out["has_findings"]]) == 0
    assert not torch.equal(out["mid1"], out["mid1_vv"])  # independent channel draws for V-L and V-V


def test_gradients_reach_backbone_aggregation_projectors_never_text_embeddings():
    model = ImitateModel(TINY)
    inputs = batch()
    inputs["findings_emb"].requires_grad_(True)
    inputs["impression_emb"].requires_grad_(True)
    ImitateLoss(LossConfig())(**model(**inputs))["total_loss"].backward()
    for module in (
        model.backbone.conv1,
        model.backbone.layer1,
        model.backbone.layer4,
        model.aggregation.attn,
        model.aggregation.token_proj,
        model.high_proj,
        model.multi_proj,
        model.text_proj,
    ):
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None and torch.count_nonzero(g) > 0 for g in grads), module
    assert model.aggregation.pos_embed.grad is not None and model.aggregation.cls_token.grad is not None
    assert inputs["findings_emb"].grad is None and inputs["impression_emb"].grad is None


def test_changing_a_missing_findings_embedding_changes_nothing():
    model, loss = ImitateModel(TINY), ImitateLoss(LossConfig())
    a = batch()
    b = {k: v.clone() for k, v in a.items()}
    b["findings_emb"][~a["has_findings"]] = 1000.0
    torch.manual_seed(3)
    out_a = loss(**model(**a))
    torch.manual_seed(3)
    out_b = loss(**model(**b))
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert model.text_proj[1].running_mean.abs().max() < 100  # the BatchNorm never saw the 1000s


def test_fewer_than_two_findings_are_not_projected():
    inputs = batch()
    inputs["has_findings"] = torch.tensor([False, False, True, False, False, False])
    out = ImitateModel(TINY)(**inputs)
    assert not out["has_findings"].any() and torch.count_nonzero(out["findings"]) == 0


def test_encoder_is_the_bare_backbone():
    model = ImitateModel(TINY)
    assert model.encoder() is model.backbone
    assert not any(k.startswith(("aggregation", "fc")) for k in model.encoder().state_dict())


def test_models_package_does_not_import_the_training_runner():
    code = (
        "import sys, imitate.models, imitate.losses\n"
        "print(sorted(m for m in sys.modules if m.startswith(('imitate.train', 'snakemake'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_concat_alignment_trains_on_the_whole_report_embedding():
    model = ImitateModel(TINY)
    inputs = {**batch(), "report_emb": torch.randn(6, 12)}
    inputs["report_emb"].requires_grad_(True)
    out = model(**inputs)
    losses = ImitateLoss(LossConfig(alignment="concat"))(**out)
    losses["total_loss"].backward()
    assert inputs["report_emb"].grad is None and model.text_proj[0].weight.grad is not None
    other_prior = out["report_raw"].flip(0)  # the same vectors, paired with other studies
    changed = ImitateLoss(LossConfig(alignment="concat"))(**{**out, "report_raw": other_prior})
    assert changed["vlh1_loss"].item() != losses["vlh1_loss"].item()  # its prior is the report's own
    with pytest.raises(ValueError, match=r"imitate embed --report"):
        ImitateLoss(LossConfig(alignment="concat"))(**model(**batch()))
