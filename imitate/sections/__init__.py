"""Report sectioning: Findings / Impression from MIMIC-CXR free-text reports."""

from imitate.sections.extract import extract_sections, write_sections
from imitate.sections.parser import section_text

__all__ = ["extract_sections", "section_text", "write_sections"]
