"""RoIAlign differentiable in the box coordinates (what non-approximate joint training needs):
gradcheck of the box gradient, values and feature gradients equal to torchvision's, the fast
path for boxes without grad, a hand-derived slope, and RoI pooling's missing box gradient."""
import math

import pytest
import torch
import torchvision.ops as tv

from frcnn_edu import roi_ops
from frcnn_edu.roi_ops import roi_align, roi_align_sampled, roi_pool

N, C, H, W = 2, 2, 9, 13


def sample_coordinates(start, length, pooled, grid):
    """Where torchvision's kernel samples along one axis (its formula, written out here)."""
    bin_size = length / pooled
    return [start + p * bin_size + (k + 0.5) * bin_size / grid
            for p in range(pooled) for k in range(grid)]


def distance_to_kinks(box, spatial_scale, output_size, sampling_ratio, aligned):
    """How far (in feature cells) a box is from the places where RoIAlign's output is not smooth
    in the box coordinates: a sample on an integer coordinate (its floor, i.e. its 4 neighbours,
    changes; -1, 0, H - 1 and H, where it leaves the map, is clamped or sits at the border, are
    integers too), the adaptive grid count ceil(size / pooled) jumping (size / pooled an
    integer), and aligned=False's clamp of the size to 1 cell."""
    x1, y1, x2, y2 = (v * spatial_scale - (0.5 if aligned else 0.0) for v in box)
    distances = []
    for start, end, pooled in ((x1, x2, output_size[1]), (y1, y2, output_size[0])):
        length = end - start if aligned else max(end - start, 1.0)
        distances.append(abs(end - start - 1.0) if not aligned else math.inf)
        if sampling_ratio > 0:
            grid = sampling_ratio
        else:
            grid = max(math.ceil(length / pooled), 0)
            distances.append(abs(length / pooled - round(length / pooled)))
        distances += [abs(c - round(c)) for c in sample_coordinates(start, length, pooled, grid)]
    return min(distances)


