"""Image decoding (DICOM, JPG, PNG) to display-ready 8-bit grayscale, and resizing."""
