"""Losses: smooth L1, the RPN loss (Faster R-CNN eq. 1), the Fast R-CNN multi-task loss (eq. 1).

Hand-computed cases, equality with torch / torchvision where the settings agree, gradients,
empty positives and bad input.
"""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork

from frcnn_edu.losses import fast_rcnn_loss, rpn_loss, smooth_l1


def randn(*shape, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device)


# ----------------------------------------------------------------------------- smooth L1
def test_smooth_l1_hand_computed(device):
    x = torch.tensor([0.0, 0.5, -2.0, 3.0], device=device)
    # 0.5 * 0.5^2 = 0.125 (quadratic part); |-2| - 0.5 = 1.5 and 3 - 0.5 = 2.5 (linear part)
    assert smooth_l1(x, torch.zeros_like(x)).item() == pytest.approx(0.125 + 1.5 + 2.5)


@pytest.mark.parametrize("beta", [1.0, 1 / 9, 0.5, 0.0])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_smooth_l1_equals_torch(device, beta, reduction):
    a, b = randn(20, 4, device=device, seed=1), randn(20, 4, device=device, seed=2)
    a.requires_grad_()
    ours = smooth_l1(a, b, beta=beta, reduction=reduction)
    ref = F.smooth_l1_loss(a, b, beta=beta, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    g_ours, = torch.autograd.grad(ours.sum(), a)
    g_ref, = torch.autograd.grad(ref.sum(), a)
    torch.testing.assert_close(g_ours, g_ref)


def test_smooth_l1_bad_arguments():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="reduction"):
        smooth_l1(x, x, reduction="avg")
    with pytest.raises(ValueError, match="beta"):
        smooth_l1(x, x, beta=-1.0)


# ----------------------------------------------------------------------------- RPN loss
def test_rpn_loss_hand_computed(device):
    # Four anchors: positive, negative, ignored, positive.
    logits = torch.tensor([0.0, 0.0, 5.0, math.log(3.0)], device=device)
    labels = torch.tensor([1, 0, -1, 1], device=device)
    pred = torch.tensor([[0.5, 0, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9], [0, 0, 0, 2]],
                        dtype=torch.float32, device=device)
    gt = torch.zeros(4, 4, device=device)
    cls, reg = rpn_loss(logits, pred, labels, gt, n_cls=256, n_reg=2400, lam=10.0)
    # -log sigmoid(0) = log 2 (twice: the positive and the negative); -log sigmoid(log 3) = log 4/3
    assert cls.item() == pytest.approx((2 * math.log(2) + math.log(4 / 3)) / 256, rel=1e-5)
    # smooth L1 of the positives only: 0.125 + 1.5; negatives and ignored anchors give nothing
    assert reg.item() == pytest.approx(10 * (0.125 + 1.5) / 2400, rel=1e-5)


def test_rpn_loss_n_reg_defaults_to_anchor_locations(device):
    A, k = 90, 9                                             # 10 locations x 9 anchors
    logits, pred, gt = randn(A, device=device), randn(A, 4, device=device, seed=1), randn(
        A, 4, device=device, seed=2)
    labels = torch.randint(-1, 2, (A,), generator=torch.Generator().manual_seed(0)).to(device)
    _, reg_default = rpn_loss(logits, pred, labels, gt, num_anchors_per_location=k)
    _, reg_explicit = rpn_loss(logits, pred, labels, gt, n_reg=A // k)
    torch.testing.assert_close(reg_default, reg_explicit)
    positive = labels == 1
    expected = 10.0 * F.smooth_l1_loss(pred[positive], gt[positive], reduction="sum") / (A // k)
    torch.testing.assert_close(reg_default, expected)


def test_rpn_loss_objectness_is_binary_cross_entropy(device):
    A = 50
    logits = randn(A, device=device)
    labels = torch.randint(-1, 2, (A,), generator=torch.Generator().manual_seed(3)).to(device)
    zeros = torch.zeros(A, 4, device=device)
    cls, _ = rpn_loss(logits, zeros, labels, zeros, n_cls=256)
    sampled = labels >= 0
    expected = F.binary_cross_entropy_with_logits(
        logits[sampled], labels[sampled].float(), reduction="sum") / 256
    torch.testing.assert_close(cls, expected)
    # The paper's 2-class softmax with scores (0, z) is the same log loss as a sigmoid of z.
    two_class = torch.stack([torch.zeros_like(logits), logits], dim=1)
    softmax_version = F.cross_entropy(two_class[sampled], labels[sampled], reduction="sum") / 256
    torch.testing.assert_close(cls, softmax_version)


def test_rpn_loss_sampled_equals_torchvision(device):
    A = 300
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(A, generator=g).to(device)
    pred, gt = torch.randn(A, 4, generator=g).to(device), torch.randn(A, 4, generator=g).to(device)
    labels = torch.randint(-1, 2, (A,), generator=g).to(device)
    ours = rpn_loss(logits, pred, labels, gt, lam=1.0, beta=1 / 9, normalize="sampled")
    # torchvision samples inside compute_loss; hand it our mini-batch instead.
    fake_rpn = SimpleNamespace(fg_bg_sampler=lambda ls: ([ls[0] == 1], [ls[0] == 0]))
    ref = RegionProposalNetwork.compute_loss(fake_rpn, logits[:, None], pred, [labels.float()],
                                             [gt])
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])


