"""frcnn_edu.matching: the four anchor-labeling rules, balanced sampling, RoI labels."""
import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.matching import label_anchors, label_proposals, sample_labels, sample_proposals


def T(rows, device):
    return torch.tensor(rows, dtype=torch.float32, device=device)


# ---------------------------------------------------------------- label_anchors: hand cases

def test_rule_ii_low_iou_best_anchor_is_positive(device):
    gt = T([[0, 0, 10, 50]], device)  # area 500
    anchors = T([[0, 0, 10, 10],          # IoU 100 / 500 = 0.2: the box's best anchor
                 [0, 40, 10, 45],         # IoU 0.1
                 [200, 200, 210, 210]], device)  # IoU 0
    labels, matched = label_anchors(anchors, gt)
    assert labels.tolist() == [1, 0, 0]  # no IoU floor for rule (ii) (not 0.5, not 0.3)
    assert matched.tolist() == [0, 0, 0] and labels.dtype == matched.dtype == torch.int64


def test_rule_ii_ties_are_all_positive(device):
    gt = T([[0, 0, 20, 10]], device)
    anchors = T([[0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 5, 10]], device)  # IoU 0.5, 0.5, 0.25
    labels, _ = label_anchors(anchors, gt)
    assert labels.tolist() == [1, 1, 0]


def test_rule_ii_beats_negative_rule(device):
    """a0 has IoU 0.25 (< 0.3) with gt0 but is the best anchor of gt1 (IoU 0.14): positive.
    Its matched box is still its argmax gt0, as in torchvision (documented)."""
    gt = T([[0, 0, 10, 40], [5, 5, 15, 15]], device)
    anchors = T([[0, 0, 10, 10],   # IoU 0.25 with gt0, 25 / 175 = 0.143 with gt1
                 [0, 0, 10, 40],   # IoU 1 with gt0, 0.111 with gt1
                 [300, 0, 310, 10]], device)
    labels, matched = label_anchors(anchors, gt)
    assert labels.tolist() == [1, 1, 0]
    assert matched.tolist() == [0, 0, 0]


def test_matched_gt_prefers_the_box_that_made_the_anchor_positive(device):
    gt = T([[0, 0, 10, 20], [0, 0, 20, 10]], device)
    anchors = T([[0, 0, 10, 10],    # IoU 0.5 with both boxes; best anchor of gt1 only
                 [0, 0, 10, 20]], device)  # IoU 1 with gt0, 1/3 with gt1
    labels, matched = label_anchors(anchors, gt)
    assert labels.tolist() == [1, 1]
    assert matched.tolist() == [1, 0]  # plain argmax would say [0, 0]


def test_thresholds_are_inclusive_exclusive(device):
    gt = T([[0, 0, 10, 10]], device)
    anchors = T([[0, 0, 10, 10],     # IoU 1: best anchor
                 [0, 0, 10, 7],      # IoU 0.7: >= pos_iou -> positive
                 [0, 0, 10, 6.9],    # IoU 0.69 -> ignored
                 [0, 0, 10, 3],      # IoU 0.3: not < neg_iou -> ignored
                 [0, 0, 10, 2.9]], device)  # IoU 0.29 -> negative
    labels, _ = label_anchors(anchors, gt)
    assert labels.tolist() == [1, 1, -1, -1, 0]
    labels, _ = label_anchors(anchors, gt, pos_iou=0.5, neg_iou=0.1)
    assert labels.tolist() == [1, 1, 1, -1, -1]


def test_valid_mask(device):
    gt = T([[0, 0, 10, 10]], device)
    anchors = T([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 1]], device)  # IoU 1, 0.5, 0.1
    valid = torch.tensor([False, True, True], device=device)
    labels, matched = label_anchors(anchors, gt, valid=valid)
    # anchor 0 takes part in nothing; anchor 1 becomes the box's best valid anchor
    assert labels.tolist() == [-1, 1, 0]
    assert matched.tolist() == [-1, 0, 0]


