"""Training: the shared loop, checkpoints, and Faster R-CNN's training schemes (sec. 3.2)."""
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import check_dataset, train
from .schemes import train_four_step, train_joint

__all__ = ["train", "train_joint", "train_four_step", "check_dataset", "save_checkpoint",
           "load_checkpoint"]
