"""Our Faster R-CNN vs torchvision's, trained on the same shapes images for the same steps.

Both get the same pre-trained TinyVGG backbone and fc6/fc7, the same image size (160 x 160, no
resizing), the same anchors (sizes 20/40/80 x ratios 0.5/1/2), 256 RPN anchors per image, the
same data order with horizontal flips, SGD settings and step budget. Three runs:

  ours (paper)      64 RoIs per image, RoI max pooling, 2000/300 proposals (train/test)
  torchvision       its defaults: 512 RoIs per image through RoI Align, 2000/1000 proposals
  ours (tv settings) ours configured like torchvision (512 RoIs, RoI Align, 2000/1000,
                    detection NMS 0.5, smooth-L1 beta 1/9, sampled-count normalisation)

It prints training images/s, inference images/s and mAP@0.5 on the test split, with ratios.

    python benchmarks/vs_torchvision.py [--steps 600] [--device cpu] [--threads 2]
"""
import argparse
import platform
import time

import torch
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from frcnn_edu.data import ShapesDataset
from frcnn_edu.inference import evaluate
from frcnn_edu.models import SHAPES_ANCHOR_SIZES, shapes_faster_rcnn, tiny_fc_head, tiny_vgg
from frcnn_edu.data.batching import IMAGE_MEAN, IMAGE_STD
from frcnn_edu.training import train

RATIOS = (0.5, 1.0, 2.0)


class _Features(torch.nn.Module):
    """torchvision's detector wants an OrderedDict of feature maps; TinyVGG returns a tensor."""

    def __init__(self, body):
        super().__init__()
        self.body, self.out_channels = body, body.out_channels

    def forward(self, x):
        return {"0": self.body(x)}


def torchvision_model(size):
    backbone = _Features(tiny_vgg(pretrained=True))
    fc = tiny_fc_head(pretrained=True)
    head = TwoMLPHead(backbone.out_channels * 49, fc.out_features)
    head.fc6.load_state_dict(fc[1].state_dict())
    head.fc7.load_state_dict(fc[3].state_dict())
    return TVFasterRCNN(
        backbone, num_classes=None, min_size=size, max_size=size, image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
        rpn_anchor_generator=AnchorGenerator((SHAPES_ANCHOR_SIZES,), (RATIOS,)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_head=head,
        box_predictor=FastRCNNPredictor(fc.out_features, ShapesDataset.num_classes),
        rpn_batch_size_per_image=256)


def ours_like_torchvision():
    return shapes_faster_rcnn(
        pretrained=True, rois_per_image=512, pooler="roi_align", rpn_pre_nms_top_n=(2000, 1000),
        rpn_post_nms_top_n=(2000, 1000), box_nms_thresh=0.5, rpn_loss_normalize="sampled")


def run(name, model, train_data, test_data, steps, device, lr):
    torch.manual_seed(0)
    t0 = time.perf_counter()
    train(model, train_data, steps=steps, lr=lr, device=device, progress=False)
    seconds = time.perf_counter() - t0
    metrics = evaluate(model, test_data, device=device)
    row = {"name": name, "train_ips": 2 * steps / seconds, "infer_ips": metrics["images_per_second"],
           "mAP": metrics["mAP"]}
    print(f"{name:<22} {row['train_ips']:>10.2f} {row['infer_ips']:>10.2f} {row['mAP']:>8.3f}", flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600, help="training steps of 2 images each")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--test-images", type=int, default=200)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}, {args.steps} steps x 2 images")
    train_data = ShapesDataset("train")
    test_data = ShapesDataset("test", num_images=args.test_images)
    print(f"{'model':<22} {'train im/s':>10} {'infer im/s':>10} {'mAP@0.5':>8}")
    ours = run("ours (paper)", shapes_faster_rcnn(pretrained=True), train_data, test_data,
               args.steps, args.device, args.lr)
    tv = run("torchvision (default)", torchvision_model(train_data.image_size[0]), train_data,
             test_data, args.steps, args.device, args.lr)
    same = run("ours (tv settings)", ours_like_torchvision(), train_data, test_data, args.steps,
               args.device, args.lr)
    print(f"ratio ours(paper)/torchvision: train {ours['train_ips'] / tv['train_ips']:.2f}x, "
          f"inference {ours['infer_ips'] / tv['infer_ips']:.2f}x, mAP {ours['mAP'] - tv['mAP']:+.3f}")
    print(f"ratio ours(tv settings)/torchvision: train {same['train_ips'] / tv['train_ips']:.2f}x, "
          f"inference {same['infer_ips'] / tv['infer_ips']:.2f}x, mAP {same['mAP'] - tv['mAP']:+.3f}")


if __name__ == "__main__":
    main()
