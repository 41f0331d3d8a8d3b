"""frcnn_edu: a compact PyTorch library behind a textbook on two-stage object detection.

R-CNN (Girshick et al., 2014) -> Fast R-CNN (Girshick, 2015) -> Faster R-CNN (Ren et al., 2015).
One module per paper concept; see the README's module table.
"""

__version__ = "0.1.0"
