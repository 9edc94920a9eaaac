"""The leaf layer: atomic files, deterministic Parquet, progress lines for logs. It imports nothing from ``imitate``."""
