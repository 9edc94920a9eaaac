"""Linear probing of frozen features: one linear layer, model chosen on validation macro AUC.

Features are standardised with the training subset's mean and standard deviation before the linear
layer. That is a fixed affine map, so the family of probes is unchanged; it only makes one learning rate
fit encoders whose feature scales differ by orders of magnitude (random init vs pretrained).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from imitate.evaluate.metrics import macro_auc, per_label_auc


@dataclass(frozen=True)
class ProbeSettings:
    """Optimisation of the linear head (paper §IV-B: AdamW 5e-4, batch 8)."""

    epochs: int = 50
    lr: float = 5e-4
    batch_size: int = 8
    weight_decay: float = 1e-6
    seed: int = 0


@dataclass(frozen=True)
class ProbeResult:
    """Test metrics of the probe chosen on validation, and how it was chosen."""

    test_macro_auc: float
    test_label_auc: np.ndarray
    best_epoch: int
    best_val_macro_auc: float
    n_train: int


def _scores(head: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(head(x)).numpy()


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    settings: ProbeSettings,
) -> ProbeResult:
    """Fit a multi-label linear head on ``train`` (features, labels); select on ``val``; score ``test``."""
    x_train, y_train = train
    mean = x_train.mean(0, keepdims=True)
    std = x_train.std(0, keepdims=True) + 1e-6

    def prepare(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    xt, yt = prepare(x_train), torch.from_numpy(y_train.astype(np.float32))
    xv, xs = prepare(val[0]), prepare(test[0])
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    head = nn.Linear(xt.shape[1], yt.shape[1])
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best = (-np.inf, 0, head.state_dict())
    for epoch in range(1, settings.epochs + 1):
        head.train()
        for idx in torch.randperm(len(xt), generator=generator).split(settings.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(xt[idx]), yt[idx]).backward()
            optimizer.step()
        head.eval()
        val_auc = macro_auc(val[1], _scores(head, xv))
        if np.isfinite(val_auc) and val_auc > best[0]:
            best = (val_auc, epoch, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    test_scores = _scores(head, xs)
    return ProbeResult(
        test_macro_auc=macro_auc(test[1], test_scores),
        test_label_auc=per_label_auc(test[1], test_scores),
        best_epoch=best[1],
        best_val_macro_auc=float(best[0]),
        n_train=len(xt),
    )


def nested_subsets(keys: list[str], fractions: list[float], seed: int) -> dict[float, list[str]]:
    """Training subsets for each percentage in ``fractions``, nested (1 % ⊂ 10 % ⊂ 100 %).

    One seeded permutation of the sorted keys; fraction f takes its first ceil(f/100 · n) keys (at
    least one), so every method and every seed sees the same images for a given subset seed.
    """
    order = np.random.default_rng(seed).permutation(len(keys))
    ranked = [sorted(keys)[i] for i in order]
    out = {}
    for fraction in fractions:
        n = max(1, int(np.ceil(fraction / 100.0 * len(ranked))))
        out[fraction] = sorted(ranked[:n])
    return out
