"""Backbones: the shared convolutional layers of Fast and Faster R-CNN.

Fast R-CNN sec. 2 and Faster R-CNN sec. 3 take an ImageNet classifier (ZF, VGG-16), drop its last
max pool and its classifier, and keep the conv layers (the "conv5" feature map, stride 16) as
the shared features; its fc6/fc7 layers initialise the detector's head. We do the same at a size
that trains on a laptop CPU: `TinyVGG` is a VGG-style net (3x3 convs, 2x2 max pools, no batch
norm) whose "ImageNet pre-training" classifies the shapes of other images, each region at its
own size (`frcnn_edu.training.pretrain`). VGG-16 and ResNet from torchvision are offered for readers with a network.

Every backbone has two attributes the detectors read:
    out_channels  C, channels of the feature map
    stride        input pixels per feature-map cell (16 here, as in the papers; TinyVGG also 8)

Shape key:
    N  images in the batch        C  feature channels
    H, W  input height / width    H/16, W/16  feature map (floor, as max pooling does)
"""
from pathlib import Path

import torch
from torch import nn

# The ImageNet statistics every image is normalised with (defined with the batching rule).
from ..data.batching import IMAGE_MEAN, IMAGE_STD  # noqa: F401

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRETRAINED_TINY = ASSETS / "tiny_vgg_shapes.pt"
# One file per stride, as torchvision ships weights per architecture: the same state dict, but
# conv5 pre-trained on the map it will see (dilated over an unpooled conv4 for stride 8).
PRETRAINED_TINY_BY_STRIDE = {16: PRETRAINED_TINY, 8: ASSETS / "tiny_vgg_shapes_s8.pt"}


def _conv_block(cin, cout, convs, pool, batch_norm=False):
    layers = []
    for i in range(convs):
        layers.append(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return layers


class TinyVGG(nn.Sequential):
    """VGG-style conv layers, stride 16: four blocks that end in a 2x2 max pool, then "conv5".

    As in VGG-16, the pool after conv5 is removed: the RoI pooling layer takes its place.
    [N, 3, H, W] -> [N, C, H//16, W//16]   (stride=8: [N, C, H//8, W//8])

    `stride=8` is the "hole algorithm" (DeepLab; Long et al.'s "shift-and-stitch"): pool4 becomes
    the identity and conv5's 3x3 kernels are dilated by 2, so they still span the same part of
    the image as at stride 16 and the same weights fit, on a feature map twice as fine. It is our
    cheaper stand-in for the paper's rescaling of images to a 600-pixel shorter side: objects of
    12 px are under one stride-16 cell. The state dict is the same for both strides (though conv5
    does better with weights pre-trained on the finer map: `PRETRAINED_TINY_BY_STRIDE`).
    `batch_norm=True` puts BN after every conv (pre-training only; see `fold_batch_norm`).
    """

    def __init__(self, channels=(16, 32, 64, 128, 128), convs=(1, 1, 2, 2, 2), batch_norm=False,
                 stride=16):
        if len(channels) != 5 or len(convs) != 5:
            raise ValueError("channels and convs need 5 entries (conv1..conv5), "
                             f"got {len(channels)} and {len(convs)}")
        if stride not in (8, 16):
            raise ValueError(f"stride must be 16 (VGG's conv5) or 8 (dilated conv5), got {stride}")
        layers, cin = [], 3
        for i, (cout, n) in enumerate(zip(channels, convs)):
            block = _conv_block(cin, cout, n, pool=i < 4, batch_norm=batch_norm)
            if stride == 8 and i == 3:
                block[-1] = nn.Identity()                   # pool4 off: keeps the layer indices
            if stride == 8 and i == 4:
                for conv in block[::3 if batch_norm else 2]:
                    conv.dilation, conv.padding = (2, 2), (2, 2)
            layers += block
            cin = cout
        super().__init__(*layers)
        self.channels, self.convs = tuple(channels), tuple(convs)
        self.out_channels = channels[-1]
        self.stride = stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


def fold_batch_norm(net):
    """A copy of a `TinyVGG(batch_norm=True)` as a plain TinyVGG: each BN folded into its conv.

    In eval mode BN is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta,
    so conv-then-BN is one conv with weight W * s and bias (b - mean) * s + beta, s = gamma /
    sqrt(var + eps). Pre-training converges faster with BN; the detector keeps VGG's plain convs.
    """
    layers, out = list(net.children()), []
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d):
            conv = out[-1]
            s = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=conv.padding,
                               dilation=conv.dilation)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * s[:, None, None, None])
                folded.bias.copy_((conv.bias - layer.running_mean) * s + layer.bias)
            out[-1] = folded
        else:
            out.append(layer)
    plain = TinyVGG(net.channels, net.convs, stride=net.stride)
    plain.load_state_dict(nn.Sequential(*out).state_dict())
    return plain


