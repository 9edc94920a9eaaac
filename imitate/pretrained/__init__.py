"""The pretrained model as a release: a Hugging Face-style folder, and one-line loads of it.

:mod:`~imitate.pretrained.export` writes the folder from a pretraining run, :mod:`~imitate.pretrained.card`
its model card, :mod:`~imitate.pretrained.layout` its ``config.json`` (a timm ``pretrained_cfg`` plus what
rebuilds and checks the model); :mod:`~imitate.pretrained.load` reads it back as an open_clip-style model
with its preprocessing and text encoding.
"""