def boxes_away_from_kinks(spatial_scale, output_size, sampling_ratio, aligned, seed=0, margin=1e-3):
    """Random boxes per image, many partly outside the map and some tiny (under one cell), each
    redrawn until every sample is at least `margin` cells from a kink: gradcheck's finite
    differences (eps 1e-6) must not straddle a kink, where the one-sided slopes differ."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([W, H], dtype=torch.float64) / spatial_scale
    per_image = []
    for n in range(N):
        boxes = []
        while len(boxes) < 6:
            kind = len(boxes) % 3                  # 0: anywhere, 1: partly outside, 2: tiny
            xy = torch.rand(2, generator=g, dtype=torch.float64) * size * 1.2 - 0.1 * size
            wh = torch.rand(2, generator=g, dtype=torch.float64) * size * 0.7 + 0.5 / spatial_scale
            if kind == 1:
                xy = -0.3 * wh if n == 0 else size - 0.6 * wh
            if kind == 2:
                wh = (0.2 + 0.6 * torch.rand(2, generator=g, dtype=torch.float64)) / spatial_scale
            box = torch.cat([xy, xy + wh])
            if distance_to_kinks(box.tolist(), spatial_scale, output_size, sampling_ratio, aligned) > margin:
                boxes.append(box)
        per_image.append(torch.stack(boxes))
    return per_image


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_box_gradient_passes_gradcheck(spatial_scale, sampling_ratio, aligned):
    """Autograd's box gradient against central finite differences, in float64 (the feature
    gradient is compared with torchvision's below)."""
    output_size = (3, 2)
    boxes = boxes_away_from_kinks(spatial_scale, output_size, sampling_ratio, aligned)
    boxes = [b.requires_grad_() for b in boxes]
    x = torch.randn(N, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(
        lambda b0, b1: roi_align(x, [b0, b1], output_size, spatial_scale, sampling_ratio, aligned),
        boxes, eps=1e-6, atol=1e-5)


def test_the_box_gradient_is_not_zero_inside_the_map():
    """gradcheck also passes for a gradient that is 0: make sure a box inside the map moves the output."""
    x = torch.randn(N, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b = torch.tensor([[2.3, 1.6, 9.45, 7.2]], dtype=torch.float64, requires_grad=True)
    assert distance_to_kinks(b[0].tolist(), 1.0, (3, 2), 2, True) > 1e-3
    roi_align(x, [b], (3, 2), 1.0, 2, True).sum().backward()
    assert (b.grad.abs() > 1e-3).all()


def test_box_slope_on_a_linear_map_is_the_sample_position_rule():
    """On f(x, y) = x a 1 x 1 grid samples each bin's centre, x1 + (j + 0.5) (x2 - x1) / pw, so
    d out_j / d x1 = 1 - (j + 0.5) / pw and d out_j / d x2 = (j + 0.5) / pw; y has no effect."""
    x = torch.arange(10.0, dtype=torch.float64).expand(1, 1, 6, 10).contiguous()
    box = torch.tensor([[2.2, 1.3, 8.1, 4.6]], dtype=torch.float64, requires_grad=True)
    pw = 3
    for j in range(pw):
        out = roi_align(x, [box], (1, pw), 1.0, sampling_ratio=1, aligned=False)[0, 0, 0, j]
        grad, = torch.autograd.grad(out, box)
        want = torch.tensor([1 - (j + 0.5) / pw, 0.0, (j + 0.5) / pw, 0.0], dtype=torch.float64)
        torch.testing.assert_close(grad[0], want)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_values_and_feature_gradient_equal_torchvisions(spatial_scale, sampling_ratio, aligned):
    """The box-differentiable path (boxes that require grad) gives torchvision's values and input
    gradient, including boxes outside the map, tiny, huge and malformed ones (test_roi_ops')."""
    from test_roi_ops import features, random_rois
    x, rois = features("cpu"), random_rois(spatial_scale)
    g = torch.randn(len(rois), 3, 7, 7, generator=torch.Generator().manual_seed(5))
    ours_x, theirs_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    boxes = rois.clone().requires_grad_()
    ours = roi_align(ours_x, boxes, 7, spatial_scale, sampling_ratio, aligned)
    theirs = tv.roi_align(theirs_x, rois, 7, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, theirs)
    (ours * g).sum().backward()
    (theirs * g).sum().backward()
    torch.testing.assert_close(ours_x.grad, theirs_x.grad)
    assert torch.all(boxes.grad[:, 0] == 0)          # the image index gets no gradient


def test_boxes_without_grad_take_the_fast_path(monkeypatch):
    from test_roi_ops import features, random_rois
    x, rois = features("cpu"), random_rois(0.5)

    def refuse(*args):
        raise AssertionError("the readable path ran")
    monkeypatch.setattr(roi_ops, "_roi_align_sampled", refuse)
    torch.testing.assert_close(roi_align(x, rois, 7, 0.5, 2, True), tv.roi_align(x, rois, 7, 0.5, 2, True))
    with torch.no_grad():                      # no graph is built: no box gradient needed either
        roi_align(x, rois.clone().requires_grad_(), 7, 0.5, 2, True)
    with pytest.raises(AssertionError, match="readable path"):
        roi_align(x, rois.clone().requires_grad_(), 7, 0.5, 2, True)


def test_roi_align_sampled_equals_the_fast_path_without_grad():
    from test_roi_ops import features, random_rois
    x, rois = features("cpu"), random_rois(1 / 16)
    torch.testing.assert_close(roi_align_sampled(x, rois, (2, 3), 1 / 16, -1, False),
                               roi_align(x, rois, (2, 3), 1 / 16, -1, False))


def test_a_box_outside_the_map_gets_zero_output_and_zero_gradient():
    x = torch.randn(1, C, H, W, dtype=torch.float64)
    box = torch.tensor([[W + 2.0, 1.0, W + 6.0, 5.0]], dtype=torch.float64, requires_grad=True)
    out = roi_align(x, [box], 3, 1.0, 2, False)
    out.sum().backward()
    assert torch.all(out == 0) and torch.all(box.grad == 0)


def test_no_boxes_with_grad_give_an_empty_result():
    x = torch.randn(N, C, H, W, requires_grad=True)
    boxes = torch.zeros(0, 4, requires_grad=True)
    out = roi_align(x, [boxes, boxes], (2, 3), 0.5)
    assert out.shape == (0, C, 2, 3)
    out.sum().backward()
    assert torch.all(x.grad == 0)


def test_roi_pool_passes_no_gradient_to_the_boxes():
    """RoI max pooling is piecewise constant in the box coordinates (rounding, then an argmax
    cell per bin): it gives no box gradient, by design, but still the input's."""
    x = torch.randn(1, C, H, W, requires_grad=True)
    box = torch.tensor([[1.2, 0.7, 8.3, 6.1]], requires_grad=True)
    out = roi_pool(x, [box], 3, 1.0)
    box_grad, x_grad = torch.autograd.grad(out.sum(), [box, x], allow_unused=True)
    assert box_grad is None and x_grad.abs().sum() > 0
