"""Non-approximate joint training (Faster R-CNN sec. 3.2): the detector loss reaches the RPN's
box regression through RoIAlign's box gradient in joint="exact", and not in "approximate"; the
proposal layer keeps the kept boxes' graph; the regression targets stay constants; training
runs; RoI max pooling is refused with the fix; the CLI's --method joint-exact."""
import json
import math

import pytest
import torch

from frcnn_edu.boxes import clip_boxes, decode_boxes
from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import FasterRCNN, shapes_faster_rcnn
from frcnn_edu.models.fast_rcnn import RoIHead
from frcnn_edu.proposals import generate_proposals
from frcnn_edu.training import train_joint

DETECTOR = ("loss_classifier", "loss_box_reg")
RPN = ("loss_objectness", "loss_rpn_box_reg")


def model(joint, seed=0, **kw):
    torch.manual_seed(seed)
    return shapes_faster_rcnn(pretrained=False, pooler="roi_align", joint=joint,
                              rpn_pre_nms_top_n=(300, 100), rpn_post_nms_top_n=(60, 20), **kw).train()


def batch(n=2):
    data = ShapesDataset("train", num_images=n, image_size=(64, 64), scale_range=(16, 40))
    images, targets = zip(*[data[i] for i in range(n)])
    return list(images), list(targets)


def rpn_reg_grad(net, keys):
    """Gradient of the sum of `keys` losses w.r.t. the RPN's box-regression conv weight (None if
    that loss does not reach it)."""
    torch.manual_seed(1)
    losses = net(*batch())
    grad, = torch.autograd.grad(sum(losses[k] for k in keys), net.rpn.head.bbox_pred.weight,
                                allow_unused=True)
    return grad, losses


def test_exact_sends_the_detector_loss_into_the_rpn_box_regression():
    grad, _ = rpn_reg_grad(model("exact"), DETECTOR)
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_approximate_sends_none():
    grad, _ = rpn_reg_grad(model("approximate"), DETECTOR)
    assert grad is None or torch.all(grad == 0)


def test_exact_changes_only_the_gradients_not_the_losses():
    """Same weights and sampling: the forward values are the same, and the RPN loss's own
    gradient on the box regression is unchanged; only the detector's part is added."""
    (g_exact, l_exact), (g_approx, l_approx) = (rpn_reg_grad(model(j), RPN) for j in ("exact", "approximate"))
    for k in l_exact:
        torch.testing.assert_close(l_exact[k], l_approx[k])
    torch.testing.assert_close(g_exact, g_approx)
    # the objectness branch is only used to select proposals (an index): no detector gradient
    net = model("exact")
    torch.manual_seed(1)
    losses = net(*batch())
    grad, = torch.autograd.grad(sum(losses[k] for k in DETECTOR), net.rpn.head.cls_logits.weight,
                                allow_unused=True)
    assert grad is None or torch.all(grad == 0)


def test_detector_stages_and_eval_keep_proposals_constant():
    """exact applies to stages="both" only: 4-step's step 4 (stages="detector") and inference
    see constant proposals."""
    net = model("exact")
    torch.manual_seed(1)
    losses = net(*batch(), stages="detector")
    grad, = torch.autograd.grad(sum(losses.values()), net.rpn.head.bbox_pred.weight, allow_unused=True)
    assert grad is None
    net.eval()
    features, sizes, _ = net.shared_features(batch()[0])
    proposals, _, _ = net.rpn(features, sizes)
    assert len(proposals) == 2 and not any(p.requires_grad for p in proposals)


def test_proposal_layer_keeps_the_graph_of_the_kept_boxes():
    """differentiable=True: the kept boxes are decode + clip of the deltas of their anchors, so
    d box / d delta is decode's Jacobian (clipped coordinates: 0), through an index selection."""
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(50, 2, generator=g) * 40
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(50, 2, generator=g) * 20], 1)
    logits = torch.randn(1, 50, generator=g)
    deltas = (torch.randn(1, 50, 4, generator=g) * 0.3).requires_grad_()
    boxes, _ = generate_proposals(anchors, logits, deltas, [(48, 48)], pre_nms_top_n=40,
                                  post_nms_top_n=10, nms_thresh=0.5, differentiable=True)
    assert boxes[0].requires_grad
    detached, _ = generate_proposals(anchors, logits, deltas, [(48, 48)], pre_nms_top_n=40,
                                     post_nms_top_n=10, nms_thresh=0.5)
    assert not detached[0].requires_grad
    torch.testing.assert_close(boxes[0].detach(), detached[0])
    weights = torch.randn(boxes[0].shape, generator=g)
    (boxes[0] * weights).sum().backward()
    # reference: find each kept box among all decoded boxes, differentiate those directly
    full = clip_boxes(decode_boxes(anchors, deltas[0].detach()), (48, 48))
    index = torch.cdist(detached[0], full).argmin(1)
    ref_deltas = deltas[0].detach().requires_grad_()
    ref = clip_boxes(decode_boxes(anchors, ref_deltas), (48, 48))[index]
    (ref * weights).sum().backward()
    torch.testing.assert_close(deltas.grad[0], ref_deltas.grad)
    assert (deltas.grad[0].abs().sum(1) > 0).sum() == len(set(index.tolist()))


