"""frcnn_edu.inference.speed_ladder: the three detectors timed side by side (no timing asserts)."""
import math

import pytest
import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.inference import speed_ladder
from frcnn_edu.models import shapes_faster_rcnn

KEYS = ["selective search", "R-CNN", "Fast R-CNN", "Faster R-CNN", "conv layers", "RPN proposals"]


def tiny_images(n=2):
    data = ShapesDataset("test", num_images=n, image_size=(64, 64), scale_range=(16, 40))
    return [data[i][0] for i in range(n)]


def test_ladder_times_every_rung(device):
    times = speed_ladder(tiny_images(2), device=device, max_proposals=8, ss_min_size=4)
    assert list(times) == KEYS
    assert all(math.isfinite(t) and t > 0 for t in times.values())
    # R-CNN and Fast R-CNN wait for selective search: their times include it by construction
    assert times["R-CNN"] >= times["selective search"]
    assert times["Fast R-CNN"] >= times["selective search"]


def test_ladder_uses_the_given_faster_rcnn_and_leaves_its_weights(device):
    torch.manual_seed(0)
    model = shapes_faster_rcnn(pretrained=False, rpn_post_nms_top_n=(50, 20)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    times = speed_ladder(tiny_images(1), device=device, max_proposals=4, ss_min_size=4,
                         faster_rcnn=model)
    assert set(times) == set(KEYS)
    assert not model.training
    assert next(model.parameters()).device.type == torch.device(device).type
    assert all(torch.equal(before[k], v.cpu()) for k, v in model.state_dict().items())


def test_ladder_rejects_no_images():
    with pytest.raises(ValueError, match="images"):
        speed_ladder([])
