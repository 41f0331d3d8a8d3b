"""Detection losses: smooth L1, the RPN loss (Faster R-CNN eq. 1), the Fast R-CNN multi-task
loss (Fast R-CNN eq. 1 and 3) and the Mask R-CNN mask loss (Mask R-CNN sec. 3).

Shape key:
    A     anchors (one image, or several images concatenated)
    k     anchors per feature-map location (9 = 3 scales x 3 ratios in the paper)
    R     RoIs (one image, or several images concatenated)
    K     foreground classes; class 0 is background, so classifiers have K + 1 outputs
    m     mask resolution (28 in Mask R-CNN's heads)

Faster R-CNN eq. 1 (the RPN loss)::

    L({p_i}, {t_i}) = 1/N_cls sum_i L_cls(p_i, p_i*) + lambda 1/N_reg sum_i p_i* L_reg(t_i, t_i*)

Fast R-CNN eq. 1 (the detector loss, per RoI)::

    L(p, u, t^u, v) = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)

``[u >= 1]`` is the Iverson bracket: 1 for a foreground RoI, 0 for background, so background RoIs
contribute no box loss. ``L_loc`` is smooth L1 summed over (x, y, w, h) (Fast R-CNN eq. 2-3).

Mask R-CNN sec. 3 (the mask loss, per positive RoI of ground-truth class k)::

    L_mask = -1/m^2 sum_ij [ y_ij log sigmoid(x^k_ij) + (1 - y_ij) log(1 - sigmoid(x^k_ij)) ]

Only the k-th of the mask head's K masks is penalised: classes do not compete for a pixel
(the paper's decoupling of mask and class prediction).
"""
import torch
import torch.nn.functional as F

from .boxes import check_shape

__all__ = ["smooth_l1", "rpn_loss", "fast_rcnn_loss", "mask_rcnn_loss", "NonFiniteError"]

_REDUCTIONS = ("none", "sum", "mean")


class NonFiniteError(ValueError):
    """A loss's input holds NaN or inf. ``term`` names the loss it feeds (e.g. loss_objectness),
    so the training loop can report the step and the loss, not a tensor name."""

    def __init__(self, message, term=None):
        super().__init__(message)
        self.term = term


def _check_finite(terms, **tensors):
    """Raise NonFiniteError naming the first argument that holds NaN or inf and, from `terms`
    ({argument: loss term}), the loss term it feeds."""
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            term = terms.get(name)
            where = f"{term}: its input {name}" if term else name
            raise NonFiniteError(f"{where} contains NaN or inf; check the inputs that produced it "
                                 "(a diverging model, a degenerate box, a log of 0)", term)


