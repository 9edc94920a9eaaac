"""What the evaluation tasks read: a prepared dataset by key, shard images, encoder features and dense targets."""
