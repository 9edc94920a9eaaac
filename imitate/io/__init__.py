"""The leaf layer: atomic files and deterministic Parquet. It imports nothing from ``imitate``."""
