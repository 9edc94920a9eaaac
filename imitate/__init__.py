"""imitate: a data-pipeline-first reproduction of IMITATE (arXiv 2310.07355) for chest X-rays.

``imitate.load(folder)`` and ``imitate.load_encoder(folder)`` read a model that ``imitate export`` wrote
(:mod:`imitate.pretrained.load`); torch is imported only when they are called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imitate.models.backbone import ResNetBackbone
    from imitate.pretrained.load import Loaded

__version__ = "0.1.0"


def load(path: str | os.PathLike[str], **kwargs: Any) -> Loaded:
    """``model, preprocess, embed_text`` of an exported folder (:func:`imitate.pretrained.load.load`)."""
    from imitate.pretrained.load import load as load_folder

    return load_folder(path, **kwargs)


def load_encoder(path: str | os.PathLike[str], **kwargs: Any) -> ResNetBackbone:
    """The exported ResNet alone (:func:`imitate.pretrained.load.load_encoder`)."""
    from imitate.pretrained.load import load_encoder as load_folder_encoder

    return load_folder_encoder(path, **kwargs)
