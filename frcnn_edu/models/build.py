"""A Faster R-CNN on a named backbone with named weights (the command line's --backbone, --weights).

    tinyvgg    ours, stride 8 or 16; "imagenet" weights = our shapes pre-training (the shipped file)
    vgg16      torchvision's VGG-16 conv1_1 .. conv5_3, stride 16, and its fc6/fc7 (the paper's net)
    resnet18   torchvision's ResNet conv1 .. layer3 ("C4"), stride 16, batch norm frozen
    resnet50   the same, 1,024 channels

`weights` is "imagenet", "none" (train from scratch) or the PATH of a state dict. ImageNet weights
are read from the torch cache (``torch.hub.get_dir()/checkpoints``, where torchvision keeps them);
only when they are missing there is a download tried, and a failure (no network) raises
`WeightsError` at once, naming the URL, the file to put in the cache and ``--weights none``.
Nothing is downloaded for the default TinyVGG.

Freezing: Faster R-CNN fine-tunes VGG-16 from conv3_1 up (conv1 and conv2 stay as ImageNet left
them: they are generic, and freezing them saves memory and time); for ResNet torchvision's
detectors likewise freeze conv1 and conv2_x (layer1). `freeze` counts the first blocks kept fixed
(a block ends at a max pool for VGG; conv1, layer1, layer2, layer3 for ResNet). TinyVGG's default
is 0, the recipe the lessons measured. ResNet's batch norm is frozen always (`FrozenBatchNorm2d`):
statistics of two images per step are too noisy to update, as in torchvision's detectors.

Shape key: see `backbones` (C channels, stride 16).
"""
from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from . import shapes_faster_rcnn
from .backbones import FCHead, load_pretrained_tiny
from .faster_rcnn import FasterRCNN

__all__ = ["BACKBONES", "PAPER_FREEZE", "WeightsError", "build_faster_rcnn", "imagenet_state_dict",
           "cached_weights_path", "freeze_blocks"]

BACKBONES = ("tinyvgg", "vgg16", "resnet18", "resnet50")
#: first blocks left frozen by default: VGG-16 conv1-conv2 (the paper), ResNet conv1 + layer1
PAPER_FREEZE = {"tinyvgg": 0, "vgg16": 2, "resnet18": 2, "resnet50": 2}
#: the paper's anchors (sec. 3.1.1) for a 600-pixel shorter side; they scale with image_scale
PAPER_ANCHOR_SIZES = (128, 256, 512)
DOWNLOAD_TIMEOUT_S = 20


class WeightsError(ValueError):
    """Backbone weights that cannot be had: the message says how to get them."""


def _enum(name):
    from torchvision.models import ResNet18_Weights, ResNet50_Weights, VGG16_Weights
    return {"vgg16": VGG16_Weights.IMAGENET1K_V1, "resnet18": ResNet18_Weights.IMAGENET1K_V1,
            "resnet50": ResNet50_Weights.IMAGENET1K_V1}[name]


def cached_weights_path(name) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of `name`."""
    filename = os.path.basename(urlparse(_enum(name).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _download(url, path):
    """torch.hub's downloader with a socket timeout (no network: fail in seconds, not minutes)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    finally:
        socket.setdefaulttimeout(old)


def imagenet_state_dict(name) -> dict:
    """The ImageNet weights of torchvision's `name` (`_enum`), from the cache or downloaded."""
    weights, path = _enum(name), cached_weights_path(name)
    if not path.is_file():
        try:
            _download(weights.url, path)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise WeightsError(
                f"--weights imagenet: the ImageNet weights of {name} ({type(weights).__name__}."
                f"{weights.name}) are not in the torch cache ({path.parent}) and could not be "
                f"downloaded ({type(e).__name__}: {e}). On a machine with a network, download "
                f"{weights.url} and put it at {path} (TORCH_HOME moves the cache), or train from "
                "scratch with --weights none") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_file(path, what):
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"--weights {path}: file not found; pass a state dict file of {what}, "
                           "--weights imagenet or --weights none")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and format errors all mean "not a weights file"
        raise WeightsError(f"--weights {path}: not a torch weights file ({type(e).__name__}: "
                           f"{e}); pass a state dict of {what}") from None


def _load_into(net, state, source, what):
    """net.load_state_dict(state), with the wrong-keys error naming the file and what it needs."""
    if not isinstance(state, dict):
        raise WeightsError(f"--weights {source}: holds a {type(state).__name__}, not a state dict "
                           f"of {what}")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        missing = sorted(set(net.state_dict()) - set(state))[:3]
        unexpected = sorted(set(state) - set(net.state_dict()))[:3]
        shapes = "" if missing or unexpected else "; " + str(e).splitlines()[-1].strip()
        raise WeightsError(f"--weights {source}: not the weights of {what} (missing keys "
                           f"{missing}, unexpected {unexpected}{shapes}); pass that network's "
                           "state dict (as torchvision saves it), --weights imagenet or "
                           "--weights none") from None


