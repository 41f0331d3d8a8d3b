"""Which features should the mask head read? Issue 16's probe (benchmarks/RESULTS.md, "Finer
features for the mask head, probed").

Fresh 4 x 64 mask heads trained alone (`training.mask_branch.train_mask_branch`: Adam, 2 images
a step, 4 jittered copies of each ground-truth box as the positive RoIs) on the frozen features
of a trained Mask R-CNN (a `train --masks` folder, in its resized frame), and scored on the exact
ground-truth boxes of held-out images (`evaluate_mask_branch`: COCO mask AP, so the masks alone
count). The head reads conv5 (stride 8, what `MaskHead` reads), conv3 before pool3 (stride 4),
or both RoIAligned to 14 x 14 and concatenated (a hypercolumn; FPN pools small RoIs from its
stride-4 level P2 instead).

    PYTHONPATH=$PWD python benchmarks/mask_head_probe.py RUN_FOLDER [--steps 1500]

Prints one JSON line per input. Shape key: as `frcnn_edu.models.mask_rcnn`; f8 [1, 128, H/8,
W/8] and f4 [1, 64, H/4, W/4] in the model's resized frame (H x W).
"""
import argparse
import json
import os
import time

import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models.mask_rcnn import MaskHead
from frcnn_edu.models.recipes import load_trained
from frcnn_edu.roi_ops import roi_align
from frcnn_edu.training.mask_branch import evaluate_mask_branch, train_mask_branch

CONV3 = 9   # TinyVGG's layer index of conv3's last ReLU, before pool3: stride 4, 64 channels
LEVELS = {"conv5 (stride 8)": ("f8",), "conv3 (stride 4)": ("f4",), "both": ("f8", "f4")}


class LevelsMaskHead(MaskHead):
    """`MaskHead` that RoIAligns from the named levels of (f8, f4) and concatenates them. RoIs
    are in the original image's pixels; `scale` (the model's resize factor) maps them."""

    def __init__(self, levels, scale, num_classes):
        channels = {"f8": 128, "f4": 64}
        super().__init__(sum(channels[k] for k in levels), num_classes, 8, 14, 64, 4)
        self.levels, self.scale = levels, scale

    def pool(self, features, rois):
        maps = dict(zip(("f8", "f4"), features))
        stride = {"f8": 8, "f4": 4}
        return torch.cat([roi_align(maps[k], rois, self.pool_size, self.scale / stride[k],
                                    sampling_ratio=2, aligned=True) for k in self.levels], 1)


@torch.no_grad()
def frozen_levels(model, dataset):
    """[((f8, f4), target)] of the trained model's backbone on each image (its resize included)."""
    fine = {}
    hook = model.backbone[CONV3].register_forward_hook(lambda m, i, o: fine.update(x=o.clone()))
    items = [((model.shared_features([image])[0], fine["x"]), target) for image, target in dataset]
    hook.remove()
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a `python -m frcnn_edu train --masks` folder")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--train-images", type=int, default=300)
    ap.add_argument("--test-images", type=int, default=200)
    args = ap.parse_args()
    model = load_trained(args.run)
    train_set = ShapesDataset("train", num_images=args.train_images, masks=True)
    factors = model.resize([train_set[0][0]])[1][0]   # the shapes are all one size: one factor
    scale = float(factors[0]) if torch.is_tensor(factors) else float(factors)
    train = frozen_levels(model, train_set)
    test = frozen_levels(model, ShapesDataset("test", num_images=args.test_images, masks=True))
    for name, levels in LEVELS.items():
        torch.manual_seed(0)                                  # the same start for each input
        head = LevelsMaskHead(levels, scale, model.num_classes)
        history, seconds = train_mask_branch(head, train, args.steps, lr=5e-4, seed=0)
        m = evaluate_mask_branch(head, test, model.num_classes)
        print(json.dumps({"input": name, "steps": args.steps,
                          "head_s_per_step": round(seconds / args.steps, 4),
                          "AP50": round(m["AP50"], 4), "AP75": round(m["AP75"], 4),
                          "AP": round(m["AP"], 4), "load": round(os.getloadavg()[0], 2),
                          "threads": torch.get_num_threads(),
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)


if __name__ == "__main__":
    main()