def test_no_gt_boxes_and_no_valid_anchors(device):
    anchors = T([[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 40]], device)
    valid = torch.tensor([True, False, True], device=device)
    labels, matched = label_anchors(anchors, torch.zeros(0, 4, device=device), valid=valid)
    assert labels.tolist() == [0, -1, 0] and matched.tolist() == [-1, -1, -1]
    labels, matched = label_anchors(anchors, torch.zeros(0, 4, device=device))
    assert labels.tolist() == [0, 0, 0]
    none = torch.zeros(3, dtype=torch.bool, device=device)
    labels, matched = label_anchors(anchors, T([[0, 0, 10, 10]], device), valid=none)
    assert labels.tolist() == [-1, -1, -1] and matched.tolist() == [-1, -1, -1]
    labels, matched = label_anchors(torch.zeros(0, 4, device=device), T([[0, 0, 10, 10]], device))
    assert labels.shape == matched.shape == (0,) and labels.device.type == device.type


def test_label_anchors_errors():
    anchors = torch.tensor([[0.0, 0, 10, 10]])
    with pytest.raises(ValueError, match="gt_boxes: degenerate box at index 1"):
        label_anchors(anchors, torch.tensor([[0.0, 0, 5, 5], [3.0, 0, 3, 5]]))
    with pytest.raises(ValueError, match="gt_boxes must be finite"):
        label_anchors(anchors, torch.tensor([[0.0, 0, float("nan"), 5]]))
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \[N, 4\]"):
        label_anchors(anchors, torch.zeros(2, 5))
    with pytest.raises(TypeError, match="anchors must be a floating-point"):
        label_anchors(anchors.long(), torch.tensor([[0.0, 0, 5, 5]]))
    with pytest.raises(ValueError, match="valid must be a bool tensor of shape"):
        label_anchors(anchors, torch.tensor([[0.0, 0, 5, 5]]), valid=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="neg_iou"):
        label_anchors(anchors, torch.tensor([[0.0, 0, 5, 5]]), pos_iou=0.3, neg_iou=0.7)


# ---------------------------------------------------------------- label_anchors vs torchvision

def test_label_anchors_agrees_with_torchvision_matcher(device):
    """Matcher(0.7, 0.3, allow_low_quality_matches=True) gives the same positives (rules i, ii),
    negatives (< 0.3) and matched boxes, whenever every gt box overlaps some anchor. They differ
    (1) for a gt box that overlaps no anchor: its max IoU is 0, so torchvision's low-quality
    rule makes *every* anchor with IoU 0 to it a match; here rule (ii) needs IoU > 0;
    (2) torchvision has no valid mask: the paper ignores cross-boundary anchors, torchvision
    labels them all (we pass it the valid anchors only);
    (3) labels: torchvision returns -1 for negatives and -2 for "between thresholds".
    """
    generator = torch.Generator().manual_seed(0)
    anchors = grid_anchors(make_base_anchors((32, 64), (0.5, 1.0, 2.0)), (10, 12), 8)
    valid = inside_image(anchors, (80, 96))
    checked = 0
    for _ in range(60):
        G = int(torch.randint(1, 6, (1,), generator=generator))
        xy = torch.rand(G, 2, generator=generator) * torch.tensor([90.0, 70.0])
        gt = torch.cat([xy, xy + torch.rand(G, 2, generator=generator) * 60 + 4], dim=1)
        iou = torchvision.ops.box_iou(gt, anchors[valid])
        if (iou.max(dim=1).values == 0).any():
            continue  # difference (1)
        expected = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
        labels, matched = label_anchors(anchors.to(device), gt.to(device), valid=valid.to(device))
        labels, matched = labels.cpu()[valid], matched.cpu()[valid]
        assert torch.equal(labels == 1, expected >= 0)
        assert torch.equal(labels == 0, expected == Matcher.BELOW_LOW_THRESHOLD)
        assert torch.equal(labels == -1, expected == Matcher.BETWEEN_THRESHOLDS)
        assert torch.equal(matched[labels == 1], expected[labels == 1])
        checked += 1
    assert checked > 40


