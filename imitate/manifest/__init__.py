"""The ``manifest`` stage: frontal MIMIC-CXR images joined with the official split and their report sections."""
