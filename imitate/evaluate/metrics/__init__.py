"""Evaluation metrics: classification (AUC, accuracy, F1, Precision@K) and dense (Dice, COCO-style mAP)."""
