"""The compared encoders: seeded random init, and weights from any file, picked out by a key prefix."""

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from imitate.evaluate.encoders import Method, build_encoder, frozen_encoder, method_from_config


def _same_weights(a, b):
    """Every tensor equal under the same torchvision key (a torchvision model's classifier ``fc`` aside)."""
    first, second = ({k: v for k, v in m.state_dict().items() if not k.startswith("fc.")} for m in (a, b))
    return first.keys() == second.keys() and all(torch.equal(v, second[k]) for k, v in first.items())


def test_random_init_depends_on_the_seed_only():
    method = Method("random_init", "random")
    assert method.is_random
    assert _same_weights(build_encoder(method, "resnet18", seed=3), build_encoder(method, "resnet18", seed=3))
    assert not _same_weights(build_encoder(method, "resnet18", seed=3), build_encoder(method, "resnet18", seed=4))


def test_a_lightning_checkpoint_is_read_through_its_prefix(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)
    state = {f"img_encoder_q.model.{k}": v for k, v in source.state_dict().items()}
    state["text_encoder.weight"] = torch.zeros(2)  # another part of the model: ignored
    path = tmp_path / "mgca.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    method = method_from_config("mgca", {"weights": str(path), "prefix": "img_encoder_q.model."})
    encoder = frozen_encoder(method, "resnet18", seed=1)
    assert _same_weights(encoder, source)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_pretrained_safetensors_and_clear_errors(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    assert _same_weights(build_encoder(Method("imitate", "pretrain"), "resnet18", seed=0, pretrained=path), source)
    with pytest.raises(ValueError, match="do not fit the backbone"):
        build_encoder(Method("imitate", "pretrain"), "resnet50", seed=0, pretrained=path)
    with pytest.raises(ValueError, match=r"no tensors under the key prefix 'nope\.'"):
        build_encoder(Method("x", str(path), "nope."), "resnet18", seed=0)
    with pytest.raises(FileNotFoundError, match="encoder weights not found"):
        build_encoder(Method("x", str(tmp_path / "missing.pt")), "resnet18", seed=0)
    with pytest.raises(ValueError, match="give its file"):
        build_encoder(Method("imitate", "pretrain"), "resnet18", seed=0)
