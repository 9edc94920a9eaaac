"""The numbers the IMITATE paper reports (Tables III, IV, VI, VII), shown beside ours on real data.

Keyed by task, then by the adapter of the dataset the paper used, then by the paper's method name, then
by column: a training fraction (percent, as written in our tables) or a metric. Values in percent.
"""

from __future__ import annotations

# Table III: linear classification, AUC (CheXpert, RSNA) and accuracy (COVIDx) at 1/10/100 %.
_LINEAR_METHODS = ("Random Init", "ImageNet Init", "ConVIRT", "GLoRIA", "GLoRIA-MIMIC", "MGCA", "MRM",
                   "MedKLIP*", "IMITATE")
_LINEAR = {
    "chexpert": ((56.1, 62.6, 65.7), (74.4, 79.7, 81.4), (85.9, 86.8, 87.3), (86.6, 87.8, 88.1),
                 (87.1, 88.7, 88.0), (87.6, 88.0, 88.2), (88.5, 88.5, 88.7), (86.2, 86.5, 87.7),
                 (89.1, 89.5, 89.7)),
    "rsna": ((58.9, 69.4, 74.1), (74.9, 74.5, 76.3), (77.4, 80.1, 81.3), (86.1, 88.0, 88.6), (87.0, 89.4, 90.2),
             (88.6, 89.1, 89.9), (91.3, 92.7, 93.3), (87.3, 88.0, 89.3), (91.7, 92.9, 93.5)),
    "covidx": ((50.5, 60.3, 70.0), (64.8, 78.8, 86.3), (72.5, 82.5, 92.0), (67.3, 77.8, 89.0), (66.5, 80.5, 88.8),
               (72.0, 83.5, 90.5), (66.9, 79.3, 90.8), (74.5, 85.2, 90.3), (76.8, 87.6, 93.1)),
}
# Table IV: fine-tuned classification on ChestX-ray14, macro AUC at 1/10/100 %.
_FINETUNE = {
    "Random": (58.1, 69.1, 79.0), "ImageNet": (63.5, 72.6, 80.4), "ConVIRT": (64.9, 77.1, 80.8),
    "GLoRIA": (59.7, 74.3, 80.0), "BioViL": (57.9, 72.7, 80.0), "MedKLIP*": (60.9, 74.8, 80.1),
    "KAD*": (78.7, 80.7, 82.5), "IMITATE": (80.2, 82.2, 83.9),
}
# Table VI: zero-shot classification, AUC / F1 / ACC (macro over the dataset's diseases).
_ZERO_SHOT_METHODS = ("ConVIRT", "GLoRIA", "BioViL", "CheXzero*", "MedKLIP*", "IMITATE")
_ZERO_SHOT = {
    "rsna": ((80.4, 58.4, 76.1), (71.5, 49.0, 71.3), (82.8, 58.3, 76.7), (85.8, 62.1, 79.4), (86.9, 63.4, 80.0),
             (87.5, 64.6, 81.3)),
    "siim": ((64.3, 43.3, 57.0), (53.4, 38.2, 40.5), (70.8, 48.6, 69.1), (68.8, 47.0, 54.7), (89.2, 68.3, 84.3),
             (89.9, 69.1, 85.2)),
}
# Table VII: image-to-text retrieval on CheXpert 5x200, Precision@5/10/100.
_RETRIEVAL = {"ConVIRT": (66.98, 63.06, 49.03), "GLoRIA": (69.24, 67.22, 53.78), "IMITATE": (71.83, 69.75, 55.21)}

_FRACTIONS = ("1", "10", "100")

PAPER: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "linear_classification": {
        adapter: {m: dict(zip(_FRACTIONS, v, strict=True)) for m, v in zip(_LINEAR_METHODS, rows, strict=True)}
        for adapter, rows in _LINEAR.items()
    },
    "finetune_classification": {
        "chestxray14": {m: dict(zip(_FRACTIONS, v, strict=True)) for m, v in _FINETUNE.items()},
    },
    "zero_shot": {
        adapter: {m: dict(zip(("auc_macro", "f1_macro", "acc_macro"), v, strict=True))
                  for m, v in zip(_ZERO_SHOT_METHODS, rows, strict=True)}
        for adapter, rows in _ZERO_SHOT.items()
    },
    "retrieval": {
        "chexpert_5x200": {m: dict(zip(("precision@5", "precision@10", "precision@100"), v, strict=True))
                           for m, v in _RETRIEVAL.items()},
    },
}


def paper_values(task: str, adapter: str) -> dict[str, dict[str, float]]:
    """The paper's rows (method -> column -> percent) for ``task`` on the dataset read by ``adapter``."""
    return PAPER.get(task, {}).get(adapter, {})
