"""Experiments: named variants of one run (the paper's ablations) and how they share stages."""
