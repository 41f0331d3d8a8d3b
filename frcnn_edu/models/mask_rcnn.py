"""Mask R-CNN (He, Gkioxari, Dollár, Girshick, 2017): Faster R-CNN plus a mask branch.

Sec. 3 adds a third output to each RoI: a small fully convolutional network (FCN) predicts a
binary m x m mask for each of the K classes from the RoI's features, in parallel with the box
classifier and regressor. Here:

* the mask head pools each RoI to 14 x 14 with RoIAlign (sec. 3, "RoIAlign"; `pooler="roi_pool"`
  gives the quantised RoIPool of the paper's Table 2c), runs a few 3x3 convs, a 2x2 deconv with
  stride 2 (to 28 x 28) and a 1x1 conv to one m x m mask per class (the paper's FPN head, fig. 4
  right, with four convs);
* the mask target of a positive RoI is its ground-truth object's mask resampled onto the RoI:
  RoIAlign of the full-image mask on the RoI's box to m x m, thresholded at 0.5
  (`project_masks_on_boxes`);
* the loss (`frcnn_edu.losses.mask_rcnn_loss`) is a per-pixel sigmoid binary cross-entropy on
  the mask of the RoI's ground-truth class only ("sigmoid"); `mask_loss="softmax"` is the
  Table 2b alternative, a per-pixel softmax over the classes;
* at test time the mask branch runs on the detections (sec. 3.1, "Inference"): the mask of the
  predicted class is scaled to the box bilinearly and pasted into the image
  (`paste_masks_in_image`). The model returns probabilities, ``masks`` float [D, 1, H, W] in
  [0, 1], as torchvision does; threshold them at 0.5 for binary masks (the evaluation does).

The paper trains the mask branch on the positive RoIs of the box head's sample (IoU >= 0.5),
as here. Its losses add up to L = L_cls + L_box + L_mask (sec. 3).

Shape key:
    N  images    C  feature channels    R  positive RoIs of the batch (R_i of image i)
    K  foreground classes (num_classes = K + 1 with background)
    S  RoI feature size (14)    m  mask size (28)    D  detections of one image
    G  ground-truth objects of one image    H, W  image height and width
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import MASK_LOSSES, fast_rcnn_loss, mask_rcnn_loss
from ..matching import label_proposals
from ..roi_ops import roi_align, roi_pool
from .faster_rcnn import FasterRCNN

__all__ = ["MaskHead", "MaskRCNN", "project_masks_on_boxes", "paste_masks_in_image"]


class MaskHead(nn.Module):
    """RoI features [R, C, S, S] -> convs -> deconv -> mask logits [R, K+1, m, m], m = 2 S.

    `pooler`: "roi_align" (the paper) or "roi_pool" (Table 2c). `channels` and `num_convs`:
    the FCN's width and depth (the paper's FPN head: 256 and 4). `loss`: "sigmoid" (the paper)
    or "softmax" (Table 2b); it decides how logits become probabilities.
    """

    def __init__(self, in_channels, num_classes, stride, pool_size=14, channels=256, num_convs=4,
                 pooler="roi_align", loss="sigmoid"):
        super().__init__()
        if pooler not in ("roi_align", "roi_pool"):
            raise ValueError(f'mask pooler must be "roi_align" (Mask R-CNN) or "roi_pool" '
                             f'(Table 2c), got {pooler!r}')
        if loss not in MASK_LOSSES:
            raise ValueError(f'mask loss must be "sigmoid" (the paper) or "softmax" (Table 2b), '
                             f'got {loss!r}')
        self.stride, self.pool_size, self.pooler, self.loss = stride, pool_size, pooler, loss
        layers, cin = [], in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(cin, channels, 3, padding=1), nn.ReLU(inplace=True)]
            cin = channels
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(cin, channels, 2, stride=2)   # S -> m = 2 S
        self.predictor = nn.Conv2d(channels, num_classes, 1)            # one mask per class
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def mask_size(self):
        return 2 * self.pool_size

    def pool(self, features, rois):
        """[N, C, Hf, Wf], list of [R_i, 4] -> [R, C, S, S]. RoIPool rounds the RoI and its
        bins to feature cells; RoIAlign samples bilinearly at exact positions."""
        if self.pooler == "roi_align":
            return roi_align(features, rois, self.pool_size, 1.0 / self.stride, sampling_ratio=2,
                             aligned=True)
        return roi_pool(features, rois, self.pool_size, 1.0 / self.stride)

    def forward(self, features, rois):
        x = self.convs(self.pool(features, rois))
        return self.predictor(F.relu(self.deconv(x)))

    def probabilities(self, mask_logits, labels):
        """[R, K+1, m, m], labels [R] -> [R, m, m]: the mask of each RoI's class, in [0, 1]."""
        idx = torch.arange(len(labels), device=labels.device)
        if self.loss == "sigmoid":
            return mask_logits[idx, labels].sigmoid()
        return mask_logits.softmax(1)[idx, labels]


