"""Training: the shared loop, checkpoints, and Faster R-CNN's training schemes (sec. 3.2);
`pretrain` pre-trains TinyVGG, our stand-in for ImageNet (imported on its own: `training.pretrain`)."""
from .checkpoint import load_checkpoint, load_weights, save_atomic, save_checkpoint
from .loop import check_dataset, train, training_step
from .rcnn_fit import fit_rcnn
from .schemes import (WithProposals, rpn_regression_gradients, train_fast_rcnn, train_four_step,
                      train_joint)

__all__ = ["train", "training_step", "train_joint", "train_four_step", "train_fast_rcnn",
           "WithProposals", "rpn_regression_gradients", "fit_rcnn", "check_dataset",
           "save_checkpoint", "load_checkpoint", "load_weights", "save_atomic"]
