"""Direct model(images, targets) calls check the targets as the training loop does: a box
outside its image is refused with the target named, float64 boxes are accepted (as torchvision
accepts any float boxes) and give the same losses as float32 ones."""
import pytest
import torch

from frcnn_edu.models import shapes_fast_rcnn, shapes_faster_rcnn


def _target(boxes):
    return {"boxes": torch.tensor(boxes), "labels": torch.ones(len(boxes), dtype=torch.int64)}


@pytest.mark.parametrize("make", [lambda: shapes_faster_rcnn(pretrained=False),
                                  lambda: shapes_faster_rcnn(pretrained=False, image_scale=240)])
def test_faster_rcnn_refuses_a_box_outside_its_image(make):
    model = make().train()
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        model([torch.rand(3, 64, 64)], [_target([[10.0, 10.0, 80.0, 40.0]])])


def test_fast_rcnn_refuses_a_box_outside_its_image():
    model = shapes_fast_rcnn(pretrained=False).train()
    props = [torch.tensor([[0.0, 0.0, 30.0, 30.0]])]
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        model([torch.rand(3, 64, 64)], props, [_target([[-5.0, 10.0, 30.0, 40.0]])])


def test_float64_boxes_train_like_float32_ones():
    torch.manual_seed(0)
    model = shapes_faster_rcnn(pretrained=False).train()
    image = torch.rand(3, 64, 64)
    boxes = [[10.0, 12.0, 40.0, 50.0]]
    torch.manual_seed(1)
    a = model([image], [_target(boxes)])
    torch.manual_seed(1)
    t64 = {"boxes": torch.tensor(boxes, dtype=torch.float64), "labels": torch.ones(1, dtype=torch.int64)}
    b = model([image], [t64])
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