class FCHead(nn.Sequential):
    """fc6 -> ReLU -> fc7 -> ReLU on a pooled [R, C, P, P] region (VGG's classifier, minus fc8).

    [R, C, P, P] -> [R, representation_size]
    """

    def __init__(self, in_channels, pool_size=7, representation_size=256, dropout=0.0):
        layers = [nn.Flatten(), nn.Linear(in_channels * pool_size * pool_size, representation_size),
                  nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(representation_size, representation_size), nn.ReLU(inplace=True)]
        super().__init__(*layers)
        self.out_features = representation_size
        self.pool_size = pool_size


def tiny_vgg(pretrained=False, path=None, stride=16):
    """The TinyVGG conv layers; `pretrained=True` loads our pre-trained "ImageNet" weights.

    Without `path`, the weights pre-trained at this `stride` (`PRETRAINED_TINY_BY_STRIDE`).
    """
    backbone = TinyVGG(stride=stride)
    if pretrained:
        backbone.load_state_dict(load_pretrained_tiny(path, stride)["features"])
    return backbone


def tiny_fc_head(pretrained=False, path=None, representation_size=256, stride=16):
    """fc6/fc7 for TinyVGG features (7x7 pooled); `pretrained=True` loads them from pre-training
    (the file of `path`, or of the backbone's `stride`: fc6 was trained on those conv5 maps)."""
    head = FCHead(TinyVGG().out_channels, 7, representation_size)
    if pretrained:
        head.load_state_dict(load_pretrained_tiny(path, stride)["fc"])
    return head


def load_pretrained_tiny(path=None, stride=16):
    """The pre-trained TinyVGG state dicts {"features": ..., "fc": ...} in float32, from `path`
    or the shipped file for `stride`; FileNotFoundError with the command that makes it."""
    path = Path(path) if path is not None else PRETRAINED_TINY_BY_STRIDE[stride]
    if not path.exists():
        raise FileNotFoundError(
            f"pre-trained TinyVGG weights not found at {path}; create them with "
            f"`python -m frcnn_edu pretrain --stride {stride} --out <file>` or pass pretrained=False")
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Stored in half precision to keep the repository small; the model trains in float32.
    return {part: {k: v.float() for k, v in state[part].items()} for part in ("features", "fc")}


def vgg16_backbone(weights=None):
    """VGG-16 conv1_1 .. conv5_3 (last max pool removed), stride 16, 512 channels.

    `weights` is passed to torchvision (e.g. "IMAGENET1K_V1"; downloading needs a network).
    """
    from torchvision.models import vgg16

    features = vgg16(weights=weights).features[:-1]
    features.out_channels, features.stride = 512, 16
    return features


def resnet_backbone(name="resnet18", weights=None):
    """ResNet conv1 .. layer3 (stride 16), as the Faster R-CNN paper's ResNet "C4" variant."""
    import torchvision.models as tvm

    if name not in ("resnet18", "resnet34", "resnet50"):
        raise ValueError(f"name must be resnet18, resnet34 or resnet50, got {name!r}")
    net = getattr(tvm, name)(weights=weights)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                         net.layer3)
    body.out_channels = 1024 if name == "resnet50" else 256
    body.stride = 16
    return body
