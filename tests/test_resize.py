"""One resizer for the model and the transform: the paper's shorter side with the 1,000-pixel cap
on the longer side, and the shapes recipe (160 -> 240 pixels) bit-identical to what it was."""
import pytest
import torch
import torch.nn.functional as F

from frcnn_edu.data import ResizeShorterSide, ShapesDataset
from frcnn_edu.models import shapes_faster_rcnn


def _old_model_resize(img, image_scale):
    """FasterRCNN.resize as it was before the cap (no antialias, no max size)."""
    h, w = img.shape[-2:]
    size = (round(h * image_scale / min(h, w)), round(w * image_scale / min(h, w)))
    out = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    return out, img.new_tensor([size[1] / w, size[0] / h] * 2)


def test_shapes_recipe_is_bit_identical_to_the_old_resize():
    model = shapes_faster_rcnn(pretrained=False, stride=8, image_scale=240)
    images = [ShapesDataset("test", num_images=3)[i][0] for i in range(3)]
    new, factors = model.resize(images)
    for img, got, f in zip(images, new, factors):
        want, want_f = _old_model_resize(img, 240)
        assert got.shape == (3, 240, 240) and torch.equal(got, want) and torch.equal(f, want_f)


@pytest.mark.parametrize("hw, want", [((300, 900), (333, 1000)),    # capped: 1800 > 1000
                                      ((375, 500), (600, 800)),     # VOC-like: not capped
                                      ((100, 1000), (100, 1000)),   # capped at scale 1
                                      ((800, 400), (1000, 500))])   # tall: cap on the height
def test_model_and_transform_share_the_capped_resize(hw, want):
    torch.manual_seed(0)
    img = torch.rand(3, *hw)
    model = shapes_faster_rcnn(pretrained=False, image_scale=600)
    (got,), (factor,) = model.resize([img])
    boxes = torch.tensor([[10.0, 20.0, 50.0, 90.0]])
    t_img, t_target = ResizeShorterSide(600, 1000)(img, dict(boxes=boxes, labels=torch.tensor([1])))
    assert tuple(got.shape[-2:]) == want and torch.equal(got, t_img)
    assert torch.equal(boxes * factor, t_target["boxes"])
    assert max(want) <= 1000 and (min(want) == 600 or max(want) == 1000)


def test_cap_can_be_lifted_and_is_checked():
    img = torch.rand(3, 300, 900)
    model = shapes_faster_rcnn(pretrained=False, image_scale=600, image_max_size=None)
    assert model.resize([img])[0][0].shape[-2:] == (600, 1800)
    with pytest.raises(ValueError, match="image_max_size"):
        shapes_faster_rcnn(pretrained=False, image_scale=600, image_max_size=500)
