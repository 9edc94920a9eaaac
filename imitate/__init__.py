"""imitate: a data-pipeline-first reproduction of IMITATE (arXiv 2310.07355) for chest X-rays."""

__version__ = "0.1.0"
