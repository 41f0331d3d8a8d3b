"""Our stand-in for ImageNet pre-training: classify crops of shapes with TinyVGG + fc6/fc7.

All three papers start from a network pre-trained to classify ImageNet images (R-CNN sec. 2.3,
Fast R-CNN sec. 2.2, Faster R-CNN sec. 3.2), then fine-tune it for detection. We cannot ship
ImageNet, so `pretrain` trains the same kind of network on a classification task from images
the detector never sees (the shapes generator with a different seed): 112 x 112 crops of single
objects (K classes) and of background (class 0). Its conv layers become the detectors' backbone,
its fc6/fc7 their head. The weights ship in `frcnn_edu/assets/` (float16, ~1 MB); the command
that made them, and its accuracy, are in data/README.md.

Shape key:
    M  crops    S  crop side (112)    K  foreground classes
"""
import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .boxes import box_iou
from .data import ShapesDataset
from .models.backbones import PRETRAINED_TINY, TinyVGG, FCHead
from .models.batching import batch_images
from .models.rcnn import warp_regions

PRETRAIN_SEED = 2014  # a different seed from the detection splits: "ImageNet" is other images


def make_crops(num_images, seed=PRETRAIN_SEED, size=112, background_per_image=1):
    """Crops [M, 3, S, S] and labels [M] (0 = background) from `num_images` shapes images."""
    data = ShapesDataset("train", num_images=num_images, seed=seed)
    g = torch.Generator().manual_seed(seed)
    crops, labels = [], []
    for i in range(num_images):
        image, target = data[i]
        boxes = target["boxes"]
        bg = _background_boxes(image.shape[-2:], boxes, background_per_image, g)
        regions = torch.cat([boxes, bg])
        crops.append(warp_regions(image, regions, size))
        labels.append(torch.cat([target["labels"], torch.zeros(len(bg), dtype=torch.int64)]))
    return torch.cat(crops), torch.cat(labels)


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


class CropClassifier(nn.Module):
    """TinyVGG conv layers -> fc6/fc7 -> a (K + 1)-way classifier (fc8 in VGG's naming)."""

    def __init__(self, num_classes):
        super().__init__()
        self.features = TinyVGG()
        self.fc = FCHead(self.features.out_channels, 7)
        self.classifier = nn.Linear(self.fc.out_features, num_classes)

    def forward(self, crops):
        x, _ = batch_images(list(crops), self.features.stride)
        return self.classifier(self.fc(self.features(x)))


def _accuracy(model, crops, labels, batch=256):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(c).argmax(1) for c in crops.split(batch)])
    return (pred == labels).float().mean().item()


def pretrain(out=PRETRAINED_TINY, train_images=600, val_images=150, epochs=6, batch_size=64,
             lr=0.02, seed=PRETRAIN_SEED, progress=True):
    """Train the crop classifier; save features + fc (float16) to `out`; return the metrics."""
    torch.manual_seed(seed)
    train_x, train_y = make_crops(train_images, seed)
    val_x, val_y = make_crops(val_images, seed + 1)
    model = CropClassifier(int(train_y.max()) + 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * (len(train_x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="pre-training", disable=not progress, leave=False)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(len(train_x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = train_x[idx]
            flip = torch.rand(len(x)) < 0.5                       # horizontal flips
            x[flip] = x[flip].flip(-1)
            loss = nn.functional.cross_entropy(model(x), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    metrics = {"val_accuracy": round(_accuracy(model, val_x, val_y), 4),
               "train_crops": len(train_x), "val_crops": len(val_x), "epochs": epochs,
               "seed": seed, "seconds": round(time.perf_counter() - start, 1)}
    if out is not None:
        _save(model, out, metrics)
    return model, metrics


def _save(model, out, metrics):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    half = lambda sd: {k: v.half() for k, v in sd.items()}  # noqa: E731  (1 MB instead of 2)
    torch.save({"features": half(model.features.state_dict()), "fc": half(model.fc.state_dict()),
                "metrics": metrics}, out)
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
