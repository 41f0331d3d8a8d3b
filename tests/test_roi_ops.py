"""RoI pooling and RoIAlign: values and gradients equal to torchvision.ops, hand-built cases,
the explicit-loop version, both box formats, empty box sets and bad input."""
import pytest
import torch
import torchvision.ops as tv

from frcnn_edu.roi_ops import RoIAlign, RoIPool, roi_align, roi_pool, roi_pool_loop

N, C, H, W = 2, 3, 9, 13


def random_rois(spatial_scale, R=40, seed=0, dtype=torch.float32, device="cpu"):
    """Boxes in image pixels: many partly outside the map, some tiny (< 1 cell), some larger than
    the map, and one malformed (x2 < x1), sorted by image like a list of per-image boxes."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([W, H]) / spatial_scale
    xy = torch.rand(R, 2, generator=g) * size * 1.4 - 0.2 * size
    wh = torch.rand(R, 2, generator=g) * size * 0.8
    wh[:5] = torch.rand(5, 2, generator=g) * 0.8 / spatial_scale                  # tiny
    wh[5:8] = size * 1.3                                                          # huge
    xy[5:8] = -0.1 * size
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[8, 2] = boxes[8, 0] - 1.0                                               # x2 < x1
    batch = torch.randint(0, N, (R, 1), generator=g).sort(0).values.float()
    return torch.cat([batch, boxes], dim=1).to(device=device, dtype=dtype)


def features(device, dtype=torch.float32, seed=1, relu=False):
    x = torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return (x.relu() if relu else x).to(device)      # relu: many equal maxima (zeros)


def values_and_grads(op, x, *args, **kwargs):
    x = x.clone().requires_grad_()
    out = op(x, *args, **kwargs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    out.backward(g.to(out.device))
    return out.detach(), x.grad


def assert_same_as_torchvision(ours, theirs, x, *args, **kwargs):
    out, grad = values_and_grads(ours, x, *args, **kwargs)
    ref_out, ref_grad = values_and_grads(theirs, x, *args, **kwargs)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(grad, ref_grad)


# ----------------------------------------------------------------------------- vs torchvision
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
@pytest.mark.parametrize("output_size", [7, (2, 3)])
@pytest.mark.parametrize("relu", [False, True])
def test_roi_pool_equals_torchvision(device, spatial_scale, output_size, relu):
    x, rois = features(device, relu=relu), random_rois(spatial_scale, device=device)
    assert_same_as_torchvision(roi_pool, tv.roi_pool, x, rois, output_size, spatial_scale)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
@pytest.mark.parametrize("output_size", [7, (2, 3)])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_equals_torchvision(device, spatial_scale, output_size, sampling_ratio, aligned):
    x, rois = features(device), random_rois(spatial_scale, device=device)
    assert_same_as_torchvision(roi_align, tv.roi_align, x, rois, output_size, spatial_scale,
                               sampling_ratio, aligned)


def test_float64_and_unsorted_images(device):
    x, rois = features(device, torch.float64, relu=True), random_rois(0.5, dtype=torch.float64,
                                                                     device=device)
    rois = rois[torch.randperm(len(rois), generator=torch.Generator().manual_seed(0))]
    assert_same_as_torchvision(roi_pool, tv.roi_pool, x, rois, 7, 0.5)
    assert_same_as_torchvision(roi_align, tv.roi_align, x, rois, 7, 0.5, -1, True)


def test_roi_align_warps_image_crops_in_several_chunks(device):
    """R-CNN's use (warp_regions): 3 channels, large output, enough RoIs for several chunks."""
    image = torch.rand(1, 3, 40, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    image = image.to(device)                    # float64: the input gradient sums many products
    rois = random_rois(1.0, R=150, seed=3, dtype=torch.float64, device=device)
    rois[:, 0] = 0
    rois[:, 1:] *= torch.tensor([64 / W, 40 / H, 64 / W, 40 / H], dtype=torch.float64, device=device)
    assert_same_as_torchvision(roi_align, tv.roi_align, image, rois, (112, 96), 1.0, 1, True)


def test_channels_last_input_and_float64_boxes(device):
    x = features(device, relu=True).to(memory_format=torch.channels_last)
    rois = random_rois(0.5, device=device)
    assert_same_as_torchvision(roi_pool, tv.roi_pool, x, rois, 7, 0.5)
    assert_same_as_torchvision(roi_align, tv.roi_align, x, rois, 7, 0.5, 2)
    # boxes are converted to the input's dtype (torchvision would refuse other dtypes)
    torch.testing.assert_close(roi_align(x, rois.double(), 7, 0.5), roi_align(x, rois, 7, 0.5))


def test_roi_pool_rounds_halves_away_from_zero_like_c(device):
    # x * scale lands exactly on .5: C's round() goes up, torch.round would go to even.
    x = features(device)
    coords = torch.tensor([[0, 1, 1, 5, 5], [1, 3, 1, 9, 7], [0, 5, 3, 13, 11]], dtype=x.dtype)
    assert_same_as_torchvision(roi_pool, tv.roi_pool, x, coords.to(device), (3, 2), 0.5)


def test_roi_pool_ties_send_gradient_to_the_first_cell(device):
    x = torch.ones(1, 1, 4, 4, device=device)                # every cell is a maximum
    rois = torch.tensor([[0, 0, 0, 3, 3]], dtype=torch.float32, device=device)
    assert_same_as_torchvision(roi_pool, tv.roi_pool, x, rois, 2, 1.0)
    _, grad = values_and_grads(roi_pool, x, rois, 1, 1.0)
    assert grad[0, 0, 0, 0] != 0 and grad.count_nonzero() == 1


# ----------------------------------------------------------------------------- hand-built cases
def test_roi_pool_paper_example(device):
    # A 4 x 4 map; the RoI covers cells 0..3 both ways (round(x2) - round(x1) + 1 = 4 cells),
    # 2 x 2 bins of 2 x 2 cells: each output is the max of one quadrant.
    x = torch.arange(16.0, device=device).view(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 3, 3]], dtype=torch.float32, device=device)
    out = roi_pool(x, rois, 2)
    assert out.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]


