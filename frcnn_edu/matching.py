"""Which anchors / proposals are positive, negative or ignored, and which of them to train on.

Anchor labels for the RPN (Faster R-CNN sec. 3.1.2) and the balanced mini-batch of 256 anchors
(sec. 3.1.3); proposal labels and the 25 % foreground RoI sample for the detector (Fast R-CNN
sec. 2.3, "Mini-batch sampling").

Labels: 1 positive (foreground), 0 negative (background), -1 ignored (no loss). For proposals
the positive label is the class of the matched box (1..K).

Shape key:
    A  anchors          G  ground-truth boxes of one image
    P  proposals (RoIs) K  foreground classes (labels 1..K, 0 = background)
"""
import torch
from torch import Tensor

from .boxes import box_iou, check_box_shape, check_boxes

__all__ = ["label_anchors", "sample_labels", "label_proposals", "sample_proposals"]


def _check_thresholds(lo, hi, lo_name, hi_name):
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"need 0 <= {lo_name} <= {hi_name} <= 1, got {lo_name}={lo}, {hi_name}={hi}")


def _check_valid(valid, num):
    if valid is None:
        return None
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool or valid.shape != (num,):
        got = f"{valid.dtype} {list(valid.shape)}" if isinstance(valid, Tensor) else type(valid).__name__
        raise ValueError(f"valid must be a bool tensor of shape [{num}] (e.g. inside_image(...)), got {got}")
    return valid


def label_anchors(anchors, gt_boxes, pos_iou=0.7, neg_iou=0.3, valid=None):
    """Label anchors for RPN training with the four rules of Faster R-CNN sec. 3.1.2.

    (i)   IoU >= ``pos_iou`` with some gt box -> positive (1);
    (ii)  the anchor(s) with the highest IoU for some gt box -> positive, whatever that IoU
          (ties: all of them; it must be > 0), even if below ``neg_iou``: this rule beats (iii);
    (iii) otherwise max IoU < ``neg_iou`` -> negative (0);
    (iv)  the rest -> ignored (-1).
    ``valid`` (bool [A], e.g. `inside_image`) marks anchors that take part: the others get
    label -1 and matched_gt -1 and can be nobody's highest-IoU anchor. With G == 0 every valid
    anchor is negative and matched_gt is -1.

    Returns (labels int64 [A], matched_gt int64 [A]): matched_gt is the gt box of highest IoU
    (argmax over gt, first on ties, as torchvision's Matcher) for every valid anchor, so that
    regression targets are encode_boxes(anchors, gt_boxes[matched_gt]). If an anchor's
    highest IoU is shared by several boxes, the box that made it positive by rule (ii) wins.
    """
    check_boxes(anchors, "anchors")
    check_boxes(gt_boxes, "gt_boxes")
    _check_thresholds(neg_iou, pos_iou, "neg_iou", "pos_iou")
    A, G = anchors.shape[0], gt_boxes.shape[0]
    valid = _check_valid(valid, A)
    labels = torch.full((A,), -1, dtype=torch.int64, device=anchors.device)
    matched = torch.full((A,), -1, dtype=torch.int64, device=anchors.device)
    if G == 0 or A == 0:
        labels[valid if valid is not None else slice(None)] = 0
        return labels, matched
    iou = box_iou(anchors, gt_boxes.to(anchors.dtype))  # [A, G]
    if valid is not None:
        iou[~valid] = -1.0  # invalid anchors: below every threshold and never a box's best
    max_iou, matched_all = iou.max(dim=1)  # per anchor: best IoU and its box (first on ties)
    gt_max = iou.max(dim=0).values  # [G]: per box, the IoU of its best anchor(s)
    best = (iou == gt_max) & (gt_max > 0)  # [A, G]: anchor is (one of) the box's best
    labels[(max_iou >= 0) & (max_iou < neg_iou)] = 0  # (iii); invalid anchors have max_iou -1
    labels[(max_iou >= pos_iou) | best.any(dim=1)] = 1  # (i) and (ii) override (iii)
    # Among the boxes that share the anchor's highest IoU, prefer one it is the best anchor of.
    prefer = best & (iou == max_iou[:, None])
    matched_all = torch.where(prefer.any(dim=1), prefer.to(torch.uint8).argmax(dim=1), matched_all)
    return labels, torch.where(max_iou >= 0, matched_all, matched)


def _check_sample_labels(labels, name):
    """Sampling labels (not classes): a 1-D integer tensor of -1 (ignore), 0 or >= 1."""
    if (not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point()
            or labels.dtype == torch.bool):
        got = f"{labels.dtype} {list(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D integer tensor, got {got}")
    if labels.numel() and int(labels.min()) < -1:
        raise ValueError(f"{name} must hold -1 (ignore), 0 (negative) or positive labels, "
                         f"got {int(labels.min())}")