def project_masks_on_boxes(gt_masks, boxes, matched_idxs, mask_size=28, aligned=True,
                           threshold=0.5):
    """Mask targets: each RoI's ground-truth mask, resampled onto the RoI. [R, m, m] float 0/1.

    gt_masks [G, H, W] (0/1) of one image; boxes [R, 4] the RoIs in the masks' pixels;
    matched_idxs [R] the object each RoI is matched to. RoIAlign of the masks on the boxes
    (bilinear, adaptive sampling) gives the fraction of each cell the object covers, thresholded
    at `threshold` (binary targets as in Detectron; torchvision's ``project_masks_on_boxes``
    keeps the fractions). `aligned=True` (Detectron2) puts pixel i's centre at i + 0.5, our
    boxes' convention; `aligned=False` is torchvision's (a half-pixel shift).
    """
    if gt_masks.dim() != 3:
        raise ValueError(f"gt_masks must be [G, H, W], got {list(gt_masks.shape)}")
    if len(boxes) != len(matched_idxs):
        raise ValueError(f"boxes [{len(boxes)}, 4] and matched_idxs [{len(matched_idxs)}] differ")
    rois = torch.cat([matched_idxs[:, None].to(boxes.dtype), boxes], 1)
    fractions = roi_align(gt_masks[:, None].to(boxes.dtype), rois, mask_size, 1.0,
                          sampling_ratio=-1, aligned=aligned)[:, 0]
    return (fractions >= threshold).to(boxes.dtype)


def paste_masks_in_image(masks, boxes, image_size):
    """Masks [D, m, m] (probabilities) into the image: [D, H, W], 0 outside each box.

    The m x m mask covers its box exactly; each pixel whose centre (x + 0.5, y + 0.5) lies in
    the box takes the mask's bilinear interpolation at that point (sec. 3.1: "the m x m
    floating-number mask output is then resized to the RoI size").
    """
    H, W = image_size
    D = len(boxes)
    if D == 0:
        return masks.new_zeros(0, H, W)
    xs = torch.arange(W, device=boxes.device, dtype=masks.dtype) + 0.5
    ys = torch.arange(H, device=boxes.device, dtype=masks.dtype) + 0.5
    x1, y1, x2, y2 = boxes.to(masks.dtype).unbind(1)
    gx = 2 * (xs[None] - x1[:, None]) / (x2 - x1)[:, None] - 1          # [D, W], box = [-1, 1]
    gy = 2 * (ys[None] - y1[:, None]) / (y2 - y1)[:, None] - 1          # [D, H]
    grid = torch.stack([gx[:, None, :].expand(D, H, W), gy[:, :, None].expand(D, H, W)], -1)
    pasted = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[:, 0]
    inside_x = (xs[None] >= x1[:, None]) & (xs[None] <= x2[:, None])    # in pixels, not in
    inside_y = (ys[None] >= y1[:, None]) & (ys[None] <= y2[:, None])    # rounded grid units
    inside = inside_x[:, None, :] & inside_y[:, :, None]
    return pasted * inside


