"""Our stand-in for ImageNet pre-training: classify the shapes in images, each at its own size.

The backbone's training, so it lives in `training` (`python -m frcnn_edu pretrain` runs it).

All three papers start from a network pre-trained to classify ImageNet images (R-CNN sec. 2.3,
Fast R-CNN sec. 2.2, Faster R-CNN sec. 3.2), then fine-tune it for detection. We cannot ship
ImageNet, so `pretrain` trains the same kind of network on a classification task from images
the detector never sees (the shapes generator with another seed): TinyVGG's conv layers run over
a whole 160 x 160 image, each region to classify (an object's box, a jittered copy of it, or a
background box) is cut out of the conv5 map by RoIAlign to 7 x 7, and fc6 / fc7 / a (K + 1)-way
classifier name it. Its conv layers become the detectors' backbone, its fc6/fc7 their head.

Why regions of whole images and not warped crops: ImageNet shows VGG objects at the scale they
have in photographs. Warping every shape, 12 px or 96 px, to a 112 x 112 crop (our first
version) taught conv filters for large shapes only, while the detector sees a 12 px shape as one
feature cell: after 2000 steps of joint training the detector reached mAP 0.39 from those
weights and 0.85 from these (benchmarks/RESULTS.md). Pre-training uses batch norm after every
conv, which makes it converge in a few epochs; `fold_batch_norm` then merges each BN into its
conv, so the shipped weights are a plain TinyVGG, as VGG-16 has no BN. No box regression, no
proposals and no RPN are trained here: those are the detector's job.

`stride=8` pre-trains the dilated network (no pool4, conv5 dilated) that the command line's
detector uses. The stride-16 weights load into it unchanged, but then conv5 meets an unpooled
conv4 map it never saw; pre-trained at stride 8, the detector gains about 5 points of mAP at the
same 2,350 steps (0.83 -> 0.88, benchmarks/RESULTS.md).

The weights ship in `frcnn_edu/assets/` (float16, 4.5 MB per stride); the command that made
them and its accuracy are in the .json file next to them and in data/README.md (the backbone
card).

Shape key:
    M  images    R  regions of a batch    H, W  image size (160)    K  foreground classes
"""
import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..boxes import box_iou
from ..data import ShapesDataset
from ..data.batching import batch_images
from ..data.transforms import RandomHorizontalFlip
from ..models.backbones import FCHead, TinyVGG, fold_batch_norm
from ..roi_ops import roi_align

PRETRAIN_SEED = 2014  # a different seed from the detection splits: "ImageNet" is other images


def make_regions(num_images, seed=PRETRAIN_SEED, background_per_image=2):
    """Images uint8 [M, 3, H, W], and per image its regions [R_i, 4] and their labels [R_i].

    The regions of an image are its objects' boxes (label 1..K) and `background_per_image`
    random boxes (label 0) that overlap no object by more than IoU 0.1.
    """
    data = ShapesDataset("train", num_images=num_images, seed=seed)
    g = torch.Generator().manual_seed(seed)
    images, regions, labels = [], [], []
    for i in range(num_images):
        image, target = data[i]
        bg = _background_boxes(image.shape[-2:], target["boxes"], background_per_image, g)
        images.append((image * 255).round().to(torch.uint8))   # 4x less memory than float
        regions.append(torch.cat([target["boxes"], bg]))
        labels.append(torch.cat([target["labels"], torch.zeros(len(bg), dtype=torch.int64)]))
    return torch.stack(images), regions, labels


def _background_boxes(image_size, gt, n, g, max_iou=0.1):
    """Random boxes (16..80 px) that overlap no object by more than `max_iou`."""
    h, w = image_size
    out = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        side = 16 + 64 * torch.rand(2, generator=g)
        x1 = torch.rand(1, generator=g) * (w - side[0])
        y1 = torch.rand(1, generator=g) * (h - side[1])
        box = torch.stack([x1[0], y1[0], x1[0] + side[0], y1[0] + side[1]])[None]
        if len(gt) == 0 or box_iou(box, gt).max() <= max_iou:
            out.append(box)
    return torch.cat(out) if out else torch.zeros(0, 4)


