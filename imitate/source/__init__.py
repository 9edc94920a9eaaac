"""A pretraining corpus from a lab's own table (``data.source: table``): rows -> the manifest's inputs."""
