"""The Region Proposal Network (Faster R-CNN sec. 3.1).

A small network slides over the shared conv feature map: an n x n window (n = 3, a 3x3 conv)
maps each location to a vector, and two sibling 1x1 convs score k anchors there (objectness) and
regress 4 deltas per anchor. Training labels anchors with the four IoU rules
(`frcnn_edu.matching`), samples 256 of them, and applies eq. 1 (`frcnn_edu.losses.rpn_loss`);
inference decodes the deltas into proposals and filters them (`frcnn_edu.proposals`).

Shape key:
    N     images in the batch           C   feature channels
    Hf, Wf  feature-map height / width  k   anchors per location (9 = 3 sizes x 3 ratios)
    A     anchors per image = Hf * Wf * k, ordered [Hf, Wf, k] like `anchors.grid_anchors`
    G     ground-truth boxes of one image
    P     proposals kept for one image
"""
import torch
from torch import nn

from .. import anchors as anchor_ops
from ..boxes import box_iou, encode_boxes
from ..losses import rpn_loss
from ..matching import label_anchors, sample_labels
from ..proposals import generate_proposals


class RPNHead(nn.Module):
    """3x3 conv + ReLU (the sliding window), then 1x1 convs for k objectness logits and 4k deltas.

    The paper draws 2k scores (a 2-class softmax per anchor); one logit per anchor with a sigmoid
    is the same model (see `losses.rpn_loss`). Weights start from N(0, 0.01^2), as in sec. 3.1.3.
    [N, C, Hf, Wf] -> ([N, A] logits, [N, A, 4] deltas)
    """

    def __init__(self, in_channels, num_anchors, mid_channels=None):
        super().__init__()
        mid = mid_channels or in_channels
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features):
        n, _, hf, wf = features.shape
        t = torch.relu(self.conv(features))
        logits = self.cls_logits(t).permute(0, 2, 3, 1).reshape(n, -1)  # [N, Hf*Wf*k]
        k = logits.shape[1] // (hf * wf)
        deltas = self.bbox_pred(t).view(n, k, 4, hf, wf).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors + RPN head + labeling/sampling/loss (training) + the proposal layer.

    Defaults are the paper's: 3 sizes x 3 ratios, 256 anchors per image with at most half
    positive, IoU 0.7 / 0.3, lambda = 10 with N_cls = 256 and N_reg = anchor locations, NMS at 0.7,
    2000 proposals per image in training and 300 at test time. Anchors that cross the image
    border are ignored in training (sec. 3.3) and kept, clipped, at test time.

    Test-time ablations (the paper's Table 2), off by default and used in eval mode only:
    `test_order="random"` ranks the proposals by a random priority instead of the objectness
    (the RPN without its cls layer; drawn from `generator`, a CPU torch.Generator, or torch's
    global RNG when None), `test_apply_deltas=False` proposes the anchors themselves (without its
    reg layer). `nms_thresh=None` turns the proposal NMS off (in both modes). All are plain
    attributes, so a trained model can be switched after loading: `model.rpn.test_order = "random"`.

    Your own functions in place of the library's (the lessons' exercises run inside the
    detector this way), each with the signature of the function it replaces; None keeps the
    library's:
        anchor_fn(base_anchors [k, 4], feature_size (Hf, Wf), stride) -> [A, 4], like
            `anchors.grid_anchors` (ordered [Hf, Wf, k]);
        label_fn(anchors [A, 4], gt_boxes [G, 4], pos_iou, neg_iou, valid [A] bool) ->
            (labels [A] in {1, 0, -1}, matched gt index [A]), like `matching.label_anchors`,
            or the labels alone (each positive is then regressed to its box of highest IoU);
        proposal_fn(anchors [A, 4], objectness [N, A], deltas [N, A, 4], image_sizes,
            pre_nms_top_n, post_nms_top_n, nms_thresh, min_size) -> (list of [P, 4] boxes,
            list of [P] scores), like `proposals.generate_proposals` (the test-time ablations
            above need the library's proposal layer).
    """

    def __init__(self, in_channels, stride=16, anchor_sizes=(128, 256, 512),
                 anchor_ratios=(0.5, 1.0, 2.0), batch_size_per_image=256, positive_fraction=0.5,
                 pos_iou=0.7, neg_iou=0.3, pre_nms_top_n=(12000, 6000), post_nms_top_n=(2000, 300),
                 nms_thresh=0.7, min_size=0.0, lam=10.0, loss_normalize="paper", mid_channels=None,
                 test_order="score", test_apply_deltas=True, generator=None, anchor_fn=None,
                 label_fn=None, proposal_fn=None):
        super().__init__()
        for name, fn in (("anchor_fn", anchor_fn), ("label_fn", label_fn),
                         ("proposal_fn", proposal_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a function or None (the library's), got "
                                f"{type(fn).__name__}")
        self.anchor_fn = anchor_fn or anchor_ops.grid_anchors
        self.label_fn = label_fn or label_anchors
        self.proposal_fn = proposal_fn
        self.stride = stride
        self.register_buffer("base_anchors",
                             anchor_ops.make_base_anchors(anchor_sizes, anchor_ratios), persistent=False)
        self.head = RPNHead(in_channels, len(anchor_sizes) * len(anchor_ratios), mid_channels)
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.pos_iou, self.neg_iou = pos_iou, neg_iou
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n  # (train, test)
        self.nms_thresh, self.min_size = nms_thresh, min_size
        self.lam, self.loss_normalize = lam, loss_normalize
        self.test_order, self.test_apply_deltas, self.generator = test_order, test_apply_deltas, generator

    @property
    def num_anchors_per_location(self):
        return self.base_anchors.shape[0]

    def anchors_for(self, features):
        """All anchors of the (padded) feature map, [A, 4] in input-image pixels."""
        return self.anchor_fn(self.base_anchors, tuple(features.shape[-2:]), self.stride)

    def forward(self, features, image_sizes, targets=None, propose=True):
        """Returns (proposals list[[P, 4]], scores list[[P]], losses dict).

        In training mode the proposals keep the graph of the predicted deltas (decode and clip
        are differentiable almost everywhere; the selections are index choices): whether the
        detector treats them as constants (approximate joint training, sec. 3.2) or
        back-propagates into them (non-approximate) is the caller's choice, made in
        `FasterRCNN.forward`. In eval mode they are detached. Losses are empty in eval mode or
        when targets is None.
        `propose=False` skips the proposal layer (proposals and scores are None): training the
        RPN alone (4-step steps 1 and 3) needs only its losses, and the layer's NMS over all
        A anchors costs about as much as the rest of such a step.
        """
        pred_logits, pred_deltas = self.head(features)
        anchors = self.anchors_for(features)
        proposals = scores = None
        if propose:
            proposals, scores = self.propose(anchors, pred_logits.detach(), pred_deltas,
                                             image_sizes)
        losses = {}
        if targets is not None:
            losses = self.loss(anchors, pred_logits, pred_deltas, image_sizes, targets)
        return proposals, scores, losses

    def propose(self, anchors, objectness, deltas, image_sizes):
        """The proposal layer: the library's, or `proposal_fn` (called positionally, on
        detached deltas: a student's layer is not asked to keep the graph). In training mode
        the library's keeps the deltas' graph (see `forward`)."""
        mode = 0 if self.training else 1
        settings = (self.pre_nms_top_n[mode], self.post_nms_top_n[mode], self.nms_thresh,
                    self.min_size)
        if self.proposal_fn is not None:
            if not self.training and (self.test_order, self.test_apply_deltas) != ("score", True):
                raise ValueError("the test-time ablations (test_order, test_apply_deltas) need "
                                 "the library's proposal layer: set proposal_fn=None")
            return self.proposal_fn(anchors, objectness, deltas.detach(), image_sizes, *settings)
        ablations = dict(differentiable=True) if self.training else dict(
            order=self.test_order, apply_deltas=self.test_apply_deltas, generator=self.generator)
        return generate_proposals(anchors, objectness, deltas, image_sizes, *settings, **ablations)

    def _labels(self, anchors, gt_boxes, valid):
        """(labels, matched gt) from `label_fn`; a function that returns the labels alone gets
        each anchor's box of highest IoU as its match."""
        out = self.label_fn(anchors, gt_boxes, self.pos_iou, self.neg_iou, valid)
        if isinstance(out, (tuple, list)):
            return out
        matched = box_iou(anchors, gt_boxes).argmax(dim=1) if len(gt_boxes) else \
            torch.full_like(out, -1)
        return out, matched

    def assign_targets(self, anchors, image_size, gt_boxes):
        """Labels (1 / 0 / -1 after sampling 256) and regression targets for one image."""
        valid = anchor_ops.inside_image(anchors, image_size)
        labels, matched = self._labels(anchors, gt_boxes, valid)
        labels = sample_labels(labels, self.batch_size_per_image, self.positive_fraction)
        gt_deltas = torch.zeros_like(anchors)
        positive = labels == 1
        if positive.any():
            gt_deltas[positive] = encode_boxes(anchors[positive], gt_boxes[matched[positive]])
        return labels, gt_deltas

    def loss(self, anchors, pred_logits, pred_deltas, image_sizes, targets):
        """Eq. 1 for each image, averaged over the images of the batch."""
        cls_total, reg_total = 0.0, 0.0
        for i, target in enumerate(targets):
            labels, gt_deltas = self.assign_targets(anchors, image_sizes[i], target["boxes"])
            cls, reg = rpn_loss(pred_logits[i], pred_deltas[i], labels, gt_deltas,
                                n_cls=self.batch_size_per_image,
                                num_anchors_per_location=self.num_anchors_per_location,
                                lam=self.lam, normalize=self.loss_normalize)
            cls_total, reg_total = cls_total + cls, reg_total + reg
        n = len(targets)
        return {"loss_objectness": cls_total / n, "loss_rpn_box_reg": reg_total / n}
