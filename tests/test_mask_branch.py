"""The mask branch trained alone on frozen features (`training.mask_branch`): features may be one
map or a tuple of maps (a head that pools from several levels, benchmarks/mask_head_probe.py)."""
import pytest
import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models.backbones import tiny_vgg
from frcnn_edu.models.mask_rcnn import MaskHead
from frcnn_edu.training.mask_branch import (_features, evaluate_mask_branch, frozen_features,
                                            jitter_rois, train_mask_branch)


class FirstLevelHead(MaskHead):
    """Reads level 0 of a tuple of maps: trained on ((f, extra), t) it must learn as on (f, t)."""

    def pool(self, features, rois):
        return super().pool(features[0], rois)


@pytest.fixture(scope="module")
def items():
    torch.manual_seed(0)
    data = ShapesDataset("train", num_images=4, masks=True)
    return frozen_features(tiny_vgg(pretrained=False, stride=8), data)


def test_a_tuple_of_levels_batches_level_by_level(items):
    levels = [((f, 2 * f[:, :3]), t) for f, t in items]
    f8, extra = _features(levels[:3])
    assert torch.equal(f8, torch.cat([f for f, _ in items[:3]]))
    assert torch.equal(extra, 2 * f8[:, :3])


def test_training_on_a_tuple_equals_training_on_its_level(items):
    def run(head_class, data):
        torch.manual_seed(0)
        head = head_class(128, 6, 8, 14, channels=8, num_convs=1)
        history, _ = train_mask_branch(head, data, steps=3, lr=1e-3, seed=1)
        return head, history
    plain, h_plain = run(MaskHead, items)
    tupled, h_tupled = run(FirstLevelHead, [((f, f[:, :1]), t) for f, t in items])
    assert h_plain == h_tupled and len(h_plain) == 3
    for a, b in zip(plain.parameters(), tupled.parameters()):
        assert torch.equal(a, b)
    ap = evaluate_mask_branch(tupled, [((f, f[:, :1]), t) for f, t in items], 6)
    assert ap["AP"] == evaluate_mask_branch(plain, items, 6)["AP"]


def test_jittered_rois_stay_positives_of_their_object():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 5.0, 70.0, 90.0]])
    rois, matched = jitter_rois(boxes, torch.Generator().manual_seed(0), jitter=0.5, copies=50)
    from frcnn_edu.boxes import box_iou
    assert matched.tolist() == [0] * 50 + [1] * 50
    assert (box_iou(rois, boxes)[torch.arange(100), matched] >= 0.5 - 1e-6).all()
    empty, none = jitter_rois(boxes[:0], torch.Generator(), copies=4)   # an image without objects
    assert empty.shape == (0, 4) and none.numel() == 0