def test_torchvision_matcher_difference_for_a_box_without_overlap():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20.0, 0, 30, 10]])
    gt = torch.tensor([[100.0, 100, 110, 110]])  # overlaps no anchor
    labels, _ = label_anchors(anchors, gt)
    assert labels.tolist() == [0, 0]
    tv = Matcher(0.7, 0.3, allow_low_quality_matches=True)(torchvision.ops.box_iou(gt, anchors))
    assert tv.tolist() == [0, 0]  # torchvision: both anchors "match" the far-away box


# ---------------------------------------------------------------- sample_labels

def make_labels(num_pos, num_neg, num_ignore, device, seed=0):
    labels = torch.tensor([1] * num_pos + [0] * num_neg + [-1] * num_ignore, device=device)
    perm = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
    return labels[perm.to(device)]


@pytest.mark.parametrize("num_pos, num_neg, expected_pos, expected_neg", [
    (300, 500, 128, 128),  # enough of both: 128 + 128
    (10, 500, 10, 246),    # few positives: more negatives
    (10, 20, 10, 20),      # fewer than 256 in all
    (0, 0, 0, 0),
])
def test_sample_labels_counts(device, num_pos, num_neg, expected_pos, expected_neg):
    labels = make_labels(num_pos, num_neg, 200, device)
    out = sample_labels(labels, generator=torch.Generator().manual_seed(1))
    assert out.shape == labels.shape and out.dtype == labels.dtype and out.device.type == device.type
    assert int((out == 1).sum()) == expected_pos and int((out == 0).sum()) == expected_neg
    assert (labels[out == 1] == 1).all() and (labels[out == 0] == 0).all()
    pos_tv, neg_tv = BalancedPositiveNegativeSampler(256, 0.5)([labels.cpu()])
    assert (int(pos_tv[0].sum()), int(neg_tv[0].sum())) == (expected_pos, expected_neg)


