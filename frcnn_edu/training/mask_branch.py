"""The mask branch trained alone on frozen features: Mask R-CNN's Table 2b and 2c in miniature.

The paper's ablations (He et al. 2017, Table 2) change one part of the mask branch and report
mask AP: RoIAlign against RoIPool (2c) and a per-class sigmoid against a softmax over classes
(2b). Training a whole Mask R-CNN per variant takes longer than a lesson may on two CPU cores,
so this study keeps everything else fixed: the pre-trained TinyVGG's conv features are computed
once per image (frozen), the RoIs are the ground-truth boxes jittered as proposals are (each
coordinate moved by N(0, `jitter` x the box's size), kept only at IoU >= 0.5, the mask head's
positives), and only the `MaskHead` trains. At test time each ground-truth box (exact, with
its true class) is a detection of score 1, so COCO's mask AP measures the masks alone: the
fraction of objects whose mask reaches each IoU threshold, averaged over 0.5:0.95.

Shape key:
    C  feature channels    Hf, Wf  feature map    G  objects of one image    R  RoIs
    m  mask size (28)
(features may also be a tuple of maps, one per level, for a head whose `pool` reads several)
"""
import time

import torch

from ..boxes import box_iou
from ..coco_eval import coco_evaluate
from ..data.batching import batch_images
from ..losses import mask_rcnn_loss
from ..models.backbones import tiny_vgg
from ..models.mask_rcnn import MaskHead, paste_masks_in_image, project_masks_on_boxes

__all__ = ["frozen_features", "jitter_rois", "train_mask_branch", "predict_masks",
           "evaluate_mask_branch",
           "mask_branch_study", "STUDY_VARIANTS"]

#: The rows of the study: name -> (pooler, loss). The first is the paper's Mask R-CNN.
STUDY_VARIANTS = {"RoIAlign + sigmoid (paper)": ("roi_align", "sigmoid"),
                  "RoIPool + sigmoid (Table 2c)": ("roi_pool", "sigmoid"),
                  "RoIAlign + softmax (Table 2b)": ("roi_align", "softmax")}


@torch.no_grad()
def frozen_features(backbone, dataset, indices=None):
    """[(features [1, C, Hf, Wf], target)] for the dataset's items (masks needed), computed once."""
    backbone.eval()
    items = []
    for i in (range(len(dataset)) if indices is None else indices):
        image, target = dataset[i]
        if "masks" not in target:
            raise ValueError("the study needs instance masks: ShapesDataset(..., masks=True)")
        x, _ = batch_images([image], backbone.stride)
        items.append((backbone(x), target))
    return items


def jitter_rois(boxes, generator, jitter=0.1, copies=4, min_iou=0.5):
    """RoIs [G * copies, 4] around `boxes` [G, 4] and the object each belongs to; a jittered box
    below `min_iou` with its object is replaced by the object's box (a positive RoI)."""
    matched = torch.arange(len(boxes)).repeat_interleave(copies)
    base = boxes[matched]
    size = (base[:, 2:] - base[:, :2]).repeat(1, 2)
    rois = base + jitter * size * torch.randn(base.shape, generator=generator)
    rois = torch.cat([torch.minimum(rois[:, :2], rois[:, 2:] - 1), rois[:, 2:]], 1)
    iou = box_iou(rois, base).diagonal() if len(rois) else rois.new_zeros(0)
    rois[iou < min_iou] = base[iou < min_iou]
    return rois, matched


def _features(items):
    """The batch's features: one map [N, C, Hf, Wf], or a tuple of maps (one per level) when
    the items hold tuples (a head that pools from several levels)."""
    first = items[0][0]
    if isinstance(first, tuple):
        return tuple(torch.cat([f[k] for f, _ in items]) for k in range(len(first)))
    return torch.cat([f for f, _ in items])


def train_mask_branch(head, items, steps, lr=1e-3, batch_size=2, seed=0, jitter=0.1):
    """Train `head` (Adam) for `steps` steps of `batch_size` images' jittered positive RoIs.
    Returns the loss history (one float per step) and the seconds it took."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    history, start = [], time.perf_counter()
    for step in range(steps):
        batch = [items[int(i)] for i in torch.randint(len(items), (batch_size,), generator=g)]
        rois, labels, targets = [], [], []
        for _, t in batch:
            r, matched = jitter_rois(t["boxes"], g, jitter)
            rois.append(r)
            labels.append(t["labels"][matched])
            targets.append(project_masks_on_boxes(t["masks"], r, matched, head.mask_size))
        logits = head(_features(batch), rois)
        loss = mask_rcnn_loss(logits, torch.cat(labels), torch.cat(targets), head.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history, time.perf_counter() - start


@torch.no_grad()
def predict_masks(head, features, boxes, labels, image_size):
    """The head's masks for given boxes and classes of one image, as a Mask R-CNN detection:
    dict(boxes, labels, scores (ones), mask_probs [D, m, m], masks [D, 1, H, W])."""
    head.eval()
    probs = head.probabilities(head(features, [boxes]), labels)
    return dict(boxes=boxes, labels=labels, scores=torch.ones(len(boxes)), mask_probs=probs,
                masks=paste_masks_in_image(probs, boxes, image_size)[:, None])


def evaluate_mask_branch(head, items, num_classes):
    """COCO mask AP of `head`'s masks on the exact ground-truth boxes (score 1, true class)."""
    predictions = [predict_masks(head, f, t["boxes"], t["labels"], t["masks"].shape[-2:])
                   for f, t in items]
    return coco_evaluate(predictions, [t for _, t in items], num_classes, "segm")


def mask_branch_study(train_set, test_set, steps=400, variants=STUDY_VARIANTS, seed=0,
                      stride=8, channels=32, num_convs=2, lr=1e-3):
    """Each variant's mask head trained and scored on the same frozen features.

    Returns {name: dict(pooler, loss, steps, seconds, final_loss, AP, AP50, AP75)}."""
    torch.manual_seed(seed)
    backbone = tiny_vgg(pretrained=True, stride=stride)
    train_items, test_items = frozen_features(backbone, train_set), frozen_features(backbone, test_set)
    rows = {}
    for name, (pooler, loss) in variants.items():
        torch.manual_seed(seed)                          # same initial weights for every row
        head = MaskHead(backbone.out_channels, train_set.num_classes, stride, 14, channels,
                        num_convs, pooler, loss)
        history, seconds = train_mask_branch(head, train_items, steps, lr, seed=seed)
        metrics = evaluate_mask_branch(head, test_items, train_set.num_classes)
        rows[name] = dict(pooler=pooler, loss=loss, steps=steps, seconds=round(seconds, 1),
                          final_loss=round(sum(history[-20:]) / len(history[-20:]), 4),
                          **{k: round(metrics[k], 4) for k in ("AP", "AP50", "AP75")})
    return rows
