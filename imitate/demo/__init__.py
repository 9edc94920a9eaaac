"""The embedded demo: a synthetic MIMIC-CXR in the real on-disk layout.

``anatomy`` samples a patient's habitus and a study's findings, ``draw`` renders radiographs (and the
pixel geometry of each drawn lesion) on a ``canvas``, one view at a time (``frontal``, ``lateral``),
``reports`` writes the matching MIMIC-style report (its ``sentences`` from the ``phrases``) and CheXpert
labels, ``dicom`` stores a share of images as DICOM, and ``mimic.write_demo_mimic`` writes the tree.
"""