@pytest.mark.parametrize("normalize", ["paper", "sampled"])
def test_rpn_loss_without_positives_is_finite(device, normalize):
    A = 18
    logits = randn(A, device=device).requires_grad_()
    pred = randn(A, 4, device=device, seed=1).requires_grad_()
    labels = torch.tensor([0, -1] * 9, device=device)
    cls, reg = rpn_loss(logits, pred, labels, torch.zeros(A, 4, device=device), normalize=normalize)
    assert reg.item() == 0 and torch.isfinite(cls)
    (cls + reg).backward()
    assert torch.all(pred.grad == 0) and torch.isfinite(logits.grad).all()
    # Nothing sampled at all: zero losses, not NaN.
    none = torch.full((A,), -1, device=device)
    cls, reg = rpn_loss(logits, pred, none, torch.zeros(A, 4, device=device), normalize=normalize)
    assert cls.item() == 0 and reg.item() == 0


def test_rpn_loss_bad_input():
    A = 9
    logits, deltas = torch.zeros(A), torch.zeros(A, 4)
    with pytest.raises(ValueError, match="labels"):
        rpn_loss(logits, deltas, torch.full((A,), 2), deltas)
    with pytest.raises(ValueError, match="pred_deltas"):
        rpn_loss(logits, torch.zeros(A, 5), torch.zeros(A, dtype=torch.long), deltas)
    with pytest.raises(ValueError, match="pred_objectness"):
        rpn_loss(torch.full((A,), float("nan")), deltas, torch.zeros(A, dtype=torch.long), deltas)
    with pytest.raises(ValueError, match="normalize"):
        rpn_loss(logits, deltas, torch.zeros(A, dtype=torch.long), deltas, normalize="mean")


# ----------------------------------------------------------------------------- Fast R-CNN loss
def make_head_outputs(R=12, K=3, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(R, K + 1, generator=g).to(device)
    deltas = torch.randn(R, 4 * (K + 1), generator=g).to(device)
    labels = torch.randint(0, K + 1, (R,), generator=g).to(device)
    gt = torch.randn(R, 4, generator=g).to(device)
    return logits, deltas, labels, gt


def test_fast_rcnn_loss_hand_computed(device):
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]], device=device)     # K = 1, p = (1/2, 1/2)
    deltas = torch.tensor([[7.0] * 4 + [7.0] * 4,                        # background RoI
                           [9.0] * 4 + [0.5, 0, 0, 2]], device=device)  # foreground, class 1
    labels = torch.tensor([0, 1], device=device)
    cls, box = fast_rcnn_loss(logits, deltas, labels, torch.zeros(2, 4, device=device))
    assert cls.item() == pytest.approx(math.log(2))
    # [u >= 1]: only RoI 1, only its class-1 deltas: (0.125 + 1.5) / R with R = 2
    assert box.item() == pytest.approx((0.125 + 1.5) / 2)


def test_fast_rcnn_loss_equals_torchvision(device):
    logits, deltas, labels, gt = make_head_outputs(R=40, K=5, device=device)
    ours = fast_rcnn_loss(logits, deltas, labels, gt, beta=1 / 9)
    ref = fastrcnn_loss(logits, deltas, [labels], [gt])
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    torch.testing.assert_close(ours[0], F.cross_entropy(logits, labels))
    cls, box = fast_rcnn_loss(logits, deltas, labels, gt, lam=3.0, beta=1 / 9)
    torch.testing.assert_close(box, 3.0 * ref[1])


def test_fast_rcnn_loss_gradient_reaches_only_true_class_deltas_of_foreground(device):
    logits, deltas, labels, gt = make_head_outputs(R=30, K=4, device=device, seed=1)
    deltas.requires_grad_()
    _, box = fast_rcnn_loss(logits, deltas, labels, gt)
    box.backward()
    grad = deltas.grad.view(30, 5, 4)
    expected_nonzero = torch.zeros(30, 5, dtype=torch.bool, device=device)
    fg = labels > 0
    expected_nonzero[fg, labels[fg]] = True
    assert torch.all((grad.abs().sum(2) > 0) == expected_nonzero)


def test_fast_rcnn_loss_without_foreground(device):
    logits, deltas, _, gt = make_head_outputs(device=device)
    deltas.requires_grad_()
    labels = torch.zeros(len(logits), dtype=torch.long, device=device)
    cls, box = fast_rcnn_loss(logits, deltas, labels, gt)
    assert box.item() == 0 and torch.isfinite(cls)
    box.backward()
    assert torch.all(deltas.grad == 0)
    # No RoIs at all: zeros, not NaN.
    cls, box = fast_rcnn_loss(logits[:0], deltas[:0], labels[:0], gt[:0])
    assert cls.item() == 0 and box.item() == 0


def test_fast_rcnn_loss_bad_input():
    logits, deltas, labels, gt = make_head_outputs(R=6, K=2)
    with pytest.raises(ValueError, match="labels"):
        fast_rcnn_loss(logits, deltas, torch.full((6,), 3), gt)            # K + 1 = 3 classes
    with pytest.raises(ValueError, match="labels"):
        fast_rcnn_loss(logits, deltas, torch.full((6,), -1), gt)
    with pytest.raises(TypeError, match="labels"):
        fast_rcnn_loss(logits, deltas, labels.float(), gt)
    with pytest.raises(ValueError, match="box_regression"):
        fast_rcnn_loss(logits, deltas[:, :8], labels, gt)              # [R, 4*K]: not our layout
    with pytest.raises(ValueError, match="class_logits"):
        fast_rcnn_loss(torch.full_like(logits, float("nan")), deltas, labels, gt)
    with pytest.raises(ValueError, match="gt_deltas"):
        fast_rcnn_loss(logits, deltas, labels, gt.fill_(float("inf")))
