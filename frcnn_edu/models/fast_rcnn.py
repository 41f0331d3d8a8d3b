"""Fast R-CNN (Girshick, 2015): one conv pass per image, RoI pooling, a multi-task head.

`RoIHead` is the detection stage that Fast and Faster R-CNN share: RoI pooling of each region to
a fixed 7x7 grid (sec. 2.1), fc6/fc7, then two siblings: a softmax over K + 1 classes and
class-specific box deltas (sec. 2). Training samples RoIs per image, 25% foreground (IoU >= 0.5)
and the rest background (IoU in [0.1, 0.5)), sec. 2.3, and applies the multi-task loss (eq. 1).
Inference decodes every class's deltas, drops low scores and runs NMS per class (0.3).
`FastRCNN` puts a backbone in front and takes external proposals (selective search).

Box targets are normalised, as the paper says ("zero mean and unit variance"): in practice
py-faster-rcnn divides (tx, ty, tw, th) by (0.1, 0.1, 0.2, 0.2), i.e. weights (10, 10, 5, 5).

Shape key:
    N  images    C  feature channels    P  pooled size (7)    D  fc7 width
    R  RoIs of the batch (R_i of image i)    K  foreground classes (K + 1 with background)
"""
import torch
from torch import nn

from ..boxes import batched_nms, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes
from ..data.batching import batch_images
from ..data.targets import check_targets
from ..losses import fast_rcnn_loss
from ..matching import label_proposals, sample_proposals
from ..roi_ops import roi_align, roi_pool
from .backbones import FCHead

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class RoIHead(nn.Module):
    """RoI pooling -> fc6, fc7 -> (class scores [R, K+1], class-specific deltas [R, 4(K+1)])."""

    def __init__(self, in_channels, num_classes, stride=16, pool_size=7, pooler="roi_pool",
                 fc=None, representation_size=256, rois_per_image=128, fg_fraction=0.25,
                 fg_iou=0.5, bg_iou=(0.1, 0.5), score_thresh=0.05, nms_thresh=0.3,
                 detections_per_image=100, lam=1.0):
        super().__init__()
        if pooler not in ("roi_pool", "roi_align"):
            raise ValueError(f'pooler must be "roi_pool" (Fast R-CNN) or "roi_align" '
                             f'(Mask R-CNN), got {pooler!r}')
        self.num_classes, self.stride, self.pool_size, self.pooler = num_classes, stride, pool_size, pooler
        self.fc = fc if fc is not None else FCHead(in_channels, pool_size, representation_size)
        self.cls_score = nn.Linear(self.fc.out_features, num_classes)
        self.bbox_pred = nn.Linear(self.fc.out_features, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)   # sec. 2.2: N(0, 0.01^2) and
        nn.init.normal_(self.bbox_pred.weight, std=0.001)  # N(0, 0.001^2), biases 0
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.rois_per_image, self.fg_fraction = rois_per_image, fg_fraction
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_image, self.lam = detections_per_image, lam

    def pool(self, features, rois):
        """[N, C, Hf, Wf], list of [R_i, 4] -> [R, C, P, P]."""
        scale = 1.0 / self.stride
        if self.pooler == "roi_align":
            return roi_align(features, rois, self.pool_size, scale, sampling_ratio=2, aligned=True)
        return roi_pool(features, rois, self.pool_size, scale)

    def predict(self, features, rois):
        x = self.fc(self.pool(features, rois))
        return self.cls_score(x), self.bbox_pred(x)

    def sample(self, proposals, targets):
        """Per image: label proposals, sample R RoIs (25% fg), regression targets. Sec. 2.3."""
        rois, labels, gt_deltas = [], [], []
        for props, t in zip(proposals, targets):
            lab, matched = label_proposals(props.detach(), t["boxes"], t["labels"], self.fg_iou,
                                           self.bg_iou)
            keep = sample_proposals(lab, self.rois_per_image, self.fg_fraction)
            props, lab, matched = props[keep], lab[keep], matched[keep]
            # The regression targets are constants even when the proposals carry a gradient
            # (non-approximate joint training): they define what the head should predict for
            # this RoI. A target that moved with the box would let the loss drop by moving the
            # proposal until encode(proposal, gt) matched whatever the head predicts, without
            # the head or the proposal getting any better. The paper (sec. 3.2) names the missing
            # gradient as the one w.r.t. the box coordinates that enter the RoI pooling layer:
            # that path, through the pooled features, is the only one non-approximate adds.
            fixed = props.detach()
            deltas = torch.zeros_like(fixed)
            fg = lab > 0
            if fg.any():
                deltas[fg] = encode_boxes(fixed[fg], t["boxes"][matched[fg]], BOX_WEIGHTS)
            rois.append(props)
            labels.append(lab)
            gt_deltas.append(deltas)
        return rois, torch.cat(labels), torch.cat(gt_deltas)

    def forward(self, features, proposals, image_sizes, targets=None):
        """Training: dict(loss_classifier, loss_box_reg). Eval: list of dict(boxes, labels, scores)."""
        if targets is not None:
            rois, labels, gt_deltas = self.sample(proposals, targets)
            class_logits, box_deltas = self.predict(features, rois)
            cls, box = fast_rcnn_loss(class_logits, box_deltas, labels, gt_deltas, lam=self.lam)
            return {"loss_classifier": cls, "loss_box_reg": box}
        class_logits, box_deltas = self.predict(features, proposals)
        counts = [len(p) for p in proposals]
        return [self.postprocess(*parts) for parts in zip(
            class_logits.split(counts), box_deltas.split(counts), proposals, image_sizes)]

    def postprocess(self, class_logits, box_deltas, rois, image_size):
        """Softmax, per-class decode + clip, score threshold, per-class NMS, top detections."""
        scores = torch.softmax(class_logits, dim=1)[:, 1:]                       # [R, K]
        boxes = decode_boxes(rois, box_deltas, BOX_WEIGHTS).view(-1, self.num_classes, 4)[:, 1:]
        boxes = clip_boxes(boxes.reshape(-1, 4), image_size)                     # [R*K, 4]
        labels = torch.arange(1, self.num_classes, device=rois.device).repeat(len(rois))
        scores = scores.reshape(-1)
        keep = torch.nonzero(scores > self.score_thresh).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, 1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_thresh, max_kept=self.detections_per_image)
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}

    @torch.no_grad()
    def compress_fc(self, rank):
        """Truncated SVD (sec. 3.1): W [u, v] ~ U_t S_t V_t^T, one layer becomes two smaller ones.

        `rank` is an int (both fc6 and fc7) or a pair (fc6, fc7); the paper keeps 1024 and 256.
        Parameters drop from u*v to t*(u + v). Returns the compressed head (in place).
        """
        ranks = (rank, rank) if isinstance(rank, int) else tuple(rank)
        linears = [i for i, m in enumerate(self.fc) if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the fc layers are already compressed; build a fresh head to "
                             "compress at another rank")
        for index, t in zip(linears, ranks):
            self.fc[index] = _svd_linear(self.fc[index], t)
        return self