def _random_subset(index, num, generator):
    """``num`` entries of the 1-D tensor ``index`` drawn without replacement, in sorted order.
    The permutation is drawn on the generator's device (CPU by default), so a seeded
    generator gives the same subset whichever device ``index`` is on."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(index.numel(), generator=generator, device=gen_device)[:num]
    return index[perm.to(index.device)].sort().values


def balanced_sample(labels, batch_size, positive_fraction, generator=None,
                    names=("batch_size", "positive_fraction")):
    """The one balanced sampler of both papers: labels [N] -> (positive idx, negative idx).

    Draws at most int(batch_size * positive_fraction) positives (label >= 1) at random, then
    negatives (label 0) up to ``batch_size``; each index set sorted. With few positives the
    batch holds more negatives; with few of both it is smaller than ``batch_size``. Same
    counts as torchvision's BalancedPositiveNegativeSampler. ``names``: the caller's names
    for the two settings, used in the error message.
    """
    _check_sample_labels(labels, "labels")
    if batch_size < 0 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"need {names[0]} >= 0 and 0 <= {names[1]} <= 1, "
                         f"got {batch_size}, {positive_fraction}")
    pos = torch.where(labels >= 1)[0]
    neg = torch.where(labels == 0)[0]
    num_pos = min(pos.numel(), int(batch_size * positive_fraction))
    num_neg = min(neg.numel(), batch_size - num_pos)
    return _random_subset(pos, num_pos, generator), _random_subset(neg, num_neg, generator)


def sample_labels(labels, batch_size=256, positive_fraction=0.5, generator=None):
    """Balanced anchor mini-batch (Faster R-CNN sec. 3.1.3): labels [A] -> sampled copy [A].

    Keeps at most int(batch_size * positive_fraction) positives (a random subset), fills the
    batch up to ``batch_size`` with random negatives and sets every other anchor to -1
    (`balanced_sample`). Pass a seeded ``torch.Generator`` for a reproducible sample.
    """
    pos, neg = balanced_sample(labels, batch_size, positive_fraction, generator)
    out = torch.full_like(labels, -1)
    out[pos] = 1
    out[neg] = 0
    return out


def label_proposals(proposals, gt_boxes, gt_labels, fg_iou=0.5, bg_iou=(0.1, 0.5)):
    """Label proposals (RoIs) for the detector (Fast R-CNN sec. 2.3).

    Foreground: max IoU with a gt box >= ``fg_iou`` -> that box's class (1..K).
    Background: ``bg_iou[0] <= max IoU < bg_iou[1]`` -> 0 (the lower bound 0.1 acts as a
    simple hard-example mining; torchvision uses 0). Otherwise -1 (unused).
    Returns (labels int64 [P], matched_gt int64 [P]: box of highest IoU, -1 when G == 0).
    With G == 0 every max IoU counts as 0: proposals are background only if bg_iou[0] == 0.
    Faster R-CNN implementations also add the gt boxes to the proposals; do that before
    calling (``torch.cat([proposals, gt_boxes])``).
    """
    check_box_shape(proposals, "proposals")  # predicted boxes may be empty (x2 == x1), not NaN
    if proposals.numel() and not bool(torch.isfinite(proposals).all()):
        raise ValueError("proposals must be finite (no NaN / inf)")
    check_boxes(gt_boxes, "gt_boxes")
    G = gt_boxes.shape[0]
    if (not isinstance(gt_labels, Tensor) or gt_labels.shape != (G,) or gt_labels.is_floating_point()
            or gt_labels.dtype == torch.bool):
        raise ValueError(f"gt_labels must be an int64 tensor of shape [{G}] (one class per gt box)")
    if G and int(gt_labels.min()) < 1:
        raise ValueError("gt_labels must be foreground classes >= 1 (0 is background)")
    if len(bg_iou) != 2 or not 0.0 <= bg_iou[0] <= bg_iou[1] <= fg_iou <= 1.0:
        raise ValueError("need 0 <= bg_iou[0] <= bg_iou[1] <= fg_iou <= 1, "
                         f"got bg_iou={bg_iou}, fg_iou={fg_iou}")
    P, dev = proposals.shape[0], proposals.device
    if G == 0:
        max_iou = torch.zeros(P, dtype=proposals.dtype, device=dev)
        matched = torch.full((P,), -1, dtype=torch.int64, device=dev)
        cls = torch.zeros(P, dtype=torch.int64, device=dev)
    else:
        max_iou, matched = box_iou(proposals.detach(), gt_boxes.to(proposals.dtype)).max(dim=1)
        cls = gt_labels.to(device=dev, dtype=torch.int64)[matched]
    labels = torch.full((P,), -1, dtype=torch.int64, device=dev)
    labels[(max_iou >= bg_iou[0]) & (max_iou < bg_iou[1])] = 0
    fg = max_iou >= fg_iou
    labels[fg] = cls[fg]
    return labels, matched


def sample_proposals(labels, rois_per_image=128, fg_fraction=0.25, generator=None):
    """RoI mini-batch for one image (Fast R-CNN sec. 2.3): indices int64 [R <= rois_per_image].

    At most int(rois_per_image * fg_fraction) foreground RoIs (label >= 1, a random subset),
    then background RoIs (label 0) up to ``rois_per_image``; foreground indices come first,
    each group in increasing order. Paper: 128 RoIs = 64 from each of 2 images, 25 %
    foreground; pass rois_per_image=64 per image for that.
    """
    fg, bg = balanced_sample(labels, rois_per_image, fg_fraction, generator,
                             names=("rois_per_image", "fg_fraction"))
    return torch.cat((fg, bg))
