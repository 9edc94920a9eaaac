"""Downstream evaluation of frozen vision encoders."""