def _svd_linear(layer, t):
    """Replace Linear(W, b) by Linear(S_t V_t^T, no bias) followed by Linear(U_t, b)."""
    if not 1 <= t <= min(layer.weight.shape):
        raise ValueError(f"rank must be in 1..{min(layer.weight.shape)} for a "
                         f"{list(layer.weight.shape)} layer, got {t}")
    U, S, Vh = torch.linalg.svd(layer.weight, full_matrices=False)
    first = nn.Linear(layer.in_features, t, bias=False)
    second = nn.Linear(t, layer.out_features)
    first.weight.copy_(S[:t, None] * Vh[:t])
    second.weight.copy_(U[:, :t])
    second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


class FastRCNN(nn.Module):
    """Backbone + RoIHead, fed with external proposals (selective search in the paper).

    `model(images, proposals, targets=None)`: training returns dict(loss_classifier,
    loss_box_reg); eval returns list of dict(boxes, labels, scores). Hierarchical sampling
    (N = 2 images, R = 128 RoIs, i.e. 64 per image) comes from a batch of 2 images and
    rois_per_image=64.
    """

    def __init__(self, backbone, num_classes, pooler="roi_pool", fc=None, rois_per_image=64,
                 add_gt_to_proposals=True, **head_kwargs):
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.add_gt_to_proposals = add_gt_to_proposals
        self.roi_heads = RoIHead(backbone.out_channels, num_classes, backbone.stride,
                                 pooler=pooler, fc=fc, rois_per_image=rois_per_image, **head_kwargs)

    def forward(self, images, proposals, targets=None):
        if len(proposals) != len(images):
            raise ValueError(f"proposals has {len(proposals)} entries for {len(images)} images")
        x, sizes = batch_images(images, self.backbone.stride)
        features = self.backbone(x)
        if self.training:  # batch_images has checked the images: boxes inside each, float32
            targets = check_targets(targets, self.num_classes, len(images),
                                    image_sizes=[tuple(img.shape[-2:]) for img in images])
            if self.add_gt_to_proposals:
                proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets)]
            return self.roi_heads(features, proposals, sizes, targets)
        return self.roi_heads(features, proposals, sizes)
