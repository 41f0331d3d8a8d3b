"""Anchors: k reference boxes at every feature-map position (Faster R-CNN sec. 3.1.1).

At each position of the stride-16 feature map the RPN predicts k = 9 proposals relative to
k anchors of 3 sizes (128, 256, 512: areas 128^2 ...) x 3 ratios (1:2, 1:1, 2:1). The
anchors are translation invariant: the same k boxes, moved to each position.

Conventions (shared with torchvision's AnchorGenerator and py-faster-rcnn):
    ratio r = h / w; an anchor of size s has w = s / sqrt(r), h = s * sqrt(r) (area s^2).
    Base anchors are ordered ratio-major: index = ratio_i * len(sizes) + size_j.
    Grid anchors are flattened as [H, W, k]: index = (y * W + x) * k + a.
Differences from torchvision: base anchors are not rounded to integers, and centres sit at
cell centres ((x + 0.5) * stride, (y + 0.5) * stride) where torchvision puts them at the
cell's top-left corner (x * stride, y * stride).

Choosing the sizes for new data: the paper's 128, 256, 512 suit objects of 100-500 pixels in
600 x 1000 images. `anchor_sizes_from_boxes` reads them off the training boxes instead: each size
stands for an equal share of the objects (lesson 08).

Shape key:
    G  ground-truth boxes (of a whole training set)
    k  anchors per position (len(sizes) * len(ratios))
    H, W  feature-map height and width
    A  anchors in an image (H * W * k)
"""
import math

import torch
from torch import Tensor

__all__ = ["make_base_anchors", "grid_anchors", "inside_image", "anchor_sizes_from_boxes"]


def make_base_anchors(sizes=(128, 256, 512), ratios=(0.5, 1.0, 2.0), dtype=torch.float32, device=None):
    """The k = len(sizes) * len(ratios) anchors of one position, centred on (0, 0): [k, 4].

    Anchor ``i * len(sizes) + j`` has ratio ``ratios[i]`` (h / w) and size ``sizes[j]``:
    w = s / sqrt(r), h = s * sqrt(r), box (-w/2, -h/2, w/2, h/2). Paper defaults: sizes
    128, 256, 512 and ratios 0.5, 1, 2 (k = 9). Equals torchvision
    ``AnchorGenerator.generate_anchors`` before its ``.round()``.
    """
    for name, values in (("sizes", sizes), ("ratios", ratios)):
        if len(values) == 0 or any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {values}")
    s = torch.as_tensor(sizes, dtype=torch.float64)
    r = torch.as_tensor(ratios, dtype=torch.float64)
    w = (s[None, :] / r.sqrt()[:, None]).reshape(-1)  # [len(ratios), len(sizes)] -> [k]
    h = (s[None, :] * r.sqrt()[:, None]).reshape(-1)
    return (torch.stack((-w, -h, w, h), dim=1) / 2).to(dtype=dtype, device=device)


def _pair(value, name):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(v <= 0 for v in pair):
        raise ValueError(f"{name} must be a positive number or a pair (y, x), got {value}")
    return pair


def grid_anchors(base_anchors, feature_size, stride):
    """All anchors of an H x W feature map: [H * W * k, 4] in image pixels.

    Position (y, x) has centre ((x + 0.5) * stride_x, (y + 0.5) * stride_y) and gets the k
    ``base_anchors`` [k, 4] shifted there; the result is flattened as [H, W, k], i.e. the
    layout of an RPN output [k, H, W] permuted to [H, W, k]. ``feature_size = (H, W)``;
    ``stride`` is a number or a pair (stride_y, stride_x), e.g. 16 for VGG16 conv5.
    """
    if not isinstance(base_anchors, Tensor) or base_anchors.dim() != 2 or base_anchors.shape[1] != 4:
        got = list(base_anchors.shape) if isinstance(base_anchors, Tensor) else type(base_anchors).__name__
        raise ValueError(f"base_anchors must be a tensor of shape [k, 4] (see make_base_anchors), got {got}")
    if len(feature_size) != 2 or any(int(v) != v or v < 0 for v in feature_size):
        raise ValueError(f"feature_size must be (H, W), two non-negative integers, got {feature_size}")
    sy, sx = _pair(stride, "stride")
    H, W = int(feature_size[0]), int(feature_size[1])
    opts = dict(dtype=base_anchors.dtype, device=base_anchors.device)
    cy = (torch.arange(H, **opts) + 0.5) * sy
    cx = (torch.arange(W, **opts) + 0.5) * sx
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # [H, W]
    shifts = torch.stack((cx, cy, cx, cy), dim=-1).reshape(H * W, 1, 4)
    return (shifts + base_anchors[None]).reshape(-1, 4)


def inside_image(anchors, image_size, allowed_border=0):
    """Bool [A]: anchors lying inside the image, up to ``allowed_border`` pixels outside.

    ``image_size = (height, width)``. An anchor is inside when x1 >= -b, y1 >= -b,
    x2 <= width + b, y2 <= height + b. Faster R-CNN ignores the others while training the RPN
    (sec. 3.3: cross-boundary anchors would add large, hard-to-correct errors); at test time
    all anchors are used and the proposals are clipped. (py-faster-rcnn writes x2 < width
    because its boxes include the last pixel: x2 = x1 + w - 1.)
    """
    if not isinstance(anchors, Tensor) or anchors.dim() != 2 or anchors.shape[1] != 4:
        got = list(anchors.shape) if isinstance(anchors, Tensor) else type(anchors).__name__
        raise ValueError(f"anchors must be a tensor of shape [A, 4], got {got}")
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size}")
    h, w = image_size
    b = allowed_border
    return ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)
            & (anchors[:, 2] <= w + b) & (anchors[:, 3] <= h + b))


def anchor_sizes_from_boxes(boxes, num_sizes=3):
    """`num_sizes` anchor sizes read off ground-truth boxes [G, 4]: a tuple of whole pixels.

    An anchor's size is the side of a square of its area, sqrt(w * h) (see `make_base_anchors`),
    so the boxes are measured the same way. The n sizes are the quantiles of those sizes at the
    middles of n equal shares, q_i = (i + 0.5) / n (1/6, 1/2, 5/6 for n = 3): each anchor size
    stands for a third of the objects, and a few huge or tiny boxes cannot pull a size to
    themselves as the minimum and maximum would. Linear interpolation between the sorted sizes
    (`torch.quantile`'s default), rounded to whole pixels (`torch.round`), smallest first.
    """
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        got = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a non-empty tensor [G, 4] of (x1, y1, x2, y2), got {got}: "
                         "pass the boxes of the training set")
    if not isinstance(num_sizes, int) or num_sizes < 1:
        raise ValueError(f"num_sizes must be a whole number >= 1, got {num_sizes!r}")
    wh = (boxes[:, 2:] - boxes[:, :2]).double()
    if not bool((wh > 0).all()):
        raise ValueError("boxes holds degenerate boxes (x2 <= x1 or y2 <= y1): remove them first")
    sizes = wh.prod(dim=1).sqrt()
    q = (torch.arange(num_sizes, dtype=torch.float64) + 0.5) / num_sizes
    return tuple(int(v) for v in torch.quantile(sizes, q).round().tolist())
