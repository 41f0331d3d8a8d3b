"""Faster R-CNN (Ren et al., 2015): an RPN and a Fast R-CNN head on the same conv features.

One network: shared conv layers (the backbone), the Region Proposal Network (sec. 3.1) and the
Fast R-CNN detector (`RoIHead`). In training mode the model returns the four named losses of
approximate joint training (sec. 3.2): the RPN's proposals are treated as constants by the
detector (no gradient through their coordinates), and the ground-truth boxes are added to them.
In eval mode it returns torchvision's detection format in input-image pixels.

Shape key:
    N  images    C  feature channels    Hf, Wf  feature map    K  foreground classes
    P_i  proposals of image i           D_i  detections of image i
"""
import torch
from torch import nn

from .batching import batch_images, check_targets
from .fast_rcnn import RoIHead
from .rpn import RegionProposalNetwork


class FasterRCNN(nn.Module):
    """`FasterRCNN(backbone, num_classes)`; num_classes counts background, as in torchvision.

    Training: `model(images, targets)` -> dict(loss_objectness, loss_rpn_box_reg,
    loss_classifier, loss_box_reg). Eval: `model(images)` -> list of dict(boxes [D, 4],
    labels [D], scores [D]). `stages` selects what trains (used by 4-step training):
    "rpn" returns only the RPN losses, "detector" only the head's (proposals come from the
    model's own RPN or, if given, from `proposals=`).
    """

    def __init__(self, backbone, num_classes, anchor_sizes=(128, 256, 512),
                 anchor_ratios=(0.5, 1.0, 2.0), rpn_batch_size=256, rpn_lam=10.0,
                 rpn_loss_normalize="paper", rpn_pre_nms_top_n=(12000, 6000),
                 rpn_post_nms_top_n=(2000, 300), rpn_nms_thresh=0.7, rois_per_image=64,
                 fg_fraction=0.25, bg_iou=(0.0, 0.5), pooler="roi_pool", fc=None,
                 representation_size=256, box_score_thresh=0.05, box_nms_thresh=0.3,
                 detections_per_image=100):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts background and must be >= 2, got {num_classes}")
        self.backbone, self.num_classes = backbone, num_classes
        self.rpn = RegionProposalNetwork(
            backbone.out_channels, backbone.stride, anchor_sizes, anchor_ratios,
            batch_size_per_image=rpn_batch_size, pre_nms_top_n=rpn_pre_nms_top_n,
            post_nms_top_n=rpn_post_nms_top_n, nms_thresh=rpn_nms_thresh, lam=rpn_lam,
            loss_normalize=rpn_loss_normalize)
        # bg_iou starts at 0.0, not Fast R-CNN's 0.1: py-faster-rcnn's end-to-end Faster R-CNN
        # config does the same, so RoIs on empty background are also learned as background.
        self.roi_heads = RoIHead(
            backbone.out_channels, num_classes, backbone.stride, pooler=pooler, fc=fc,
            representation_size=representation_size, rois_per_image=rois_per_image,
            fg_fraction=fg_fraction, bg_iou=bg_iou, score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh, detections_per_image=detections_per_image)

    def forward(self, images, targets=None, stages="both", proposals=None):
        if stages not in ("both", "rpn", "detector"):
            raise ValueError(f'stages must be "both", "rpn" or "detector", got {stages!r}')
        x, sizes = batch_images(images, self.backbone.stride)
        if self.training:
            check_targets(targets, self.num_classes, len(images))
        features = self.backbone(x)
        rpn_targets = targets if self.training and stages != "detector" else None
        if proposals is None:
            proposals, _, rpn_losses = self.rpn(features, sizes, rpn_targets)
        else:
            rpn_losses = {}
        if not self.training:
            return self.roi_heads(features, proposals, sizes)
        if stages == "rpn":
            return rpn_losses
        proposals = [torch.cat([p.detach(), t["boxes"]]) for p, t in zip(proposals, targets)]
        head_losses = self.roi_heads(features, proposals, sizes, targets)
        return {**rpn_losses, **head_losses}

    @torch.no_grad()
    def propose(self, images, train_settings=False):
        """The RPN's proposals and objectness scores for each image.

        Test-time top-N (300) by default; `train_settings=True` gives the training top-N (2000),
        which 4-step training uses to feed a separate detector.
        """
        x, sizes = batch_images(images, self.backbone.stride)
        was_training = self.rpn.training
        self.rpn.train(train_settings)
        try:
            proposals, scores, _ = self.rpn(self.backbone(x), sizes)
        finally:
            self.rpn.train(was_training)
        return proposals, scores
