"""The RPN takes a student's anchors, labeling rules and proposal layer in place of the
library's (`anchor_fn`, `label_fn`, `proposal_fn`; `FasterRCNN(rpn_functions=...)`)."""
import pytest
import torch

from frcnn_edu.anchors import grid_anchors
from frcnn_edu.matching import label_anchors
from frcnn_edu.models import RegionProposalNetwork, shapes_faster_rcnn
from frcnn_edu.proposals import generate_proposals


def _rpn(**kwargs):
    torch.manual_seed(0)
    return RegionProposalNetwork(8, stride=16, anchor_sizes=(20, 40), pre_nms_top_n=(50, 40),
                                 post_nms_top_n=(20, 10), **kwargs)


FEATURES = torch.randn(2, 8, 6, 7, generator=torch.Generator().manual_seed(1))
SIZES = [(96, 112), (90, 100)]
TARGETS = [{"boxes": torch.tensor([[10.0, 12, 50, 60], [60, 30, 90, 80]]),
            "labels": torch.tensor([1, 2])},
           {"boxes": torch.tensor([[5.0, 5, 40, 30]]), "labels": torch.tensor([3])}]


def test_library_functions_passed_explicitly_change_nothing():
    calls = []

    def anchors(*a):
        calls.append("anchor")
        return grid_anchors(*a)

    def labels(*a):
        calls.append("label")
        return label_anchors(*a)

    def proposals(*a):
        calls.append("proposal")
        return generate_proposals(*a)

    base, mine = _rpn(), _rpn(anchor_fn=anchors, label_fn=labels, proposal_fn=proposals)
    torch.manual_seed(3)
    p0, s0, l0 = base(FEATURES, SIZES, TARGETS)
    torch.manual_seed(3)
    p1, s1, l1 = mine(FEATURES, SIZES, TARGETS)
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    assert torch.allclose(l0["loss_objectness"], l1["loss_objectness"])
    assert calls.count("label") == 2 and "anchor" in calls and "proposal" in calls
    base.eval(), mine.eval()
    assert all(torch.equal(a, b) for a, b in zip(base(FEATURES, SIZES)[0], mine(FEATURES, SIZES)[0]))


def test_a_different_function_changes_what_the_rpn_does():
    def everything_negative(anchors, gt_boxes, pos_iou, neg_iou, valid):
        labels, matched = label_anchors(anchors, gt_boxes, pos_iou, neg_iou, valid)
        return torch.where(labels == 1, torch.zeros_like(labels), labels), matched

    torch.manual_seed(3)
    _, _, losses = _rpn(label_fn=everything_negative)(FEATURES, SIZES, TARGETS)
    assert float(losses["loss_rpn_box_reg"]) == 0.0          # no positive anchor to regress

    def top_two(anchors, objectness, deltas, image_sizes, pre, post, thresh, min_size):
        boxes, scores = generate_proposals(anchors, objectness, deltas, image_sizes, pre, post,
                                           thresh, min_size)
        return [b[:2] for b in boxes], [s[:2] for s in scores]

    rpn = _rpn(proposal_fn=top_two).eval()
    proposals, _, _ = rpn(FEATURES, SIZES)
    assert [len(p) for p in proposals] == [2, 2]


def test_a_label_fn_may_return_the_labels_alone():
    torch.manual_seed(3)
    _, _, l0 = _rpn()(FEATURES, SIZES, TARGETS)
    torch.manual_seed(3)
    _, _, l1 = _rpn(label_fn=lambda *a: label_anchors(*a)[0])(FEATURES, SIZES, TARGETS)
    assert torch.allclose(l0["loss_objectness"], l1["loss_objectness"])
    assert torch.allclose(l0["loss_rpn_box_reg"], l1["loss_rpn_box_reg"])


def test_bad_functions_and_ablations_are_refused():
    with pytest.raises(TypeError, match="anchor_fn"):
        _rpn(anchor_fn="grid")
    rpn = _rpn(proposal_fn=generate_proposals).eval()
    rpn.test_order = "random"
    with pytest.raises(ValueError, match="proposal_fn=None"):
        rpn(FEATURES, SIZES)
    with pytest.raises(ValueError, match="rpn_functions"):
        shapes_faster_rcnn(pretrained=False, rpn_functions={"nms_fn": None})


def test_faster_rcnn_passes_the_functions_to_its_rpn():
    model = shapes_faster_rcnn(pretrained=False, rpn_functions={"label_fn": label_anchors})
    assert model.rpn.label_fn is label_anchors and model.rpn.proposal_fn is None
