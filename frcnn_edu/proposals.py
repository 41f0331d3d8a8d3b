"""Region proposals: selective search (R-CNN sec. 2.1) and the RPN proposal layer (Faster R-CNN sec. 3.3).

R-CNN and Fast R-CNN take ~2000 class-agnostic boxes per image from selective search
(Uijlings et al., 2013) in its "fast" mode; Faster R-CNN replaces it by the RPN, whose scored
anchors become proposals through the *proposal layer*: decode the deltas (eq. 2), clip to the
image, drop tiny boxes, keep the best ``pre_nms_top_n``, non-maximum suppression at IoU 0.7,
keep the best ``post_nms_top_n`` (the paper: 2000 proposals in training, 300 at test; the
pre-NMS numbers 12000 / 6000 are py-faster-rcnn's).

Shape key:
    N  images in the batch
    A  anchors per image (all feature-map locations x k anchors)
    P  proposals of one image
    H, W  image height and width
"""
import ctypes
import ctypes.util

import numpy as np
import torch

from frcnn_edu.boxes import clip_boxes, decode_boxes, nms, remove_small_boxes

__all__ = ["RPN_TRAIN", "RPN_TEST", "selective_search", "selective_search_dataset",
           "generate_proposals"]

#: Proposal-layer settings for training (paper: 2000 proposals; py-faster-rcnn: 12000 before NMS).
RPN_TRAIN = dict(pre_nms_top_n=12000, post_nms_top_n=2000, nms_thresh=0.7)
#: Proposal-layer settings at test time (paper: 300 proposals; py-faster-rcnn: 6000 before NMS).
RPN_TEST = dict(pre_nms_top_n=6000, post_nms_top_n=300, nms_thresh=0.7)

_MODES = {"fast": "switchToSelectiveSearchFast", "quality": "switchToSelectiveSearchQuality",
          "single": "switchToSingleStrategy"}


# --- selective search ---------------------------------------------------------------------------
def _image_to_bgr(image):
    """uint8 HxWx3 RGB numpy or float [3, H, W] tensor in [0, 1] -> contiguous uint8 BGR numpy."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image as a numpy array must be uint8 (H, W, 3) RGB, got {image.dtype}; "
                            "convert with (image * 255).round().astype(np.uint8), or pass a float tensor")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image as a numpy array must have shape (H, W, 3) (RGB), got {image.shape}")
        rgb = image
    elif isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise TypeError(f"image as a tensor must be float [3, H, W] in [0, 1], got {image.dtype}; "
                            "divide a uint8 image by 255")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image as a tensor must have shape [3, H, W], got {list(image.shape)}")
        if image.numel() and not (image.min() >= 0 and image.max() <= 1):   # also catches NaN
            raise ValueError("image as a float tensor must hold values in [0, 1] (no NaN)")
        rgb = (image.detach() * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    else:
        raise TypeError(f"image must be a uint8 numpy array (H, W, 3) or a float tensor [3, H, W], "
                        f"got {type(image).__name__}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"image must not be empty, got height {rgb.shape[0]} and width {rgb.shape[1]}")
    return np.ascontiguousarray(rgb[:, :, ::-1])    # OpenCV's colour conversions expect BGR


def _seed_c_rand(seed=0):
    """Seed the C library's rand(), which OpenCV uses to rank the regions (see selective_search)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.srand(ctypes.c_uint(seed))
        return True
    except (OSError, AttributeError, TypeError):   # e.g. Windows: no libc to load
        return False


