"""Faster R-CNN (Ren et al., 2015): an RPN and a Fast R-CNN head on the same conv features.

One network: shared conv layers (the backbone), the Region Proposal Network (sec. 3.1) and the
Fast R-CNN detector (`RoIHead`). In training mode the model returns the four named losses of
joint training (sec. 3.2), and the ground-truth boxes are added to the RPN's proposals. With
`joint="approximate"` (the paper's experiments, the default) the detector treats the proposals
as constants (no gradient through their coordinates); with `joint="exact"` (non-approximate
joint training) the detector loss also back-propagates through RoIAlign into the proposal
coordinates and from there into the RPN's box-regression branch and the shared layers.
In eval mode it returns torchvision's detection format in input-image pixels.

Shape key:
    N  images    C  feature channels    Hf, Wf  feature map    K  foreground classes
    P_i  proposals of image i           D_i  detections of image i
"""
import torch
from torch import nn

from ..data.batching import batch_images, check_images
from ..data.targets import check_targets
from ..data.transforms import resize_image
from .fast_rcnn import RoIHead
from .rpn import RegionProposalNetwork


class FasterRCNN(nn.Module):
    """`FasterRCNN(backbone, num_classes)`; num_classes counts background, as in torchvision.

    Training: `model(images, targets)` -> dict(loss_objectness, loss_rpn_box_reg,
    loss_classifier, loss_box_reg). Eval: `model(images)` -> list of dict(boxes [D, 4],
    labels [D], scores [D]). `stages` selects what trains (used by 4-step training):
    "rpn" returns only the RPN losses, "detector" only the head's (proposals come from the
    model's own RPN or, if given, from `proposals=`). `image_scale` resizes every image so its
    shorter side has that many pixels (the paper's s), the longer at most `image_max_size`
    (1000); boxes in and out stay in the caller's pixels, anchors are in resized pixels.
    `rpn_functions` = dict(anchor_fn=..., label_fn=..., proposal_fn=...) puts your own functions
    into the RPN in place of the library's (see `RegionProposalNetwork`): a lesson trains the
    detector on a student's anchors, labels or proposal layer this way.

    `joint` chooses what the detector loss sees of the proposals when `stages="both"`:
    "approximate" detaches them (approximate joint training); "exact" keeps them as functions of
    the RPN's predicted deltas (non-approximate joint training), which needs an RoI layer
    differentiable in the box coordinates, i.e. `pooler="roi_align"`. In "exact" the proposal
    layer's clipping is a clamp (a clipped coordinate gets gradient 0), the removal of small or
    empty boxes, the top-N cuts and NMS are index selections (no gradient through the choice;
    the kept boxes carry theirs), the appended ground-truth boxes are constants, and the
    detector's regression targets are detached (see `RoIHead.sample`).
    """

    def __init__(self, backbone, num_classes, anchor_sizes=(128, 256, 512),
                 anchor_ratios=(0.5, 1.0, 2.0), rpn_batch_size=256, rpn_lam=10.0,
                 rpn_loss_normalize="paper", rpn_pre_nms_top_n=(12000, 6000),
                 rpn_post_nms_top_n=(2000, 300), rpn_nms_thresh=0.7, rois_per_image=64,
                 fg_fraction=0.25, bg_iou=(0.0, 0.5), pooler="roi_pool", fc=None,
                 representation_size=256, box_score_thresh=0.05, box_nms_thresh=0.3,
                 detections_per_image=100, image_scale=None, image_max_size=1000,
                 joint="approximate", rpn_functions=None):
        super().__init__()
        if joint not in ("approximate", "exact"):
            raise ValueError(f'joint must be "approximate" (proposals are constants to the '
                             f'detector, the paper) or "exact" (non-approximate), got {joint!r}')
        if joint == "exact" and pooler != "roi_align":
            raise ValueError(f'joint="exact" back-propagates the detector loss into the proposal '
                             f'coordinates, which needs an RoI layer differentiable in them: '
                             f'pass pooler="roi_align" (pooler={pooler!r} is RoI max pooling, '
                             f'piecewise constant in the box), or use joint="approximate"')
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        if image_scale is not None and not (isinstance(image_scale, int) and image_scale > 0):
            raise ValueError(f"image_scale is the shorter side in pixels (the paper's s = 600), "
                             f"a positive int or None (no resizing), got {image_scale!r}")
        if image_max_size is not None and image_scale is not None and image_max_size < image_scale:
            raise ValueError(f"image_max_size (the cap on the longer side, the paper's 1000) must "
                             f"be >= image_scale or None, got {image_max_size} < {image_scale}")
        self.backbone, self.num_classes, self.image_scale = backbone, num_classes, image_scale
        self.joint, self.image_max_size = joint, image_max_size
        self.rpn = RegionProposalNetwork(
            backbone.out_channels, backbone.stride, anchor_sizes, anchor_ratios,
            batch_size_per_image=rpn_batch_size, pre_nms_top_n=rpn_pre_nms_top_n,
            post_nms_top_n=rpn_post_nms_top_n, nms_thresh=rpn_nms_thresh, lam=rpn_lam,
            loss_normalize=rpn_loss_normalize, **self._rpn_functions(rpn_functions))
        # bg_iou starts at 0.0, not Fast R-CNN's 0.1: py-faster-rcnn's end-to-end Faster R-CNN
        # config does the same, so RoIs on empty background are also learned as background.
        self.roi_heads = RoIHead(
            backbone.out_channels, num_classes, backbone.stride, pooler=pooler, fc=fc,
            representation_size=representation_size, rois_per_image=rois_per_image,
            fg_fraction=fg_fraction, bg_iou=bg_iou, score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh, detections_per_image=detections_per_image)

    @staticmethod
    def _rpn_functions(functions):
        functions = dict(functions or {})
        unknown = set(functions) - {"anchor_fn", "label_fn", "proposal_fn"}
        if unknown:
            raise ValueError(f"rpn_functions takes anchor_fn, label_fn and proposal_fn, got "
                             f"{sorted(unknown)}")
        return functions

    def forward(self, images, targets=None, stages="both", proposals=None):
        if stages not in ("both", "rpn", "detector"):
            raise ValueError(f'stages must be "both", "rpn" or "detector", got {stages!r}')
        features, sizes, targets, factors = self._prepare(images, targets, self.training)
        if proposals is not None:
            proposals = [p * f for p, f in zip(proposals, factors)]
        rpn_targets = targets if self.training and stages != "detector" else None
        if proposals is None:
            rpn_alone = self.training and stages == "rpn"  # losses only: no proposal layer
            proposals, _, rpn_losses = self.rpn(features, sizes, rpn_targets, propose=not rpn_alone)
        else:
            rpn_losses = {}
        if not self.training:
            detections = self.detect(features, proposals, sizes)
            return [dict(d, boxes=d["boxes"] / f) for d, f in zip(detections, factors)]
        if stages == "rpn":
            return rpn_losses
        # Approximate joint training: the detector treats the proposals as constants (detach);
        # exact: they stay functions of the RPN's deltas (only when this step trains both).
        exact = self.joint == "exact" and stages == "both"
        proposals = [torch.cat([p if exact else p.detach(), t["boxes"]])
                     for p, t in zip(proposals, targets)]
        head_losses = self.head_losses(features, proposals, sizes, targets)
        return {**rpn_losses, **head_losses}

    def detect(self, features, proposals, image_sizes):
        """The heads at test time: detections in the (resized) images' pixels. Mask R-CNN
        extends it with the mask branch."""
        return self.roi_heads(features, proposals, image_sizes)

    def head_losses(self, features, proposals, image_sizes, targets):
        """The heads' losses on the proposals (ground truth added). Mask R-CNN extends it."""
        return self.roi_heads(features, proposals, image_sizes, targets)

    def shared_features(self, images, targets=None):
        """The shared conv layers' output for a batch: (features [N, C, Hf, Wf], the (resized)
        image sizes, and the targets with their boxes in resized pixels, or None).

        The first part of `forward`: check the targets when given, resize the images
        (`image_scale`), pad them into one batch and run the backbone once. The RPN
        (`self.rpn(features, sizes, targets)`) and the detector (`self.roi_heads(features,
        rois, sizes, targets)`) both read its result.
        """
        features, sizes, targets, _ = self._prepare(images, targets, targets is not None)
        return features, sizes, targets

    def _prepare(self, images, targets, check):
        if check:  # boxes inside their image, float32 (float64 converted, as torchvision)
            check_images(images)
            targets = check_targets(targets, self.num_classes, len(images),
                                    image_sizes=[tuple(img.shape[-2:]) for img in images])
        images, factors = self.resize(images)
        if check:
            targets = [dict(t, boxes=t["boxes"] * f) for t, f in zip(targets, factors)]
        x, sizes = batch_images(images, self.backbone.stride)
        return self.backbone(x), sizes, targets, factors

    @torch.no_grad()  # proposals are constants to whoever uses them: no graph to keep
    def propose(self, images, train_settings=False):
        """The RPN's proposals and objectness scores for each image.

        Test-time top-N (300) by default; `train_settings=True` gives the training top-N (2000),
        which 4-step training uses to feed a separate detector.
        """
        images, factors = self.resize(images)
        x, sizes = batch_images(images, self.backbone.stride)
        was_training = self.rpn.training
        self.rpn.train(train_settings)
        try:
            proposals, scores, _ = self.rpn(self.backbone(x), sizes)
        finally:
            self.rpn.train(was_training)
        return [p / f for p, f in zip(proposals, factors)], scores

    def resize(self, images):
        """Images rescaled so that their shorter side is `image_scale` pixels (the paper's single
        scale s = 600, Fast R-CNN sec. 5.2) unless the longer side would pass `image_max_size`
        (the paper's 1,000), and per image the factors [4] (x, y, x, y) that map boxes into the
        resized image. Small objects gain feature-map cells: at stride 8 a 12-pixel shape covers
        1.5 cells, upsampled 1.5x it covers 2.25. None: images unchanged, factors 1. The resizing
        is `data.transforms.resize_image`, the same as the `ResizeShorterSide` transform's.
        """
        check_images(images)
        if self.image_scale is None:
            return list(images), [1.0] * len(images)
        resized, factors = [], []
        for img in images:
            img, (sy, sx) = resize_image(img, self.image_scale, self.image_max_size)
            resized.append(img)
            factors.append(img.new_tensor([sx, sy, sx, sy]))
        return resized, factors