def jitter_boxes(boxes, g, max_shift=0.1):
    """Each side moved by up to `max_shift` of the box's width / height (like ImageNet's
    random crops: the classifier also sees boxes that are slightly off, as proposals are)."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + (torch.rand(boxes.shape, generator=g) * 2 - 1) * max_shift * wh


class RegionClassifier(nn.Module):
    """TinyVGG conv layers -> RoIAlign 7x7 -> fc6/fc7 -> a (K + 1)-way classifier (VGG's fc8).

    forward([N, 3, H, W] batch, list of N [R_i, 4] regions) -> [R, K + 1] logits
    """

    def __init__(self, num_classes, batch_norm=True, stride=16):
        super().__init__()
        self.features = TinyVGG(batch_norm=batch_norm, stride=stride)
        self.fc = FCHead(self.features.out_channels, 7)
        self.classifier = nn.Linear(self.fc.out_features, num_classes)

    def forward(self, x, regions):
        pooled = roi_align(self.features(x), regions, 7, 1.0 / self.features.stride,
                           sampling_ratio=2, aligned=True)
        return self.classifier(self.fc(pooled))


def _training_batch(images, regions, labels, idx, g, stride=16):
    """Images (randomly flipped) with their regions plus a jittered copy of each object."""
    flip = RandomHorizontalFlip(0.5, generator=g)
    batch, rois, y = [], [], []
    for i in idx:
        image, target = flip(images[i].float() / 255, {"boxes": regions[i], "labels": labels[i]})
        boxes, lab = target["boxes"], target["labels"]
        fg = lab > 0
        batch.append(image)
        rois.append(torch.cat([boxes, jitter_boxes(boxes[fg], g)]))
        y.append(torch.cat([lab, lab[fg]]))
    return batch_images(batch, stride)[0], rois, torch.cat(y)


@torch.no_grad()
def region_accuracy(model, images, regions, labels, batch=50):
    """Fraction of regions whose argmax class is their label."""
    model.eval()
    correct = 0
    for s in range(0, len(images), batch):
        x = batch_images([im.float() / 255 for im in images[s:s + batch]], model.features.stride)[0]
        pred = model(x, regions[s:s + batch]).argmax(1)
        correct += int((pred == torch.cat(labels[s:s + batch])).sum())
    return correct / sum(len(lab) for lab in labels)


def pretrain(out, train_images=3000, val_images=300, epochs=8, batch_size=16,
             lr=0.1, seed=PRETRAIN_SEED, stride=16, progress=True):
    """Train the region classifier; save features + fc (BN folded, float16) to `out`.

    `stride` 16 pre-trains the paper's network, 8 the dilated one (conv5 then learns on the
    finer map the stride-8 detector gives it; the shipped files are `PRETRAINED_TINY_BY_STRIDE`).
    `out=None` saves nothing. Returns (the model with BN folded into its convs, metrics).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    images, regions, labels = make_regions(train_images, seed)
    val = make_regions(val_images, seed + 1)
    model = RegionClassifier(int(max(lab.max() for lab in labels)) + 1, stride=stride)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    per_epoch = train_images // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch)
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(total=epochs * per_epoch, desc="pre-training", disable=not progress, leave=False)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(train_images, generator=g).tolist()
        for s in range(per_epoch):
            x, rois, y = _training_batch(images, regions, labels,
                                         order[s * batch_size:(s + 1) * batch_size], g,
                                         model.features.stride)
            loss = nn.functional.cross_entropy(model(x, rois), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.features = fold_batch_norm(model.features.eval())
    metrics = {"val_accuracy": round(region_accuracy(model, *val), 4),
               "train_images": train_images, "val_images": val_images,
               "train_regions": sum(len(lab) for lab in labels),
               "val_regions": sum(len(lab) for lab in val[2]), "epochs": epochs,
               "seed": seed, "seconds": round(time.perf_counter() - start, 1),
               "stride": stride, "command": _command(out, seed, stride, epochs)}
    if out is not None:
        _save(model, out, metrics)
    return model, metrics


def _command(out, seed, stride, epochs):
    """The command line that reproduces a run (flags at their defaults left out)."""
    flags = (f"--stride {stride} " if stride != 16 else "") + (f"--epochs {epochs} " if epochs != 8 else "")
    return f"python -m frcnn_edu pretrain {flags}--out {out} --seed {seed}"


def _save(model, out, metrics):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    half = lambda sd: {k: v.half() for k, v in sd.items()}  # noqa: E731  (4.5 MB instead of 9)
    torch.save({"features": half(model.features.state_dict()), "fc": half(model.fc.state_dict()),
                "metrics": metrics}, out)
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