def test_regression_targets_are_constants():
    """RoIHead.sample's regression targets carry no graph even for proposals that do."""
    head = RoIHead(8, 3, stride=8, pooler="roi_align", rois_per_image=16)
    props = torch.tensor([[2.0, 2.0, 30.0, 30.0], [10.0, 10.0, 40.0, 44.0]], requires_grad=True)
    target = dict(boxes=torch.tensor([[4.0, 3.0, 31.0, 33.0]]), labels=torch.tensor([1]))
    rois, labels, gt_deltas = head.sample([props], [target])
    assert rois[0].requires_grad and not gt_deltas.requires_grad and (labels > 0).any()


def test_exact_needs_roi_align():
    with pytest.raises(ValueError, match='pooler="roi_align"'):
        shapes_faster_rcnn(pretrained=False, pooler="roi_pool", joint="exact")
    with pytest.raises(ValueError, match="joint must be"):
        shapes_faster_rcnn(pretrained=False, joint="full")


def test_exact_trains_a_few_steps_without_nan():
    data = ShapesDataset("train", num_images=4, image_size=(64, 64), scale_range=(16, 40))
    net = model("exact")
    before = net.rpn.head.bbox_pred.weight.detach().clone()
    history = train_joint(net, data, steps=6, optimizer="adam", lr=1e-3, progress=False)
    assert len(history) == 6
    assert all(math.isfinite(h[k]) for h in history for k in (*RPN, *DETECTOR))
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert not torch.equal(before, net.rpn.head.bbox_pred.weight)


def test_cli_joint_exact(tmp_path, monkeypatch, capsys):
    from frcnn_edu import cli
    from frcnn_edu.models import recipes

    class Small(ShapesDataset):
        def __init__(self, split, num_images=None):
            super().__init__(split, num_images=4, image_size=(64, 64))
    built = []

    def fake(pretrained=True, **kw):
        built.append(kw)
        torch.manual_seed(0)
        return shapes_faster_rcnn(pretrained=False, rpn_pre_nms_top_n=(200, 100),
                                  rpn_post_nms_top_n=(50, 20), **kw)
    monkeypatch.setattr(cli, "ShapesDataset", Small)
    monkeypatch.setattr(recipes, "shapes_faster_rcnn", fake)
    out = tmp_path / "run"
    assert cli.main(["train", "--method", "joint-exact", "--out", str(out), "--minutes", "0.01",
                     "--device", "cpu"]) == 0
    assert built[0]["joint"] == "exact" and built[0]["pooler"] == "roi_align"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "joint-exact" and metrics["train_steps"] >= 1
    capsys.readouterr()
    assert cli.main(["train", "--method", "joint-exact", "--paper", "--out", str(tmp_path / "p"),
                     "--minutes", "0.01", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--pooler roi_align" in err and "drop --paper" in err and not (tmp_path / "p").exists()
    assert "joint-exact" in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def test_rpn_regression_gradients_zero_for_approximate_and_not_for_exact():
    from frcnn_edu.training import rpn_regression_gradients
    data = ShapesDataset("train", num_images=4, image_size=(64, 64), scale_range=(16, 40))
    approx, exact = model("approximate"), model("exact")
    exact.load_state_dict(approx.state_dict())
    before = {k: v.clone() for k, v in exact.state_dict().items()}
    n_rpn_a, n_det_a, cos_a = rpn_regression_gradients(approx, data, batches=2)
    n_rpn_e, n_det_e, cos_e = rpn_regression_gradients(exact.eval(), data, batches=2)
    assert n_det_a == 0 and cos_a == 0 and n_rpn_a > 0
    assert n_det_e > 0 and -1 <= cos_e <= 1
    assert math.isclose(n_rpn_e, n_rpn_a, rel_tol=1e-5)  # the RPN loss's own part is unchanged
    assert not exact.training                            # its mode is restored
    assert all(torch.equal(v, exact.state_dict()[k]) for k, v in before.items())  # no step taken
