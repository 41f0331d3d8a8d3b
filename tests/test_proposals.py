"""Tests for frcnn_edu.proposals: selective search (OpenCV) and the RPN proposal layer."""
import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.rpn import RegionProposalNetwork

from frcnn_edu.boxes import box_iou
from frcnn_edu.proposals import RPN_TEST, RPN_TRAIN, generate_proposals, selective_search


# --- generate_proposals -------------------------------------------------------------------------
def random_anchors(generator, a, height, width, min_side=16.0):
    """Anchors inside an image of (height, width), sides in [min_side, ~half the image]."""
    wh = torch.rand(a, 2, generator=generator) * torch.tensor([width / 2, height / 2]) + min_side
    xy = torch.rand(a, 2, generator=generator) * (torch.tensor([width, height]) - wh)
    return torch.cat([xy, xy + wh], 1)


def torchvision_proposals(anchors, objectness, deltas, image_sizes, pre, post, thresh):
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, dict(training=pre, testing=pre),
                                dict(training=post, testing=post), thresh, score_thresh=0.0).eval()
    n, a = objectness.shape
    decoded = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas.reshape(-1, 4), anchors.repeat(n, 1))
    return rpn.filter_proposals(decoded.reshape(n, a, 4), objectness.reshape(-1, 1), image_sizes, [a])


@pytest.mark.parametrize("pre, post", [(6000, 300), (200, 50), (400, 2000)])
def test_matches_torchvision_filter_proposals(device, generator, pre, post):
    sizes = [(200, 300), (150, 180)]
    anchors = random_anchors(generator, 500, 150, 180).to(device)
    objectness = torch.randn(2, 500, generator=generator).to(device)
    deltas = (torch.randn(2, 500, 4, generator=generator) * 0.1).to(device)
    ours = generate_proposals(anchors, objectness, deltas, sizes, pre, post, 0.7)
    theirs = torchvision_proposals(anchors, objectness, deltas, sizes, pre, post, 0.7)
    for b, s, tb, ts in zip(*ours, *theirs):
        assert 0 < len(b) <= post
        torch.testing.assert_close(b, tb)
        torch.testing.assert_close(s, ts)


def test_hand_case_nms_and_sigmoid_scores(device):
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [20.0, 20.0, 30.0, 30.0]],
                           device=device)
    logits = torch.tensor([[1.0, 2.0, 0.0]], device=device)
    boxes, scores = generate_proposals(anchors, logits, torch.zeros(1, 3, 4, device=device), [(40, 40)])
    torch.testing.assert_close(boxes[0], anchors[[1, 2]])          # box 0 suppressed (IoU 0.9)
    torch.testing.assert_close(scores[0], torch.sigmoid(logits[0, [1, 2]]))
    # post_nms_top_n and a loose NMS threshold
    boxes, _ = generate_proposals(anchors, logits, torch.zeros(1, 3, 4, device=device), [(40, 40)],
                                  post_nms_top_n=2, nms_thresh=0.95)
    torch.testing.assert_close(boxes[0], anchors[[1, 0]])


def test_clipping_and_two_image_sizes(device, generator):
    anchors = random_anchors(generator, 300, 400, 400, min_side=30).to(device)
    objectness = torch.randn(2, 300, generator=generator, device="cpu").to(device)
    deltas = (torch.randn(2, 300, 4, generator=generator) * 0.2).to(device)
    sizes = [(120, 300), (400, 90)]
    boxes, scores = generate_proposals(anchors, objectness, deltas, sizes, **RPN_TRAIN)
    for i, (h, w) in enumerate(sizes):
        b = boxes[i]
        assert len(b) and b.device.type == device.type and scores[i].dtype == torch.float32
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
        assert (scores[i][1:] <= scores[i][:-1]).all()
        single = generate_proposals(anchors, objectness[i:i + 1], deltas[i:i + 1], [sizes[i]], **RPN_TRAIN)
        torch.testing.assert_close(b, single[0][0])
    # a list of per-image anchors gives the same result
    listed = generate_proposals([anchors, anchors], objectness, deltas, sizes, **RPN_TRAIN)
    for b, lb in zip(boxes, listed[0]):
        torch.testing.assert_close(b, lb)


def test_min_size_and_boxes_outside_image(device):
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0], [60.0, 60.0, 80.0, 80.0]],
                           device=device)
    zeros, logits = torch.zeros(1, 3, 4, device=device), torch.zeros(1, 3, device=device)
    boxes, _ = generate_proposals(anchors, logits, zeros, [(50, 50)], min_size=16.0)
    torch.testing.assert_close(boxes[0], anchors[1:2])   # 10 px box too small, third box outside
    boxes, _ = generate_proposals(anchors, logits, zeros, [(50, 50)])
    assert len(boxes[0]) == 2                            # zero-area (outside) box always dropped


def test_all_boxes_tiny_gives_empty_result(device):
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 4, device=device)
    boxes, scores = generate_proposals(anchors, torch.randn(2, 4, device=device),
                                       torch.zeros(2, 4, 4, device=device), [(10, 10)] * 2, min_size=1.0)
    for b, s in zip(boxes, scores):
        assert b.shape == (0, 4) and s.shape == (0,) and b.device.type == device.type


