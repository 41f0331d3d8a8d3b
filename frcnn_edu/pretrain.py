"""Moved to `frcnn_edu.training.pretrain` (pre-training TinyVGG, our stand-in for ImageNet)."""
# kept for the saved lessons (lesson 01 names frcnn_edu.pretrain); new code imports from frcnn_edu.training.pretrain
from .training.pretrain import (PRETRAIN_SEED, RegionClassifier, jitter_boxes,  # noqa: F401
                                make_regions, pretrain, region_accuracy)