def _classifier(name, weights):
    """torchvision's `name` with the requested weights (ResNet with frozen batch norm)."""
    import torchvision.models as tvm
    from torchvision.ops.misc import FrozenBatchNorm2d

    kwargs = {"norm_layer": FrozenBatchNorm2d} if name.startswith("resnet") else {}
    net = getattr(tvm, name)(weights=None, **kwargs)
    if weights == "imagenet":
        _load_into(net, imagenet_state_dict(name), f"imagenet ({cached_weights_path(name)})", name)
    elif weights != "none":
        what = f"torchvision's {name}"
        _load_into(net, _load_file(weights, what), weights, what)
    return net


def _vgg16_parts(weights):
    """conv1_1 .. conv5_3 (no last pool) and fc6/fc7 (25088 -> 4096 -> 4096, VGG's own)."""
    net = _classifier("vgg16", weights)
    features = net.features[:-1]
    features.out_channels, features.stride = 512, 16
    head = FCHead(512, 7, 4096)
    if weights != "none":  # fc6 takes exactly a 512 x 7 x 7 RoI: VGG's weights fit as they are
        head[1].load_state_dict(net.classifier[0].state_dict())
        head[3].load_state_dict(net.classifier[3].state_dict())
    return features, head


def _resnet_parts(name, weights):
    """conv1 .. layer3 (C4, stride 16) and a fresh fc6/fc7 (ResNet has no fc layers to reuse)."""
    net = _classifier(name, weights)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3)
    body.out_channels, body.stride = (1024 if name == "resnet50" else 256), 16
    body.conv_blocks = ((net.conv1, net.bn1), (net.layer1,), (net.layer2,), (net.layer3,))
    return body, FCHead(body.out_channels, 7, 256)


def _blocks(backbone):
    """The backbone's blocks, first to last: `conv_blocks` where given, else a Sequential cut
    after each max pool (VGG's conv1 .. conv5; TinyVGG's stride-8 pool4 is an Identity)."""
    if hasattr(backbone, "conv_blocks"):
        return [list(b) for b in backbone.conv_blocks]
    blocks, current = [], []
    for layer in backbone:
        current.append(layer)
        if isinstance(layer, (nn.MaxPool2d, nn.Identity)):
            blocks.append(current)
            current = []
    return blocks + [current] if current else blocks


def freeze_blocks(backbone, n):
    """Stop the gradient of the first `n` blocks' parameters (they keep their weights)."""
    blocks = _blocks(backbone)
    if not 0 <= n <= len(blocks):
        raise ValueError(f"freeze must be 0..{len(blocks)} (blocks of this backbone), got {n}")
    for block in blocks[:n]:
        for layer in block:
            for p in layer.parameters():
                p.requires_grad_(False)
    return backbone


def _tiny(weights, num_classes, stride, **kwargs):
    if weights in ("imagenet", "none"):  # "imagenet": our pre-training on the shapes
        return shapes_faster_rcnn(weights == "imagenet", num_classes, stride, **kwargs)
    model = shapes_faster_rcnn(False, num_classes, stride, **kwargs)
    _load_file(weights, "TinyVGG (written by `python -m frcnn_edu pretrain`)")  # exists, loads
    try:
        state = load_pretrained_tiny(weights, stride)
    except (KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"--weights {weights}: not a TinyVGG weights file ({type(e).__name__}: "
                           f"{e}); expected a dict with 'features' and 'fc', as `python -m "
                           "frcnn_edu pretrain` writes") from None
    _load_into(model.backbone, state["features"], weights, "TinyVGG's conv layers")
    _load_into(model.roi_heads.fc, state["fc"], weights, "TinyVGG's fc6/fc7")
    return model


def build_faster_rcnn(backbone="tinyvgg", weights="imagenet", freeze=None, num_classes=6,
                      stride=16, pooler="roi_pool", image_scale=None, **kwargs):
    """Faster R-CNN on `backbone` (see `BACKBONES`) initialised from `weights`; the first
    `freeze` blocks fixed (None: `PAPER_FREEZE`). TinyVGG is `shapes_faster_rcnn`; the
    torchvision backbones take stride 16 and the paper's anchors scaled to `image_scale`."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    common = dict(pooler=pooler, image_scale=image_scale, **kwargs)
    if backbone == "tinyvgg":
        model = _tiny(weights, num_classes, stride, **common)
    else:
        if stride != 16:
            raise ValueError(f"--stride {stride}: {backbone} is built at stride 16 (its conv4 / "
                             "layer3); only tinyvgg offers stride 8")
        body, head = (_vgg16_parts(weights) if backbone == "vgg16"
                      else _resnet_parts(backbone, weights))
        factor = (image_scale or 600) / 600
        common.setdefault("anchor_sizes", tuple(round(a * factor) for a in PAPER_ANCHOR_SIZES))
        model = FasterRCNN(body, num_classes, fc=head, representation_size=head.out_features,
                           **common)
    freeze_blocks(model.backbone, PAPER_FREEZE[backbone] if freeze is None else freeze)
    return model
