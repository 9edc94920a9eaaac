"""Frozen text encoders and the precomputed text-embedding store."""