def test_roi_align_is_exact_on_a_linear_map(device):
    # Bilinear interpolation reproduces a linear function, so each bin of a 1 x 1 sampling grid
    # returns the value at its centre: here the x coordinate of the centre.
    x = torch.arange(10.0, device=device).expand(1, 1, 6, 10).contiguous()
    rois = torch.tensor([[0, 2.0, 1.0, 8.0, 4.0]], device=device)
    out = roi_align(x, rois, (1, 3), sampling_ratio=1, aligned=False)
    torch.testing.assert_close(out.flatten(), torch.tensor([3.0, 5.0, 7.0], device=device))
    out = roi_align(x, rois, (1, 3), sampling_ratio=1, aligned=True)   # box shifted by -0.5
    torch.testing.assert_close(out.flatten(), torch.tensor([2.5, 4.5, 6.5], device=device))


# ----------------------------------------------------------------------------- formats, loop, API
def test_list_of_boxes_equals_tensor_form(device):
    x, rois = features(device), random_rois(0.5, device=device)
    per_image = [rois[rois[:, 0] == n, 1:] for n in range(N)]
    for op in (roi_pool, roi_align):
        torch.testing.assert_close(op(x, per_image, 7, 0.5), op(x, rois, 7, 0.5))


@pytest.mark.parametrize("op", [roi_pool, roi_align, roi_pool_loop])
def test_no_boxes_give_an_empty_result(device, op):
    x = features(device).requires_grad_()
    for boxes in (torch.zeros(0, 5, device=device), [torch.zeros(0, 4, device=device)] * N, []):
        out = op(x, boxes, (2, 3), 0.5)
        assert out.shape == (0, C, 2, 3) and out.dtype == x.dtype and out.device == x.device
    out.sum().backward()
    assert torch.all(x.grad == 0)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
def test_roi_pool_loop_equals_roi_pool(spatial_scale):
    x, rois = features("cpu", relu=True), random_rois(spatial_scale, R=12)
    out, grad = values_and_grads(roi_pool, x, rois, (3, 4), spatial_scale)
    loop_out, loop_grad = values_and_grads(roi_pool_loop, x, rois, (3, 4), spatial_scale)
    torch.testing.assert_close(loop_out, out)
    torch.testing.assert_close(loop_grad, grad)


def test_modules_wrap_the_functions(device):
    x, rois = features(device), random_rois(0.5, device=device)
    torch.testing.assert_close(RoIPool(7, 0.5)(x, rois), roi_pool(x, rois, 7, 0.5))
    torch.testing.assert_close(RoIAlign((2, 3), 0.5, 2, True)(x, rois),
                               tv.RoIAlign((2, 3), 0.5, 2, True)(x, rois))
    assert "output_size=(7, 7)" in repr(RoIPool(7, 0.5))


def test_bad_input():
    x, rois = features("cpu"), random_rois(1.0, R=12)[:4]
    with pytest.raises(ValueError, match="input"):
        roi_pool(x[0], rois, 7)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(x, rois[:, 1:], 7)                          # [R, 4] needs a list
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        roi_align(x, [rois[:, 1:], rois], 7)
    with pytest.raises(ValueError, match="image indices"):
        roi_pool(x, rois + torch.tensor([5.0, 0, 0, 0, 0]), 7)
    with pytest.raises(ValueError, match="NaN"):
        roi_align(x, rois * float("nan"), 7)
    with pytest.raises(ValueError, match="output_size"):
        roi_pool(x, rois, (7, 0))
    with pytest.raises(ValueError, match="spatial_scale"):
        RoIAlign(7, 0.0, 2)(x, rois)