class MaskRCNN(FasterRCNN):
    """`MaskRCNN(backbone, num_classes, ...)`: `FasterRCNN` plus a mask branch (`MaskHead`).

    Training: targets also need ``masks`` uint8 [G, H, W]; returns FasterRCNN's four losses
    and ``loss_mask``. Eval: each detection dict also holds ``masks`` float [D, 1, H, W],
    probabilities in [0, 1] (threshold at 0.5), in input-image pixels, and ``mask_probs``
    [D, m, m], the predicted class's mask on the RoI's grid before pasting. `mask_pooler`,
    `mask_loss`: the switches of the paper's Table 2c and 2b. Other arguments go to FasterRCNN.
    """

    def __init__(self, backbone, num_classes, mask_pooler="roi_align", mask_loss="sigmoid",
                 mask_pool_size=14, mask_channels=256, mask_convs=4, **kwargs):
        super().__init__(backbone, num_classes, **kwargs)
        self.mask_head = MaskHead(backbone.out_channels, num_classes, backbone.stride,
                                  mask_pool_size, mask_channels, mask_convs, mask_pooler, mask_loss)

    def head_losses(self, features, proposals, image_sizes, targets):
        heads = self.roi_heads
        rois, labels, gt_deltas = heads.sample(proposals, targets)
        class_logits, box_deltas = heads.predict(features, rois)
        cls, box = fast_rcnn_loss(class_logits, box_deltas, labels, gt_deltas, lam=heads.lam)
        loss_mask = self.mask_loss(features, rois, labels.split([len(r) for r in rois]),
                                   image_sizes, targets)
        return {"loss_classifier": cls, "loss_box_reg": box, "loss_mask": loss_mask}

    def mask_targets(self, rois, labels, image_size, target):
        """Positive RoIs of one image, their classes and mask targets [R_i, m, m]."""
        if "masks" not in target:
            raise ValueError("Mask R-CNN needs target['masks'] (uint8 [G, H, W]) in training; "
                             "use e.g. ShapesDataset(..., masks=True)")
        fg = labels > 0
        pos, pos_labels = rois[fg], labels[fg]
        _, matched = label_proposals(pos, target["boxes"], target["labels"], self.roi_heads.fg_iou,
                                     self.roi_heads.bg_iou)
        masks = target["masks"]
        # RoIs are in the resized image's pixels, the masks in the original's
        scale = pos.new_tensor([masks.shape[-1] / image_size[1], masks.shape[-2] / image_size[0]] * 2)
        return pos, pos_labels, project_masks_on_boxes(masks, pos * scale, matched,
                                                       self.mask_head.mask_size)

    def mask_loss(self, features, rois, labels, image_sizes, targets):
        parts = [self.mask_targets(r, lab, size, t)
                 for r, lab, size, t in zip(rois, labels, image_sizes, targets)]
        pos_rois = [p[0] for p in parts]
        mask_logits = self.mask_head(features, pos_rois)
        return mask_rcnn_loss(mask_logits, torch.cat([p[1] for p in parts]),
                              torch.cat([p[2] for p in parts]), self.mask_head.loss)

    def detect(self, features, proposals, image_sizes):
        detections = super().detect(features, proposals, image_sizes)
        mask_logits = self.mask_head(features, [d["boxes"] for d in detections])
        labels = torch.cat([d["labels"] for d in detections])
        probs = self.mask_head.probabilities(mask_logits, labels)
        for d, p in zip(detections, probs.split([len(d["boxes"]) for d in detections])):
            d["mask_probs"] = p                                    # [D, m, m], pasted in forward
        return detections

    def forward(self, images, targets=None, stages="both", proposals=None):
        out = super().forward(images, targets, stages, proposals)
        if self.training:
            return out
        for d, img in zip(out, images):
            d["masks"] = paste_masks_in_image(d["mask_probs"], d["boxes"], img.shape[-2:])[:, None]
        return out
