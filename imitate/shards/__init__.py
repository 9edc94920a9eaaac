"""WebDataset shards: deterministic writing from the image manifest, and reading them back."""
