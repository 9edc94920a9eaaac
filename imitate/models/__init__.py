"""IMITATE's vision side: multi-level ResNet backbone, aggregation block P(·), projectors, the model.

This package never imports :mod:`imitate.train` (the library does not depend on its runner).
"""

from imitate.models.backbone import FeatureInfo, ResNetBackbone
from imitate.models.imitate import ImitateModel, ModelConfig

__all__ = ["FeatureInfo", "ImitateModel", "ModelConfig", "ResNetBackbone"]
