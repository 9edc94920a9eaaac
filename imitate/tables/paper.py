"""The numbers the IMITATE paper reports (Tables III-VII and the ablations VIII-XIII), shown beside ours on real data.

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
# Table V: segmentation Dice (SIIM, RSNA) and detection mAP (RSNA, Object-CXR) at 1/10/100 %. None: the
# paper's '-' (an mAP below 1 %). Its mAP comes from MGCA's code, which skips images without predictions:
# compare it with our map_mgca column, not with map (README, "Detection mAP").
_DENSE_METHODS = ("Random", "ImageNet", "ConVIRT", "GLoRIA", "GLoRIA-MIMIC", "MGCA", "MedKLIP*", "IMITATE")
_SEGMENTATION = {
    "siim": ((9.0, 28.6, 54.3), (10.2, 35.5, 63.5), (25.0, 43.2, 59.9), (35.8, 46.9, 63.4), (37.4, 57.1, 64.0),
             (49.7, 59.3, 64.2), (50.2, 60.8, 63.9), (53.9, 61.7, 64.5)),
    "rsna": ((6.9, 10.6, 18.5), (34.8, 39.9, 64.0), (55.0, 67.4, 67.5), (59.3, 67.5, 67.8), (60.3, 68.7, 68.3),
             (63.0, 68.3, 69.8), (66.2, 69.4, 71.9), (70.5, 71.4, 73.8)),
}
_DETECTION = {
    "rsna": ((1.0, 4.0, 8.9), (3.6, 8.0, 15.7), (8.2, 15.6, 17.9), (9.8, 14.8, 18.8), (11.6, 16.1, 24.8),
             (12.9, 16.8, 24.9), (8.9, 16.3, 24.5), (15.3, 19.7, 26.4)),
    "object_cxr": ((None, 0.5, 4.4), (None, 2.9, 8.3), (None, 8.6, 15.9), (None, 10.6, 15.6), (None, 8.9, 16.6),
                   (None, 12.1, 19.2), (None, 7.1, 11.6), (3.9, 12.7, 20.3)),
}
# Table VI: zero-shot classification, AUC / F1 / ACC (macro over the dataset's diseases). F1 and ACC are
# MedKLIP's, at the F1-maximising threshold: they sit under our f1_best_macro / acc_best_macro columns.
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
    "segmentation": {
        adapter: {m: dict(zip(_FRACTIONS, v, strict=True)) for m, v in zip(_DENSE_METHODS, rows, strict=True)}
        for adapter, rows in _SEGMENTATION.items()
    },
    "detection": {
        adapter: {m: {f: x for f, x in zip(_FRACTIONS, v, strict=True) if x is not None}
                  for m, v in zip(_DENSE_METHODS, rows, strict=True)}
        for adapter, rows in _DETECTION.items()
    },
    "zero_shot": {
        adapter: {m: dict(zip(("auc_macro", "f1_best_macro", "acc_best_macro"), v, strict=True))
                  for m, v in zip(_ZERO_SHOT_METHODS, rows, strict=True)}
        for adapter, rows in _ZERO_SHOT.items()
    },
    "retrieval": {
        "chexpert_5x200": {m: dict(zip(("precision@5", "precision@10", "precision@100"), v, strict=True))
                           for m, v in _RETRIEVAL.items()},
    },
}


# The one metric column the paper's numbers are comparable with, where a task shows several per fraction.
PAPER_METRIC = {"detection": "map_mgca"}


def paper_values(task: str, adapter: str) -> dict[str, dict[str, float]]:
    """The paper's rows (method -> column -> percent) for ``task`` on the dataset read by ``adapter``."""
    return PAPER.get(task, {}).get(adapter, {})


# Tables VIII-XIII: every ablation at 1 % labels on the same four columns, as (task, adapter, fraction).
ABLATION_COLUMNS = (("linear_classification", "chexpert", "1"), ("segmentation", "siim", "1"),
                    ("detection", "rsna", "1"), ("finetune_classification", "chestxray14", "1"))
_IMITATE_ROW = (89.1, 53.9, 15.3, 80.2)
_ABLATIONS = {
    "VIII": {"VVH": (87.5, 32.1, 7.6, 64.5), "VVH,VLH": (88.4, 35.4, 8.5, 67.2), "VLM": (84.2, 30.4, 5.7, 61.3),
             "VVH,VLH,VVM": (88.7, 37.3, 12.1, 73.4), "VVH,VLH,VLM": (88.8, 38.2, 12.6, 74.6)},
    "IX": {"Imp": (87.5, 33.6, 12.2, 77.5), "Find&Imp": (88.2, 35.4, 13.4, 78.4), "reversed": (83.4, 29.8, 12.7, 67.6)},
    "X": {"w/o CICL": (87.9, 26.8, 11.5, 78.6), "Gaussian": (86.5, 32.1, 10.7, 75.1),
          "Laplacian": (87.1, 31.7, 11.4, 75.7), "Sigmoid": (85.7, 30.2, 10.9, 75.2)},
    "XI": {"Unfreeze_1": (87.2, 45.3, 13.7, 78.7), "Unfreeze_2": (87.8, 50.5, 14.6, 77.9),
           "Unfreeze_3": (88.5, 47.4, 14.8, 78.4), "Unfreeze_4": (88.2, 50.9, 15.1, 79.6),
           "Unfreeze_5": (88.8, 45.7, 14.2, 78.1), "Unfreeze_6": (88.4, 37.5, 14.3, 78.5)},
    # Table XII's BioClinicalBERT row is IMITATE itself (the base run's encoder)
    "XII": {"ClinicalBERT": (88.7, 54.1, 14.9, 80.0), "RadBERT": (89.3, 53.7, 15.0, 79.8)},
    # Table XIII's "0.9 (ours)" row is IMITATE itself
    "XIII": {"drop 0.25": (85.8, 49.5, 10.9, 77.5), "drop 0.5": (87.2, 50.1, 11.6, 77.8),
             "drop 0.75": (88.5, 52.6, 13.8, 78.9)},
}
# Table XI's "Trainable Parameters (M)" column
PAPER_TRAINABLE_MILLIONS = {"Unfreeze_1": 59.1, "Unfreeze_2": 66.1, "Unfreeze_3": 73.2, "Unfreeze_4": 80.3,
                            "Unfreeze_5": 87.4, "Unfreeze_6": 94.4, "IMITATE": 51.9}


def paper_ablation(table: str) -> dict[str, dict[tuple[str, str, str], float]]:
    """The rows of the paper's ablation ``table`` (VIII..XIII): row label -> (task, adapter, fraction) -> %.

    Each table's own IMITATE row is included under the label ``IMITATE``; an unknown table has no rows.
    """
    rows = _ABLATIONS.get(table)
    if rows is None:
        return {}
    return {label: dict(zip(ABLATION_COLUMNS, values, strict=True))
            for label, values in {**rows, "IMITATE": _IMITATE_ROW}.items()}