def _unique_rows_in_order(boxes):
    """Indices of the first occurrence of each distinct row, in their original order."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    _, inverse = torch.unique(boxes, dim=0, return_inverse=True)
    index = torch.arange(boxes.shape[0])
    first = torch.full((int(inverse.max()) + 1,), boxes.shape[0], dtype=torch.int64)
    first = first.scatter_reduce(0, inverse, index, reduce="amin")
    return first.sort().values


def selective_search(image, mode="fast", max_proposals=2000, min_size=20):
    """Class-agnostic region proposals by selective search (R-CNN sec. 2.1), via OpenCV contrib.

    Args:
        image: uint8 numpy array (H, W, 3) in RGB order, or float tensor [3, H, W] in [0, 1].
        mode: "fast" (what R-CNN used: HSV and Lab colour spaces, 2 merging strategies),
            "quality" (more colour spaces / strategies, slower, more boxes) or "single"
            (one segmentation, one strategy: quick for demos). OpenCV's default segmentation
            parameters are used (its k = 150, 300, 450; R-CNN's MATLAB code used k = 50, 100).
        max_proposals: keep at most this many (the first in OpenCV's ranking); None keeps all.
        min_size: drop boxes narrower or lower than this (pixels). R-CNN's default 20 was meant
            for images resized to 500 pixels wide; scale it for other sizes (e.g. 20 * W / 500).

    Returns:
        float32 tensor [P, 4] of (x1, y1, x2, y2) boxes on the CPU (OpenCV's (x, y, w, h)
        converted), duplicates removed, in OpenCV's order.

    OpenCV ranks regions by ``rand() * hierarchy level`` (C ``rand()``), so the *set* of boxes is
    always the same but their order, and thus which boxes ``max_proposals`` keeps, would change from
    call to call. This function seeds ``rand()`` with 0 first, so the result is deterministic
    (checked with 1 and 2 OpenCV threads; the thread count does not matter). Where the C library
    cannot be reached (Windows) the order may vary between calls.
    """
    if mode not in _MODES:
        raise ValueError(f'mode must be one of {sorted(_MODES)}, got {mode!r}')
    if max_proposals is not None and (not isinstance(max_proposals, int) or max_proposals < 0):
        raise ValueError(f"max_proposals must be a non-negative int or None, got {max_proposals!r}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 pixels, got {min_size}")
    bgr = _image_to_bgr(image)
    try:
        import cv2
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    except (ImportError, AttributeError) as err:
        raise ImportError("selective_search needs OpenCV's contrib modules: "
                          "pip install opencv-contrib-python-headless") from err
    search.setBaseImage(bgr)
    getattr(search, _MODES[mode])()
    _seed_c_rand(0)
    rects = torch.from_numpy(np.asarray(search.process(), dtype=np.float32).reshape(-1, 4))
    boxes = torch.cat([rects[:, :2], rects[:, :2] + rects[:, 2:]], dim=1)   # xywh -> xyxy
    boxes = boxes[(rects[:, 2] >= min_size) & (rects[:, 3] >= min_size)]
    boxes = boxes[_unique_rows_in_order(boxes)]
    return boxes[:max_proposals].contiguous()


def selective_search_dataset(dataset, cache=None, progress=True, **kwargs):
    """`selective_search` on every image of `dataset`: a list of [P_i, 4] boxes.

    R-CNN and Fast R-CNN compute proposals once, offline. With `cache` (a file path) the boxes
    are saved there and read back on the next call with the same dataset length and settings.
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    key = {"n": len(dataset), **kwargs}
    if cache is not None and Path(cache).exists():
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == repr(key):
            return saved["boxes"]
    boxes = [selective_search(dataset[i][0], **kwargs)
             for i in tqdm(range(len(dataset)), desc="selective search", disable=not progress, leave=False)]
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": repr(key), "boxes": boxes}, cache)
    return boxes


# --- RPN proposal layer -------------------------------------------------------------------------
def _check_proposal_inputs(anchors, objectness, deltas, image_sizes):
    """Validate the proposal-layer inputs; return a list of N anchor tensors [A, 4]."""
    is_tensor = isinstance(objectness, torch.Tensor)
    if not (is_tensor and objectness.dim() == 2 and objectness.is_floating_point()):
        raise ValueError(f"objectness must be float logits of shape [N, A], got "
                         f"{getattr(objectness, 'shape', type(objectness).__name__)}")
    n, a = objectness.shape
    if not isinstance(deltas, torch.Tensor) or tuple(deltas.shape) != (n, a, 4):
        raise ValueError(f"deltas must have shape [N, A, 4] = [{n}, {a}, 4], got "
                         f"{list(getattr(deltas, 'shape', [])) or type(deltas).__name__}")
    anchors = list(anchors) if isinstance(anchors, (list, tuple)) else [anchors] * n
    if len(anchors) != n or len(image_sizes) != n:
        raise ValueError(f"need one anchor set (or a single shared one) and one image size per image: "
                         f"N={n}, got {len(anchors)} anchor sets and {len(image_sizes)} image sizes")
    for i, anc in enumerate(anchors):
        if not isinstance(anc, torch.Tensor) or tuple(anc.shape) != (a, 4):
            raise ValueError(f"anchors{f'[{i}]' if n > 1 else ''} must have shape [A, 4] = [{a}, 4], "
                             f"got {list(getattr(anc, 'shape', [])) or type(anc).__name__}")
    for name, t in (("objectness", objectness), ("deltas", deltas)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf (did the training diverge? "
                             "lower the learning rate)")
    for size in image_sizes:
        if len(size) != 2 or min(int(s) for s in size) < 1:
            raise ValueError(f"each image size must be (height, width) with positive ints, got {tuple(size)}")
    return anchors


def _check_settings(pre_nms_top_n, post_nms_top_n, nms_thresh, min_size, order="score"):
    for name, value in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if nms_thresh is not None and not 0 <= nms_thresh <= 1:
        raise ValueError(f"nms_thresh must be an IoU in [0, 1], or None for no NMS, got {nms_thresh}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 pixels, got {min_size}")
    if order not in ("score", "random"):
        raise ValueError(f'order must be "score" (rank by objectness, the paper) or "random" '
                         f'(Table 2\'s test without the cls layer), got {order!r}')


def _proposals_one_image(anchors, logits, deltas, image_size, pre_nms_top_n, post_nms_top_n,
                         nms_thresh, min_size, order="score", apply_deltas=True, generator=None):
    # Decoding and clipping are autograd ops, so the boxes carry the deltas' graph when the
    # deltas do (differentiable=True). Everything after that only *selects* boxes: the choices
    # are made on detached copies and applied as indices to the boxes, which keep their graph.
    boxes = clip_boxes(decode_boxes(anchors, deltas) if apply_deltas else anchors, image_size)
    fixed = boxes.detach()
    keep = remove_small_boxes(fixed, min_size)
    keep = keep[(fixed[keep, 2] > fixed[keep, 0]) & (fixed[keep, 3] > fixed[keep, 1])]
    boxes, fixed, logits = boxes[keep], fixed[keep], logits[keep]
    # The rank key: the objectness, or (order="random") a random priority per box, which
    # then decides both the top-n cuts and which box NMS keeps.
    if order == "random":
        key = torch.rand(len(boxes), generator=generator).to(logits)
    else:
        key = logits
    ranked = torch.sort(key, descending=True, stable=True).indices[:pre_nms_top_n]
    boxes, fixed, logits, key = boxes[ranked], fixed[ranked], logits[ranked], key[ranked]
    if nms_thresh is None:                                     # no NMS: the first post_nms_top_n
        keep = torch.arange(min(len(boxes), post_nms_top_n), device=boxes.device)
    else:
        keep = nms(fixed, key, nms_thresh, max_kept=post_nms_top_n)
    return boxes[keep], torch.sigmoid(logits[keep])


def generate_proposals(anchors, objectness, deltas, image_sizes, pre_nms_top_n=6000,
                       post_nms_top_n=300, nms_thresh=0.7, min_size=0.0, *, order="score",
                       apply_deltas=True, generator=None, differentiable=False):
    """The RPN proposal layer (Faster R-CNN sec. 3.3; py-faster-rcnn ``proposal_layer.py``).

    For each image: decode ``deltas`` against the anchors (eq. 2), clip to the image, drop boxes
    smaller than ``min_size`` (and always those of zero width or height, e.g. anchors that lay
    outside the image), keep the ``pre_nms_top_n`` highest-scoring, NMS at ``nms_thresh``, keep
    the first ``post_nms_top_n``. Defaults are the test settings (``RPN_TEST``); pass
    ``**RPN_TRAIN`` while training. py-faster-rcnn also drops boxes under 16 pixels (in the
    original image); torchvision uses min_size 1e-3.

    Args:
        anchors: [A, 4] shared by all images, or a list of N such tensors.
        objectness: [N, A] logits (the RPN's cls output, one score per anchor).
        deltas: [N, A, 4] (tx, ty, tw, th) per anchor.
        image_sizes: N pairs (height, width) of the (resized) input images.
        nms_thresh: IoU of the NMS, or None for no NMS (the first post_nms_top_n are kept).
        order, apply_deltas, generator: the test-time ablations of the paper's Table 2, each
            off by default. ``order="random"`` ranks the boxes by a random priority instead of
            their objectness (drawn with ``generator``, a CPU ``torch.Generator``; None uses
            torch's global RNG): the RPN "without its cls layer". ``apply_deltas=False``
            ignores the deltas, so the proposals are the clipped anchors themselves: the RPN
            "without its reg layer".
        differentiable: False (default): the boxes are detached. True: they stay functions of
            ``deltas`` (non-approximate joint training, Faster R-CNN sec. 3.2). Decoding (eq. 2)
            is smooth; clipping is a clamp, differentiable almost everywhere (a clipped
            coordinate gets gradient 0); removing small or empty boxes, the top-n cuts and NMS
            are index selections computed without the graph (no gradient flows through the
            choice, the kept boxes keep theirs). The scores are always detached.

    Returns:
        (boxes, scores): lists of N tensors [P_i, 4] and [P_i], P_i <= post_nms_top_n, sorted by
        decreasing score (``order="random"``: in the random priority's order; the scores are
        still the boxes' objectness). Scores are sigmoid *probabilities*, as torchvision's
        ``RegionProposalNetwork.filter_proposals`` returns (sorting and NMS use the logits:
        same order, no ties from saturation). Outputs are detached unless ``differentiable``.

    Differences from torchvision's ``filter_proposals``: it takes the top-n per feature level
    *before* clipping and removing small boxes (this follows py-faster-rcnn: clip, remove, then
    top-n), and it has a score threshold. With one level, no box removed and score_thresh 0 the
    two agree. Raises ValueError on NaN/inf in the inputs.
    """
    anchors = _check_proposal_inputs(anchors, objectness, deltas, image_sizes)
    _check_settings(pre_nms_top_n, post_nms_top_n, nms_thresh, min_size, order)
    objectness, deltas = objectness.detach(), deltas if differentiable else deltas.detach()
    all_boxes, all_scores = [], []
    for i, size in enumerate(image_sizes):
        boxes, scores = _proposals_one_image(anchors[i].detach().to(deltas), objectness[i], deltas[i],
                                             size, pre_nms_top_n, post_nms_top_n, nms_thresh, min_size,
                                             order, apply_deltas, generator)
        all_boxes.append(boxes)
        all_scores.append(scores)
    return all_boxes, all_scores
