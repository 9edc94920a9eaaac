"""IMITATE's losses (the clinical-informed contrastive loss and the six-term total of §III-E) and the dense
tasks' losses (:mod:`imitate.losses.segmentation`, :mod:`imitate.losses.yolo`).

This package never imports :mod:`imitate.train` or :mod:`imitate.evaluate`.
"""

from imitate.losses.cicl import CICLoss, correlation_prior, infonce_loss, soft_target_ce
from imitate.losses.imitate_loss import TERM_GROUPS, TERMS, ImitateLoss, LossConfig, terms_from_groups

__all__ = [
    "TERMS",
    "TERM_GROUPS",
    "CICLoss",
    "ImitateLoss",
    "LossConfig",
    "correlation_prior",
    "infonce_loss",
    "soft_target_ce",
    "terms_from_groups",
]