def test_no_anchors_and_fewer_anchors_than_top_n(device, generator):
    boxes, scores = generate_proposals(torch.zeros(0, 4, device=device), torch.zeros(1, 0, device=device),
                                       torch.zeros(1, 0, 4, device=device), [(10, 10)])
    assert boxes[0].shape == (0, 4) and scores[0].shape == (0,)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]], device=device)
    boxes, scores = generate_proposals(anchors, torch.tensor([[0.0, 1.0]], device=device),
                                       torch.zeros(1, 2, 4, device=device), [(100, 100)], **RPN_TEST)
    torch.testing.assert_close(boxes[0], anchors.flip(0))


def test_outputs_are_detached():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    logits = torch.zeros(1, 1, requires_grad=True)
    deltas = torch.zeros(1, 1, 4, requires_grad=True)
    boxes, scores = generate_proposals(anchors, logits, deltas, [(20, 20)])
    assert not boxes[0].requires_grad and not scores[0].requires_grad


def test_paper_settings():
    assert RPN_TRAIN["post_nms_top_n"] == 2000 and RPN_TEST["post_nms_top_n"] == 300
    assert RPN_TRAIN["nms_thresh"] == RPN_TEST["nms_thresh"] == 0.7


def test_bad_inputs():
    anchors = torch.tensor([[0.0, 0.0, 5.0, 5.0]] * 3)
    logits, deltas = torch.zeros(1, 3), torch.zeros(1, 3, 4)
    bad = deltas.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="deltas contains NaN"):
        generate_proposals(anchors, logits, bad, [(10, 10)])
    with pytest.raises(ValueError, match="objectness contains NaN"):
        generate_proposals(anchors, logits + float("nan"), deltas, [(10, 10)])
    with pytest.raises(ValueError, match=r"deltas must have shape \[N, A, 4\]"):
        generate_proposals(anchors, logits, deltas[0], [(10, 10)])
    with pytest.raises(ValueError, match=r"objectness must be float logits of shape \[N, A\]"):
        generate_proposals(anchors, logits[0], deltas, [(10, 10)])
    with pytest.raises(ValueError, match=r"anchors must have shape \[A, 4\]"):
        generate_proposals(anchors[:2], logits, deltas, [(10, 10)])
    with pytest.raises(ValueError, match="one image size per image"):
        generate_proposals(anchors, logits, deltas, [(10, 10), (5, 5)])
    with pytest.raises(ValueError, match="height, width"):
        generate_proposals(anchors, logits, deltas, [(10, 0)])
    with pytest.raises(ValueError, match="post_nms_top_n"):
        generate_proposals(anchors, logits, deltas, [(10, 10)], post_nms_top_n=0)
    with pytest.raises(ValueError, match="nms_thresh"):
        generate_proposals(anchors, logits, deltas, [(10, 10)], nms_thresh=1.5)


# --- selective search ---------------------------------------------------------------------------
RED = [30.0, 20.0, 100.0, 70.0]        # x1, y1, x2, y2
BLUE = [60.0, 90.0, 140.0, 150.0]


@pytest.fixture(scope="module")
def two_rectangles():
    """160x160 RGB: a red and a blue rectangle on a plain grey background."""
    image = np.full((160, 160, 3), 200, np.uint8)
    image[20:70, 30:100] = (220, 30, 30)
    image[90:150, 60:140] = (30, 30, 220)
    return image


@pytest.fixture(scope="module")
def ss_boxes(two_rectangles):
    return selective_search(two_rectangles)


def test_selective_search_finds_both_rectangles(ss_boxes):
    assert ss_boxes.dtype == torch.float32 and ss_boxes.dim() == 2 and ss_boxes.shape[1] == 4
    best = box_iou(torch.tensor([RED, BLUE]), ss_boxes).max(1).values
    assert (best > 0.7).all(), best


def test_selective_search_boxes_valid_unique(ss_boxes):
    assert len(ss_boxes) == len(torch.unique(ss_boxes, dim=0))
    w, h = ss_boxes[:, 2] - ss_boxes[:, 0], ss_boxes[:, 3] - ss_boxes[:, 1]
    assert (w >= 20).all() and (h >= 20).all()                       # default min_size
    assert (ss_boxes >= 0).all() and (ss_boxes <= 160).all()


def test_selective_search_deterministic_and_tensor_input(two_rectangles, ss_boxes):
    torch.testing.assert_close(selective_search(two_rectangles), ss_boxes)
    as_tensor = torch.from_numpy(two_rectangles).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(selective_search(as_tensor), ss_boxes)


def test_selective_search_max_proposals_and_min_size(two_rectangles, ss_boxes):
    assert len(ss_boxes) > 3
    torch.testing.assert_close(selective_search(two_rectangles, max_proposals=3), ss_boxes[:3])
    assert selective_search(two_rectangles, max_proposals=0).shape == (0, 4)
    small = selective_search(two_rectangles, mode="single", min_size=60, max_proposals=None)
    assert ((small[:, 2] - small[:, 0] >= 60) & (small[:, 3] - small[:, 1] >= 60)).all()


def test_selective_search_bad_input(two_rectangles):
    with pytest.raises(TypeError, match="uint8"):
        selective_search(two_rectangles.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        selective_search(two_rectangles[:, :, 0])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        selective_search(torch.rand(16, 16, 3))
    with pytest.raises(TypeError, match="float"):
        selective_search(torch.zeros(3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        selective_search(torch.full((3, 16, 16), 2.0))
    with pytest.raises(ValueError, match="mode"):
        selective_search(two_rectangles, mode="slow")
    with pytest.raises(ValueError, match="max_proposals"):
        selective_search(two_rectangles, max_proposals=-1)
    with pytest.raises(TypeError, match="numpy"):
        selective_search([[0, 0, 0]])