def smooth_l1(input, target, beta=1.0, reduction="sum"):
    """Smooth L1 (Fast R-CNN eq. 3): 0.5 x^2 / beta if |x| < beta, else |x| - 0.5 beta.

    The paper uses beta = 1. It equals ``torch.nn.functional.smooth_l1_loss``; note the default
    reduction here is ``"sum"`` (the papers sum over coordinates and then normalise themselves),
    not torch's ``"mean"``. ``beta = 0`` is plain L1.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if input.shape != target.shape:  # broadcasting would silently pair the wrong coordinates
        raise ValueError(f"input and target must have the same shape, got {list(input.shape)} "
                         f"and {list(target.shape)}")
    diff = (input - target).abs()
    if beta == 0:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if reduction == "mean" else loss


def rpn_loss(pred_objectness, pred_deltas, labels, gt_deltas, n_cls=256, n_reg=None,
             num_anchors_per_location=9, lam=10.0, beta=1.0, normalize="paper"):
    """RPN loss, Faster R-CNN eq. 1. Returns ``(loss_objectness, loss_rpn_box_reg)``, scalars.

    pred_objectness: [A] logits (objectness p_i = sigmoid(logit)). The paper's cls layer is a
        2-class softmax; its footnote notes a logistic output is the alternative. The two are the
        same model: softmax([z0, z1])[1] = sigmoid(z1 - z0), so one logit with binary
        cross-entropy is the 2-class log loss L_cls.
    pred_deltas, gt_deltas: [A, 4] (tx, ty, tw, th) predictions and targets (eq. 2).
    labels: [A] int in {1, 0, -1}: p_i* = 1 positive, 0 negative, -1 not in the mini-batch
        (the output of ``matching.sample_labels``). Any other value (e.g. a fractional soft
        label) is refused: eq. 1's p_i* is a hard 0/1 label.
    A batch of images may be flattened (anchors of all images concatenated); then pass totals:
    ``n_cls = 256 * num_images``; the default n_reg already counts locations of all images.

    normalize="paper": loss_objectness = sum BCE over sampled anchors / n_cls (256);
        loss_rpn_box_reg = lam * sum_{positives} smooth_l1 / n_reg with lam = 10 and
        n_reg = number of anchor locations (~2400 for a ~1000x600 image), taken as
        ``A // num_anchors_per_location`` unless ``n_reg`` is given.
    normalize="sampled": both terms divided by the number of sampled anchors (torchvision,
        Detectron), which keeps the two terms balanced whatever the image size, without tuning
        n_reg and lam. These implementations also use beta = 1/9: the quadratic zone shrinks
        to |x| < 1/9, so the gradient on small errors is 9x larger and well-matched anchors
        keep being refined, while large errors still get the bounded L1 gradient; they found
        this trains more stably and localises better than the paper's beta = 1.
        ``lam=1, beta=1/9, normalize="sampled"`` reproduces torchvision's RPN loss.
        An empty mini-batch gives zero losses instead of NaN.
    """
    if normalize not in ("paper", "sampled"):
        raise ValueError(f'normalize must be "paper" or "sampled", got {normalize!r}')
    A = labels.shape[0] if labels.dim() == 1 else -1
    check_shape(labels, (None,), "labels")
    check_shape(pred_objectness, (A,), "pred_objectness")
    check_shape(pred_deltas, (A, 4), "pred_deltas")
    check_shape(gt_deltas, (A, 4), "gt_deltas")
    if ((labels != -1) & (labels != 0) & (labels != 1)).any():  # hard labels: no soft targets
        raise ValueError("labels must hold 1 (positive), 0 (negative) or -1 (ignored); "
                         f"got values {labels.unique().tolist()}")
    _check_finite({"pred_objectness": "loss_objectness", "pred_deltas": "loss_rpn_box_reg",
                   "gt_deltas": "loss_rpn_box_reg"},
                  pred_objectness=pred_objectness, pred_deltas=pred_deltas, gt_deltas=gt_deltas)

    sampled = labels >= 0
    positive = labels == 1
    cls = F.binary_cross_entropy_with_logits(
        pred_objectness[sampled], labels[sampled].to(pred_objectness.dtype), reduction="sum")
    reg = smooth_l1(pred_deltas[positive], gt_deltas[positive], beta=beta, reduction="sum")
    if normalize == "sampled":
        n_cls = n_reg = max(int(sampled.sum()), 1)
    elif n_reg is None:
        n_reg = max(A // num_anchors_per_location, 1)
    return cls / n_cls, lam * reg / n_reg


def fast_rcnn_loss(class_logits, box_regression, labels, gt_deltas, lam=1.0, beta=1.0):
    """Fast R-CNN multi-task loss (eq. 1). Returns ``(loss_classifier, loss_box_reg)``, scalars.

    class_logits: [R, K+1] (softmax gives p); labels: [R] int64, u in 0..K (0 = background).
    box_regression: [R, 4*(K+1)] class-specific deltas, torchvision's layout (the background
        slot is unused); only the 4 deltas t^u of the true class u are penalised.
    gt_deltas: [R, 4] targets v (encode the matched gt box against the RoI).
    loss_classifier = mean over R of -log p_u (cross-entropy).
    loss_box_reg = lam * sum over foreground RoIs ([u >= 1]) of smooth_l1(t^u, v) / R: divided
        by all R RoIs, like torchvision and py-faster-rcnn, so a RoI's weight does not depend on
        how many foreground RoIs share its mini-batch. No foreground RoIs gives 0, not NaN.
    ``beta=1/9`` reproduces ``torchvision.models.detection.roi_heads.fastrcnn_loss``.
    """
    R = labels.shape[0] if labels.dim() == 1 else -1
    check_shape(labels, (None,), "labels")
    check_shape(class_logits, (R, None), "class_logits")
    num_classes = class_logits.shape[1]  # K + 1
    check_shape(box_regression, (R, 4 * num_classes), "box_regression")
    check_shape(gt_deltas, (R, 4), "gt_deltas")
    if labels.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16, torch.int8):
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if ((labels < 0) | (labels >= num_classes)).any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (0 = background, K = "
                         f"{num_classes - 1} classes), got values {labels.unique().tolist()}")
    _check_finite({"class_logits": "loss_classifier", "box_regression": "loss_box_reg",
                   "gt_deltas": "loss_box_reg"},
                  class_logits=class_logits, box_regression=box_regression, gt_deltas=gt_deltas)

    labels = labels.long()
    if R == 0:  # no RoIs: zero losses that still carry the graph (cross-entropy of nothing is NaN)
        return class_logits.sum() * 0.0, box_regression.sum() * 0.0
    loss_classifier = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).squeeze(1)  # [u >= 1]
    deltas_u = box_regression.reshape(R, num_classes, 4)[fg, labels[fg]]  # t^u, [n_fg, 4]
    loss_box = smooth_l1(deltas_u, gt_deltas[fg], beta=beta, reduction="sum")
    return loss_classifier, lam * loss_box / R


MASK_LOSSES = ("sigmoid", "softmax")


def mask_rcnn_loss(mask_logits, labels, mask_targets, kind="sigmoid"):
    """The mask loss of Mask R-CNN (sec. 3), averaged over the positive RoIs' pixels.

    mask_logits: [R, K+1, m, m] the mask head's outputs for the R positive RoIs (channel 0,
        background, is unused by "sigmoid", as in torchvision).
    labels: [R] int64 ground-truth class k of each RoI, 1..K.
    mask_targets: [R, m, m] the binary ground-truth mask of each RoI (see
        `frcnn_edu.models.mask_rcnn.project_masks_on_boxes`).
    kind: "sigmoid" (the paper's): per-pixel binary cross-entropy on channel k only, so the
        other channels get no gradient. "softmax" (the paper's Table 2b alternative, as FCNs
        for semantic segmentation do): per-pixel cross-entropy of a softmax over the K + 1
        channels, the target being class k inside the mask and background (0) outside, so the
        classes compete for every pixel.
    No positive RoI (R = 0) gives 0 with the graph kept, not NaN.
    """
    R = labels.shape[0] if labels.dim() == 1 else -1
    check_shape(labels, (None,), "labels")
    check_shape(mask_logits, (R, None, None, None), "mask_logits")
    check_shape(mask_targets, (R, mask_logits.shape[2], mask_logits.shape[3]), "mask_targets")
    if kind not in MASK_LOSSES:
        raise ValueError(f'kind must be "sigmoid" (the paper) or "softmax" (Table 2b), got {kind!r}')
    if R and ((labels < 1) | (labels >= mask_logits.shape[1])).any():
        raise ValueError(f"labels must lie in 1..{mask_logits.shape[1] - 1} (the classes of "
                         f"positive RoIs), got {labels.unique().tolist()}")
    _check_finite({"mask_logits": "loss_mask"}, mask_logits=mask_logits)
    if R == 0:
        return mask_logits.sum() * 0.0
    labels, y = labels.long(), mask_targets.to(mask_logits.dtype)
    if kind == "sigmoid":
        x_k = mask_logits[torch.arange(R, device=labels.device), labels]         # [R, m, m]
        return F.binary_cross_entropy_with_logits(x_k, y)
    pixel_class = (y > 0.5).long() * labels[:, None, None]                      # [R, m, m]
    return F.cross_entropy(mask_logits, pixel_class)
