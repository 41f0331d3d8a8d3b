"""R-CNN (Girshick et al., 2014): warp every proposal, run the CNN on each, score with SVMs.

Sec. 2.1 of the paper: ~2000 selective-search proposals per image; each is dilated by 16 pixels
of context and warped (stretched, ignoring aspect ratio) to the CNN's fixed input; the CNN
(fine-tuned AlexNet) gives a 4096-d fc7 feature; one linear SVM per class scores it; greedy NMS
per class removes duplicates; a class-specific ridge regression on pool5 features refines each
box (appendix C). Our version: crops warped to 112 x 112 (so TinyVGG's conv5 is 7 x 7, the size
its pre-training pooled each region to, and its fc6/fc7 apply unchanged), features from the
pre-trained network (we skip the paper's fine-tuning step), SVMs trained with hard-negative
mining.

The cost that Fast R-CNN removes is visible here: one CNN pass per proposal, not per image.

Shape key:
    P  proposals of one image     F  fc7 feature size (256)     F5  pool5 size (C * 7 * 7)
    K  foreground classes         S  crop side (112)
"""
import torch
from torch import nn

from ..boxes import batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes
from ..data.batching import batch_images
from ..roi_ops import roi_align


def warp_regions(image, boxes, size=112, context=16):
    """Crop each box (plus `context` pixels at the warped scale, sec. 2.1) and stretch to size^2.

    Warping is bilinear resampling of a box to a fixed grid: exactly RoI Align applied to the
    pixels, one sample per output cell. [3, H, W] image, [P, 4] boxes -> [P, 3, S, S].
    """
    pad = context * (boxes[:, 2:] - boxes[:, :2]) / (size - 2 * context)  # context in box pixels
    grown = torch.cat([boxes[:, :2] - pad, boxes[:, 2:] + pad], 1)
    return roi_align(image[None], [grown], size, 1.0, sampling_ratio=1, aligned=True)


class RCNN(nn.Module):
    """Per-region CNN features + per-class linear SVMs + per-class box regressors.

    `frcnn_edu.training.fit_rcnn(model, dataset, proposals)` learns the SVMs and regressors
    (training lives in `training/`); `predict` returns a list of dict(boxes, labels, scores)
    like every detector here.
    """

    def __init__(self, backbone, fc, num_classes, crop_size=112, nms_thresh=0.3,
                 score_thresh=-1.0, detections_per_image=100):
        super().__init__()
        self.backbone, self.fc, self.num_classes = backbone, fc, num_classes
        self.crop_size, self.nms_thresh = crop_size, nms_thresh
        self.score_thresh, self.detections_per_image = score_thresh, detections_per_image
        k, f, f5 = num_classes - 1, fc.out_features, backbone.out_channels * 49
        self.svm = nn.Linear(f, k)                      # one linear SVM per class (rows)
        self.regressor = nn.Linear(f5, 4 * k)           # class-specific ridge regressors
        nn.init.zeros_(self.svm.weight), nn.init.zeros_(self.svm.bias)
        nn.init.zeros_(self.regressor.weight), nn.init.zeros_(self.regressor.bias)

    @torch.no_grad()
    def features(self, image, boxes, chunk=256):
        """pool5 [P, F5] and fc7 [P, F] features of each warped region, `chunk` crops at a time."""
        pool5, fc7 = [], []
        for part in boxes.split(chunk):
            crops = warp_regions(image, part, self.crop_size)
            x, _ = batch_images(list(crops), self.backbone.stride)
            conv5 = nn.functional.adaptive_max_pool2d(self.backbone(x), 7)
            pool5.append(conv5.flatten(1))
            fc7.append(self.fc(conv5))
        empty = image.new_zeros(0, self.regressor.in_features), image.new_zeros(0, self.svm.in_features)
        return (torch.cat(pool5), torch.cat(fc7)) if pool5 else empty

    @torch.no_grad()
    def regress_boxes(self, image, boxes, labels):
        """Move each box with the regressor of its class (app. C). [P, 4], labels [P] -> [P, 4].

        `labels` are classes 1..K. This is the correction `predict` applies to a box it scores
        for that class (once, as in the paper): handy to see what box regression does.
        """
        k = self.num_classes - 1
        if labels.shape != boxes.shape[:1] or (len(labels) and not 1 <= labels.min() <= labels.max() <= k):
            raise ValueError(f"labels must hold one class in 1..{k} per box ({len(boxes)} boxes), "
                             f"got {labels.tolist() if labels.numel() < 10 else list(labels.shape)}")
        pool5, _ = self.features(image, boxes)
        deltas = self.regressor(pool5).view(len(boxes), k, 4)
        deltas = deltas[torch.arange(len(boxes), device=boxes.device), labels - 1]
        return clip_boxes(decode_boxes(boxes, deltas), image.shape[-2:])

    @torch.no_grad()
    def predict(self, images, proposals):
        """Detections for each image from its proposals (selective search in the paper)."""
        self.eval()
        return [self._detect(img, props) for img, props in zip(images, proposals)]

    def _detect(self, image, proposals):
        pool5, fc7 = self.features(image, proposals)
        scores = self.svm(fc7)                                                  # [P, K]
        k = self.num_classes - 1
        deltas = self.regressor(pool5).view(-1, k, 4)
        boxes = decode_boxes(proposals.repeat_interleave(k, 0), deltas.reshape(-1, 4))
        boxes = clip_boxes(boxes, image.shape[-2:])
        labels = torch.arange(1, k + 1, device=image.device).repeat(len(proposals))
        scores = scores.reshape(-1)
        keep = torch.nonzero(scores > self.score_thresh).squeeze(1)
        keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], self.nms_thresh)]
        keep = keep[:self.detections_per_image]
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}
