"""frcnn_edu.speed.speed_ladder: the three detectors timed side by side.

No wall-clock asserts: the real runs check the keys and that every rung ran; the accounting
(what each rung includes, warm-ups left out, seconds per image) is checked on a fake clock.
"""
import math

import pytest
import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.speed import speed_ladder
from frcnn_edu.models import shapes_faster_rcnn

KEYS = ["selective search", "R-CNN", "Fast R-CNN", "Faster R-CNN", "conv layers", "RPN proposals"]


def tiny_images(n=2):
    data = ShapesDataset("test", num_images=n, image_size=(64, 64), scale_range=(16, 40))
    return [data[i][0] for i in range(n)]


def test_ladder_times_every_rung(device):
    times = speed_ladder(tiny_images(2), device=device, max_proposals=8, ss_min_size=4)
    assert list(times) == KEYS
    assert all(math.isfinite(t) and t > 0 for t in times.values())


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


class _Timed(torch.nn.Module):
    """A stand-in stage that costs `seconds` (or seconds(x)) of the fake clock per call."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def forward(self, *args, **kwargs):
        self.clock.advance(self.seconds(*args) if callable(self.seconds) else self.seconds)
        return [{}]


def test_ladder_accounts_each_rung_on_a_fake_clock(monkeypatch, fake_clock):
    """Costs per image: selective search 1 s and P = 5 proposals; R-CNN 0.25 s per proposal;
    Fast R-CNN's head 0.5 s; the backbone 0.125 s, the RPN and its layer 0.25 s more, the
    detector head 0.0625 s more. Warm-up calls also cost clock time and must not be counted."""
    import frcnn_edu.speed as speed
    clock, P = fake_clock, 5
    monkeypatch.setattr(speed, "time", clock)

    def search(img, max_proposals, min_size):
        clock.advance(1.0)
        return torch.tensor([[0.0, 0.0, 8.0, 8.0]]).repeat(P, 1)
    monkeypatch.setattr(speed, "selective_search", search)

    class RCNN(_Timed):
        def predict(self, images, proposals):
            return self(images, proposals)
    rcnn = RCNN(clock, lambda images, proposals: 0.25 * len(proposals[0]))
    monkeypatch.setattr(speed, "shapes_rcnn", lambda **kw: rcnn)
    monkeypatch.setattr(speed, "FastRCNN", lambda backbone, k: _Timed(clock, 0.5))

    class Faster(torch.nn.Module):
        num_classes = 3

        def __init__(self):
            super().__init__()
            self.backbone = _Timed(clock, 0.125)
            self.backbone.stride = 16
            self.roi_heads = torch.nn.Identity()

        def propose(self, images):
            self.backbone(images)
            clock.advance(0.25)

        def forward(self, images):
            self.propose(images)
            clock.advance(0.0625)
            return [{}]
    times = speed_ladder(tiny_images(2), max_proposals=P, faster_rcnn=Faster())
    assert times == {"selective search": 1.0, "R-CNN": 1.0 + 0.25 * P, "Fast R-CNN": 1.5,
                     "Faster R-CNN": 0.4375, "conv layers": 0.125, "RPN proposals": 0.375}
