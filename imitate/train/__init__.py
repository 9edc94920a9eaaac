"""Pretraining: the data pipeline and the training loop."""
