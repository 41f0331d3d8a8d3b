"""The three detectors and their parts.

    backbones    TinyVGG (ours, stride 16, or 8 with a dilated conv5), VGG-16 and ResNet from torchvision
    rcnn         R-CNN: warped crops, CNN features, per-class SVMs and box regressors
    fast_rcnn    RoIHead (RoI pooling + fc6/fc7 + two siblings) and FastRCNN
    rpn          RPNHead and RegionProposalNetwork
    faster_rcnn  FasterRCNN = backbone + RPN + RoIHead
    mask_rcnn    MaskRCNN = FasterRCNN + a mask branch (MaskHead)

`shapes_*` build each detector at the settings this course uses for the shapes data.
"""
from .backbones import FCHead, TinyVGG, resnet_backbone, tiny_fc_head, tiny_vgg, vgg16_backbone
from .fast_rcnn import FastRCNN, RoIHead
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskHead, MaskRCNN
from .rcnn import RCNN, warp_regions
from .rpn import RegionProposalNetwork, RPNHead

# Objects in the shapes data are 12..96 px (sqrt of area) on 160 x 160 images; the paper's
# 128/256/512 anchors suit ~600 x 1000 images, so we scale the three sizes down (still 2x apart).
SHAPES_ANCHOR_SIZES = (20, 40, 80)
# On the stride-8 map anchor centres are 8 px apart, so a smaller first size pays off: a 12 px
# object overlaps a 16 px anchor with IoU 0.56 (0.36 for 20 px). Measured in benchmarks/RESULTS.md.
SHAPES_ANCHOR_SIZES_STRIDE8 = (16, 32, 64)


def shapes_faster_rcnn(pretrained=True, num_classes=6, stride=16, image_scale=None, **kwargs):
    """Faster R-CNN with the pre-trained TinyVGG and its fc6/fc7, anchors sized for the shapes.

    stride=16 is the paper's network; stride=8 dilates conv5 instead (see `TinyVGG`), the
    command line's default, which finds the smallest shapes far better for ~25% more time.
    Each stride loads the weights pre-trained at that stride (`PRETRAINED_TINY_BY_STRIDE`).
    The anchors are sized for the 160-pixel images; with `image_scale` (the shorter side the
    images are resized to, e.g. 240) they grow by the same factor.
    """
    sizes = SHAPES_ANCHOR_SIZES if stride == 16 else SHAPES_ANCHOR_SIZES_STRIDE8
    factor = image_scale / 160 if isinstance(image_scale, int) else 1.0  # FasterRCNN checks it
    kwargs.setdefault("anchor_sizes", tuple(round(a * factor) for a in sizes))
    return FasterRCNN(tiny_vgg(pretrained, stride=stride), num_classes,
                      fc=tiny_fc_head(pretrained, stride=stride), image_scale=image_scale, **kwargs)


#: The mask head on the shapes: 4 convs of 64 channels, the paper's depth (4) at a quarter of its
#: width (256; ~16x fewer multiply-adds). Issue 16 (benchmarks/RESULTS.md, 2026-12-06): the
#: earlier 2 convs of 32 limited the masks, not the pipeline (ground-truth masks resampled to
#: 28 x 28 and pasted back score mask AP@0.5 1.0): given the exact boxes, fresh heads trained
#: 1,500 steps on a trained model's frozen features reached mask AP@0.5 0.772 (2 x 32) and
#: 0.836 (4 x 64), the errors being occluded and outlined objects, which need the wider
#: context of four 3x3 convs. The price: a training step of about 0.14 s on 2 quiet cores
#: against 0.10 without masks; 10 quiet minutes buy about 4,000 steps and mask AP@0.5 0.86 / 0.85
#: (seeds 0 / 1; issue 16's 0.85 met), a busy machine's 2,185 steps 0.803.
SHAPES_MASK_CHANNELS = 64
SHAPES_MASK_CONVS = 4


def shapes_mask_rcnn(pretrained=True, num_classes=6, stride=16, image_scale=None,
                     mask_channels=SHAPES_MASK_CHANNELS, mask_convs=SHAPES_MASK_CONVS, **kwargs):
    """Mask R-CNN: `shapes_faster_rcnn`'s detector (same arguments) with a mask branch of
    `mask_convs` convs of `mask_channels` channels (see `MaskRCNN` for mask_pooler, mask_loss
    and the others)."""
    sizes = SHAPES_ANCHOR_SIZES if stride == 16 else SHAPES_ANCHOR_SIZES_STRIDE8
    factor = image_scale / 160 if isinstance(image_scale, int) else 1.0
    kwargs.setdefault("anchor_sizes", tuple(round(a * factor) for a in sizes))
    return MaskRCNN(tiny_vgg(pretrained, stride=stride), num_classes,
                    fc=tiny_fc_head(pretrained, stride=stride), image_scale=image_scale,
                    mask_channels=mask_channels, mask_convs=mask_convs, **kwargs)


def shapes_fast_rcnn(pretrained=True, num_classes=6, stride=16, **kwargs):
    """Fast R-CNN (external proposals) with the pre-trained TinyVGG and its fc6/fc7."""
    return FastRCNN(tiny_vgg(pretrained, stride=stride), num_classes,
                    fc=tiny_fc_head(pretrained, stride=stride), **kwargs)


def shapes_rcnn(pretrained=True, num_classes=6, **kwargs):
    """R-CNN on the pre-trained TinyVGG's fc7 features."""
    return RCNN(tiny_vgg(pretrained), tiny_fc_head(pretrained), num_classes, **kwargs)


__all__ = ["TinyVGG", "FCHead", "tiny_vgg", "tiny_fc_head", "vgg16_backbone", "resnet_backbone",
           "RCNN", "warp_regions", "RoIHead", "FastRCNN", "RPNHead", "RegionProposalNetwork",
           "FasterRCNN", "MaskRCNN", "MaskHead", "shapes_faster_rcnn", "shapes_mask_rcnn", "shapes_fast_rcnn", "shapes_rcnn",
           "SHAPES_ANCHOR_SIZES", "SHAPES_ANCHOR_SIZES_STRIDE8"]

# after shapes_faster_rcnn, which `build` wraps for TinyVGG
from .build import BACKBONES, WeightsError, build_faster_rcnn  # noqa: E402

__all__ += ["BACKBONES", "WeightsError", "build_faster_rcnn"]
