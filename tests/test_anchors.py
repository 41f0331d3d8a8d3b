"""frcnn_edu.anchors: paper geometry, torchvision's AnchorGenerator, the 1000 x 600 numbers."""
import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.boxes import box_area


def test_base_anchors_geometry_and_order(device):
    sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
    base = make_base_anchors(sizes, ratios, device=device)
    assert base.shape == (9, 4) and base.dtype == torch.float32 and base.device.type == device.type
    w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    for i, r in enumerate(ratios):  # ratio-major: index = ratio_i * len(sizes) + size_j
        for j, s in enumerate(sizes):
            a = i * len(sizes) + j
            area = torch.tensor(float(s * s), device=device)
            torch.testing.assert_close(box_area(base[a:a + 1])[0], area)
            torch.testing.assert_close(h[a] / w[a], torch.tensor(r, device=device))
    torch.testing.assert_close(base[:, :2], -base[:, 2:])  # centred on (0, 0)
    assert base[3].tolist() == [-64.0, -64.0, 64.0, 64.0]  # ratio 1, size 128
    half_wh = torch.tensor([128 / math.sqrt(0.5) / 2, 128 * math.sqrt(0.5) / 2])  # ratio 0.5: wide
    torch.testing.assert_close(base[0, 2:].cpu(), half_wh)


def test_base_anchors_match_torchvision_up_to_its_rounding():
    sizes, ratios = (32, 128, 256, 512), (0.5, 1.0, 2.0, 3.0)
    ours = make_base_anchors(sizes, ratios)
    theirs = AnchorGenerator().generate_anchors(sizes, ratios)  # rounds to integers
    assert torch.equal(ours.round(), theirs)
    assert (ours - theirs).abs().max() <= 0.5
    assert make_base_anchors((8,), (1.0,), dtype=torch.float64).dtype == torch.float64


def test_grid_anchors_layout(device):
    base = make_base_anchors((16, 32), (0.5, 1.0, 2.0), device=device)  # k = 6
    H, W, k, stride = 3, 5, 6, 16
    anchors = grid_anchors(base, (H, W), stride)
    assert anchors.shape == (H * W * k, 4) and anchors.device.type == device.type
    grid = anchors.view(H, W, k, 4)  # flattened as [H, W, k]
    for y, x, a in [(0, 0, 0), (2, 4, 5), (1, 3, 2)]:
        centre = torch.tensor([(x + 0.5) * stride, (y + 0.5) * stride] * 2, device=device)
        torch.testing.assert_close(grid[y, x, a], base[a] + centre)
        assert torch.equal(anchors[(y * W + x) * k + a], grid[y, x, a])
    rect = grid_anchors(base, (H, W), (8, 16)).view(H, W, k, 4)  # stride (y, x)
    torch.testing.assert_close(rect[2, 1, 3], base[3] + torch.tensor([24.0, 20.0, 24.0, 20.0], device=device))
    assert grid_anchors(base, (0, 7), 16).shape == (0, 4)


def test_grid_anchors_match_torchvision_up_to_half_stride_and_rounding():
    """torchvision puts anchor centres at (x * stride, y * stride); ours sit at cell centres."""
    sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
    generator = AnchorGenerator((sizes,), (ratios,))
    images = ImageList(torch.zeros(1, 3, 600, 1000), [(600, 1000)])
    feature = torch.zeros(1, 512, 37, 62)  # VGG16 conv5 of a 600 x 1000 image: stride 16
    theirs = generator(images, [feature])[0]
    ours = grid_anchors(make_base_anchors(sizes, ratios), (37, 62), 16)
    assert ours.shape == theirs.shape == (37 * 62 * 9, 4)
    assert (ours - 8.0 - theirs).abs().max() <= 0.5


def test_paper_1000x600_anchor_counts():
    """Faster R-CNN sec. 3.3: "roughly 20000 (~60 x 40 x 9) anchors" for a 1000 x 600 image and
    "about 6000" left once cross-boundary anchors are ignored. With exact geometry:

    * VGG16 conv5 after 4 max-poolings that round down (PyTorch): 37 x 62 -> 20,646 anchors;
      Caffe's pooling rounds up (py-faster-rcnn): 38 x 63 -> 21,546 anchors.
    * Either way 8,044 anchors (39 %) lie inside the image, not ~6,000: the extra positions of
      the larger map only hold anchors that cross the border. Per anchor shape (ratio-major
      order) the big ones rarely fit: 512 x 512 at 186 positions, 362 x 724 (tall) at none.
    """
    base = make_base_anchors()
    counts = {}
    for H, W in [(37, 62), (38, 63)]:
        anchors = grid_anchors(base, (H, W), 16)
        inside = inside_image(anchors, (600, 1000))
        counts[(H, W)] = (anchors.shape[0], int(inside.sum()))
        per_anchor = inside.view(H * W, 9).sum(0).tolist()
        assert per_anchor == [1632, 1040, 255, 1650, 1034, 186, 1482, 765, 0]
    assert counts == {(37, 62): (20646, 8044), (38, 63): (21546, 8044)}
    assert 600 // 2 // 2 // 2 // 2 == 37 and 1000 // 2 // 2 // 2 // 2 == 62
    assert math.ceil(math.ceil(math.ceil(math.ceil(600 / 2) / 2) / 2) / 2) == 38


def test_inside_image(device):
    anchors = torch.tensor([[0.0, 0.0, 100.0, 50.0],     # exactly the image: inside
                            [-1.0, 0.0, 50.0, 50.0],     # 1 px out on the left
                            [0.0, 0.0, 100.5, 50.0],     # out on the right
                            [10.0, 10.0, 20.0, 50.01]],  # out at the bottom
                           device=device)
    assert inside_image(anchors, (50, 100)).tolist() == [True, False, False, False]
    assert inside_image(anchors, (50, 100), allowed_border=1).tolist() == [True, True, True, True]
    assert inside_image(torch.zeros(0, 4, device=device), (5, 5)).shape == (0,)


def test_errors():
    with pytest.raises(ValueError, match="sizes"):
        make_base_anchors(sizes=(0, 128))
    with pytest.raises(ValueError, match="ratios"):
        make_base_anchors(ratios=())
    base = make_base_anchors()
    with pytest.raises(ValueError, match="feature_size"):
        grid_anchors(base, (3.5, 4), 16)
    with pytest.raises(ValueError, match="stride"):
        grid_anchors(base, (3, 4), 0)
    with pytest.raises(ValueError, match="base_anchors"):
        grid_anchors(base[:, :3], (3, 4), 16)
    with pytest.raises(ValueError, match="image_size"):
        inside_image(base, (600,))
    with pytest.raises(ValueError, match="anchors"):
        inside_image(base.view(-1), (600, 1000))
