"""Checks before a run: raw files, encoder, weights, device and disk, and the raw roots no rule may write into."""