def test_sample_labels_generator(device):
    labels = make_labels(300, 500, 200, device)
    first = sample_labels(labels, generator=torch.Generator().manual_seed(3))
    again = sample_labels(labels, generator=torch.Generator().manual_seed(3))
    other = sample_labels(labels, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    on_cpu = sample_labels(labels.cpu(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.cpu(), on_cpu)  # same sample whatever the device
    assert int((sample_labels(labels, 64, 0.25) == 1).sum()) == 16
    assert sample_labels(labels[:0]).shape == (0,)


def test_sample_labels_errors():
    with pytest.raises(ValueError, match="labels must be a 1-D integer tensor"):
        sample_labels(torch.zeros(5))
    with pytest.raises(ValueError, match="labels must hold -1"):
        sample_labels(torch.tensor([0, -2, 1]))
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_labels(torch.tensor([0, 1]), positive_fraction=1.5)


# ---------------------------------------------------------------- proposals (Fast R-CNN 2.3)

def test_label_proposals_hand_case(device):
    gt = T([[0, 0, 10, 10], [50, 50, 70, 70]], device)
    gt_labels = torch.tensor([3, 5], device=device)
    proposals = T([[0, 0, 10, 10],      # IoU 1 with gt0 -> class 3
                   [50, 50, 70, 60],    # IoU 0.5 with gt1 -> class 5 (>= 0.5)
                   [0, 0, 10, 4.9],     # IoU 0.49 -> background
                   [0, 0, 10, 1],       # IoU 0.1 -> background ([0.1, 0.5))
                   [0, 0, 10, 0.5],     # IoU 0.05 -> unused
                   [200, 200, 210, 210]], device)  # IoU 0 -> unused
    labels, matched = label_proposals(proposals, gt, gt_labels)
    assert labels.tolist() == [3, 5, 0, 0, -1, -1]
    assert matched.tolist() == [0, 1, 0, 0, 0, 0]
    labels, _ = label_proposals(proposals, gt, gt_labels, bg_iou=(0.0, 0.5))  # torchvision style
    assert labels.tolist() == [3, 5, 0, 0, 0, 0]


def test_label_proposals_matches_torchvision_roi_heads_rule(generator):
    """torchvision's detector: Matcher(0.5, 0.5), background = everything below 0.5."""
    xy = torch.rand(300, 2, generator=generator) * 100
    proposals = torch.cat([xy, xy + torch.rand(300, 2, generator=generator) * 40 + 1], dim=1)
    gt = torch.tensor([[10.0, 10, 50, 40], [60, 20, 90, 100], [30, 60, 70, 90]])
    gt_labels = torch.tensor([1, 2, 1])
    labels, matched = label_proposals(proposals, gt, gt_labels, bg_iou=(0.0, 0.5))
    tv = Matcher(0.5, 0.5, allow_low_quality_matches=False)(torchvision.ops.box_iou(gt, proposals))
    expected = torch.where(tv >= 0, gt_labels[tv.clamp(min=0)], torch.zeros_like(tv))
    assert torch.equal(labels, expected)
    assert torch.equal(matched[tv >= 0], tv[tv >= 0])


def test_label_proposals_edge_cases_and_errors(device):
    proposals = T([[0, 0, 10, 10], [5, 5, 5, 9]], device)  # an empty (x2 == x1) proposal is fine
    no_gt, no_labels = torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    labels, matched = label_proposals(proposals, no_gt, no_labels)
    assert labels.tolist() == [-1, -1] and matched.tolist() == [-1, -1]
    labels, _ = label_proposals(proposals, no_gt, no_labels, bg_iou=(0.0, 0.5))
    assert labels.tolist() == [0, 0]
    labels, matched = label_proposals(torch.zeros(0, 4, device=device), T([[0, 0, 1, 1]], device),
                                      torch.tensor([1], device=device))
    assert labels.shape == matched.shape == (0,)
    gt = torch.tensor([[0.0, 0, 10, 10]])
    with pytest.raises(ValueError, match="gt_labels must be foreground classes >= 1"):
        label_proposals(proposals.cpu(), gt, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"gt_labels must be an int64 tensor of shape \[1\]"):
        label_proposals(proposals.cpu(), gt, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="bg_iou"):
        label_proposals(proposals.cpu(), gt, torch.tensor([1]), bg_iou=(0.1, 0.6))
    with pytest.raises(ValueError, match="gt_boxes: degenerate"):
        label_proposals(proposals.cpu(), torch.tensor([[0.0, 0, 0, 10]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="proposals must be finite"):
        label_proposals(torch.tensor([[0.0, 0, float("nan"), 1]]), gt, torch.tensor([1]))


@pytest.mark.parametrize("num_fg, num_bg, expected_fg, expected_bg", [
    (100, 500, 32, 96), (5, 500, 5, 123), (5, 20, 5, 20), (0, 0, 0, 0)])
def test_sample_proposals(device, num_fg, num_bg, expected_fg, expected_bg):
    labels = make_labels(num_fg, num_bg, 50, device)
    labels[labels == 1] = torch.arange(1, num_fg + 1, device=device) % 4 + 1  # classes 1..4
    idx = sample_proposals(labels, generator=torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64 and idx.device.type == device.type
    assert idx.numel() == expected_fg + expected_bg and idx.unique().numel() == idx.numel()
    fg, bg = idx[:expected_fg], idx[expected_fg:]
    assert (labels[fg] >= 1).all() and (labels[bg] == 0).all()  # foreground first
    assert torch.equal(fg, fg.sort().values) and torch.equal(bg, bg.sort().values)
    again = sample_proposals(labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    assert sample_proposals(labels, rois_per_image=64).numel() == min(64, num_fg + num_bg)
