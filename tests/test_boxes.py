"""frcnn_edu.boxes against torchvision.ops / BoxCoder (values and gradients) and hand cases."""
import math

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder

from frcnn_edu import boxes as B


def random_boxes(n, generator, size=100.0, max_wh=60.0, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_wh + 1.0
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def grid_boxes(n, generator):
    """Integer-valued boxes: many shared edges, identical boxes and zero-area boxes."""
    xy = torch.randint(0, 20, (n, 2), generator=generator).float()
    wh = torch.randint(0, 12, (n, 2), generator=generator).float()
    return torch.cat([xy, xy + wh], dim=1)


def assert_exact(actual, expected):
    """Bit-for-bit on the CPU (same float operations); close on CUDA (different kernels)."""
    if actual.device.type == "cpu":
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
    else:
        torch.testing.assert_close(actual, expected, equal_nan=True)


# ---------------------------------------------------------------- check_boxes, box_area

def test_check_boxes_accepts_and_returns(device):
    boxes = torch.tensor([[0.0, 0.0, 1.0, 2.0]], device=device)
    assert B.check_boxes(boxes) is boxes
    assert B.check_boxes(torch.zeros(0, 4, device=device)).shape == (0, 4)


@pytest.mark.parametrize("bad, error, words", [
    (torch.zeros(3, 5), ValueError, "gt_boxes must have shape [N, 4], got [3, 5]"),
    (torch.zeros(4), ValueError, "shape [N, 4]"),
    (torch.tensor([[0, 0, 1, 1]]), TypeError, "floating-point"),
    (torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, float("nan"), 1.0, 1.0]]), ValueError, "index 1"),
    (torch.tensor([[0.0, 0.0, 1.0, float("inf")]]), ValueError, "finite"),
    (torch.tensor([[0.0, 0.0, 1.0, 1.0], [0, 0, 1, 1], [5.0, 0.0, 5.0, 1.0]]), ValueError,
     "degenerate box at index 2"),
    (torch.tensor([[0.0, 3.0, 1.0, 1.0]]), ValueError, "degenerate box at index 0"),
])
def test_check_boxes_errors(bad, error, words):
    with pytest.raises(error, match="gt_boxes") as info:
        B.check_boxes(bad, name="gt_boxes")
    assert words in str(info.value)
    with pytest.raises(TypeError, match="torch.Tensor"):
        B.check_boxes([[0, 0, 1, 1]])


def test_box_area(device, generator):
    boxes = random_boxes(50, generator).to(device).requires_grad_()
    ref = boxes.detach().clone().requires_grad_()
    assert_exact(B.box_area(boxes), torchvision.ops.box_area(ref))
    grad = torch.randn(50, generator=generator).to(device)
    B.box_area(boxes).backward(grad)
    torchvision.ops.box_area(ref).backward(grad)
    assert_exact(boxes.grad, ref.grad)
    assert B.box_area(torch.zeros(0, 4, device=device)).shape == (0,)
    assert B.box_area(torch.tensor([[1.0, 2.0, 4.0, 6.0]])).item() == 12.0


# ---------------------------------------------------------------- box_iou

def test_box_iou_hand_case(device):
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]], device=device)
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [10.0, 0.0, 20.0, 10.0], [0.0, 0.0, 10.0, 10.0]], device=device)
    # overlap 5 x 5 = 25, union 100 + 100 - 25 = 175; touching edges: 0; identical: 1.
    assert_exact(B.box_iou(a, b), torch.tensor([[25 / 175, 0.0, 1.0]], device=device))


@pytest.mark.parametrize("n, m", [(1, 1), (30, 70), (200, 3)])
def test_box_iou_equals_torchvision(device, generator, n, m):
    for make in (random_boxes, grid_boxes):
        b1, b2 = make(n, generator).to(device), make(m, generator).to(device)
        assert_exact(B.box_iou(b1, b2), torchvision.ops.box_iou(b1, b2))


def test_box_iou_gradients_equal_torchvision(device, generator):
    # Integer boxes: shared edges make max/min ties and clamp at 0, where gradients are subtle.
    b1 = torch.cat([grid_boxes(40, generator), random_boxes(20, generator)]).to(device)
    b2 = torch.cat([grid_boxes(30, generator), random_boxes(10, generator)]).to(device)
    b1[:, 2:] += 1  # no zero-area boxes: 0 / 0 would make NaN gradients
    b2[:, 2:] += 1
    ours = [b.clone().requires_grad_() for b in (b1, b2)]
    theirs = [b.clone().requires_grad_() for b in (b1, b2)]
    grad = torch.randn(60, 40, generator=generator).to(device)
    B.box_iou(*ours).backward(grad)
    torchvision.ops.box_iou(*theirs).backward(grad)
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o.grad, t.grad, rtol=1e-6, atol=1e-7)


def test_box_iou_empty_and_dtypes(device):
    empty, some = torch.zeros(0, 4, device=device), torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 3, device=device)
    assert B.box_iou(empty, some).shape == (0, 3)
    assert B.box_iou(some, empty).shape == (3, 0)
    assert B.box_iou(empty, empty).device.type == device.type
    assert B.box_iou(some.double(), some.double()).dtype == torch.float64
    half = some.half()
    assert B.box_iou(half, half).dtype == torchvision.ops.box_iou(half, half).dtype == torch.float32


def test_box_iou_errors():
    with pytest.raises(ValueError, match=r"boxes2 must have shape \[N, 4\], got \[2, 5\]"):
        B.box_iou(torch.zeros(1, 4), torch.zeros(2, 5))
    with pytest.raises(TypeError, match="boxes1 must be a floating-point tensor"):
        B.box_iou(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 4))


# ---------------------------------------------------------------- encode / decode

def test_encode_hand_case(device):
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]], device=device)  # centre (5, 10), 10 x 20
    gt = torch.tensor([[5.0, 5.0, 25.0, 45.0]], device=device)  # centre (15, 25), 20 x 40
    expected = torch.tensor([[10 / 10, 15 / 20, math.log(2), math.log(2)]], device=device)
    torch.testing.assert_close(B.encode_boxes(anchor, gt), expected)
    weighted = B.encode_boxes(anchor, gt, weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(weighted, expected * torch.tensor([10.0, 10.0, 5.0, 5.0], device=device))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_equal_torchvision_with_gradients(device, generator, weights):
    ref, gt = random_boxes(40, generator).to(device), random_boxes(40, generator).to(device)
    coder = BoxCoder(weights)
    ours = [t.clone().requires_grad_() for t in (ref, gt)]
    theirs = [t.clone().requires_grad_() for t in (ref, gt)]
    d_ours = B.encode_boxes(ours[0], ours[1], weights)
    d_theirs = coder.encode_single(theirs[1], theirs[0])  # torchvision: (matched gt, anchors)
    assert_exact(d_ours, d_theirs)
    grad = torch.randn(40, 4, generator=generator).to(device)
    d_ours.backward(grad)
    d_theirs.backward(grad)
    for o, t in zip(ours, theirs):
        assert_exact(o.grad, t.grad)
    # decode, class-specific deltas [N, 4 * K] included; round trip back to the gt boxes
    for k in (1, 3):
        deltas = (torch.randn(40, 4 * k, generator=generator) * 2).to(device).requires_grad_()
        deltas_tv = deltas.detach().clone().requires_grad_()
        ref_o, ref_t = ref.clone().requires_grad_(), ref.clone().requires_grad_()
        out, out_tv = B.decode_boxes(ref_o, deltas, weights), coder.decode_single(deltas_tv, ref_t)
        assert out.shape == (40, 4 * k)
        assert_exact(out, out_tv)
        grad = torch.randn(40, 4 * k, generator=generator).to(device)
        out.backward(grad)
        out_tv.backward(grad)
        assert_exact(deltas.grad, deltas_tv.grad)
        assert_exact(ref_o.grad, ref_t.grad)
    back = B.decode_boxes(ref, B.encode_boxes(ref, gt, weights), weights)
    torch.testing.assert_close(back, gt, rtol=1e-5, atol=1e-4)


def test_decode_class_specific_layout_and_clamp(device):
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]], device=device)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.0, math.log(2), 0.0]], device=device)
    out = B.decode_boxes(ref, deltas).view(1, 2, 4)  # class k in columns 4k .. 4k+3
    torch.testing.assert_close(out[0, 0], ref[0])
    torch.testing.assert_close(out[0, 1], torch.tensor([5.0, 0.0, 25.0, 10.0], device=device))
    huge = B.decode_boxes(ref, torch.tensor([[0.0, 0.0, 50.0, 50.0]], device=device))
    torch.testing.assert_close(huge[0, 2] - huge[0, 0], torch.tensor(10 * 1000 / 16, device=device))
    unclamped = B.decode_boxes(ref, torch.tensor([[0.0, 0.0, 5.0, 0.0]], device=device), clamp=math.inf)
    expected = torch.tensor(10 * math.exp(5), device=device)
    torch.testing.assert_close(unclamped[0, 2] - unclamped[0, 0], expected)


def test_encode_decode_empty_and_errors(device):
    empty = torch.zeros(0, 4, device=device)
    assert B.encode_boxes(empty, empty).shape == (0, 4)
    assert B.decode_boxes(empty, torch.zeros(0, 12, device=device)).shape == (0, 12)
    with pytest.raises(ValueError, match="same N"):
        B.encode_boxes(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"deltas must have shape \[N, 4\] or \[N, 4 \* K\], got \[2, 5\]"):
        B.decode_boxes(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="weights"):
        B.encode_boxes(torch.zeros(2, 4), torch.zeros(2, 4), weights=(1.0, 1.0))


# ---------------------------------------------------------------- clip, small boxes

def test_clip_boxes_equals_torchvision(device, generator):
    boxes = (random_boxes(60, generator, size=140.0) - 20.0).to(device)
    assert_exact(B.clip_boxes(boxes, (90, 120)), torchvision.ops.clip_boxes_to_image(boxes, (90, 120)))
    batch = boxes.view(3, 20, 4)  # [..., 4] as torchvision
    assert_exact(B.clip_boxes(batch, (90, 120)), torchvision.ops.clip_boxes_to_image(batch, (90, 120)))
    clipped = B.clip_boxes(torch.tensor([[-5.0, -5.0, 200.0, 50.0]], device=device), (40, 100))
    assert clipped.tolist() == [[0.0, 0.0, 100.0, 40.0]]  # (height, width) = (40, 100)
    assert B.clip_boxes(torch.zeros(0, 4, device=device), (5, 5)).shape == (0, 4)
    with pytest.raises(ValueError, match="image_size"):
        B.clip_boxes(boxes, (1, 2, 3))


def test_remove_small_boxes_equals_torchvision(device, generator):
    boxes = grid_boxes(100, generator).to(device)
    for min_size in (0.0, 1.0, 4.0):
        keep = B.remove_small_boxes(boxes, min_size)
        assert keep.dtype == torch.int64
        assert torch.equal(keep, torchvision.ops.remove_small_boxes(boxes, min_size))
    assert B.remove_small_boxes(torch.zeros(0, 4, device=device), 1.0).shape == (0,)


# ---------------------------------------------------------------- nms

def test_nms_hand_chain(device):
    """A overlaps B, B overlaps C, A does not overlap C: greedy keeps A and C (B is gone)."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10], [50, 50, 60, 60]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1], device=device)
    assert B.nms(boxes, scores, 0.3).tolist() == [0, 2, 3]  # IoU(A, B) = 0.43, IoU(A, C) = 0.11
    assert B.nms(boxes, scores, 0.5).tolist() == [0, 1, 2, 3]
    assert B.nms(boxes, torch.tensor([0.1, 0.8, 0.7, 0.9], device=device), 0.3).tolist() == [3, 1]


def test_nms_long_chain_crosses_blocks(device):
    """600 boxes, each overlapping only its neighbours: greedy keeps every other box. The chain
    of suppressions is longer than one block of the blocked implementation."""
    x = torch.arange(600, dtype=torch.float32, device=device) * 6.0
    boxes = torch.stack([x, torch.zeros_like(x), x + 10, torch.full_like(x, 10.0)], dim=1)
    scores = torch.linspace(1.0, 0.0, 600, device=device)
    keep = B.nms(boxes, scores, 0.2)  # neighbours: IoU 4 / 16 = 0.25
    assert keep.tolist() == list(range(0, 600, 2))
    assert torch.equal(keep.cpu(), torchvision.ops.nms(boxes.cpu(), scores.cpu(), 0.2))


@pytest.mark.parametrize("n", [1, 10, 300, 1500])
def test_nms_equals_torchvision(device, generator, n):
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        boxes = random_boxes(n, generator, size=400.0, max_wh=120.0)
        scores = torch.rand(n, generator=generator)
        expected = torchvision.ops.nms(boxes.to(device), scores.to(device), threshold).cpu()
        keep = B.nms(boxes.to(device), scores.to(device), threshold)
        assert keep.dtype == torch.int64 and keep.device.type == device.type
        assert torch.equal(keep.cpu(), expected)


def test_nms_ties_and_degenerate_boxes_like_torchvision_cpu(device, generator):
    """Equal scores: kept in input order (stable sort), as torchvision's CPU kernel does.
    Identical boxes, shared edges and zero-area boxes (IoU 0 / 0 = NaN: never suppresses)."""
    for trial in range(30):
        n = 5 + 40 * trial
        boxes = grid_boxes(n, generator)
        scores = torch.randint(0, 4, (n,), generator=generator).float()
        threshold = float(torch.rand(1, generator=generator))
        dtype = torch.float64 if trial % 3 == 0 else torch.float32
        expected = torchvision.ops.nms(boxes.to(dtype), scores.to(dtype), threshold)
        keep = B.nms(boxes.to(device, dtype), scores.to(device, dtype), threshold)
        assert torch.equal(keep.cpu(), expected), trial
    ties = torch.tensor([[0.0, 0, 10, 10]] * 3, device=device)
    assert B.nms(ties, torch.ones(3, device=device), 0.5).tolist() == [0]
    zero = torch.tensor([[5.0, 5, 5, 5]] * 2, device=device)
    assert B.nms(zero, torch.tensor([1.0, 2.0], device=device), 0.5).tolist() == [1, 0]


def test_readable_nms_loop_gives_the_kernels_answer(device, generator):
    """boxes.nms_loop (the algorithm as written) and boxes.nms (the blocked kernel) agree with
    torchvision on random boxes, ties, identical, edge-sharing and zero-area boxes."""
    for trial in range(12):
        n = 3 + 11 * trial
        boxes = (grid_boxes(n, generator) if trial % 2 else
                 random_boxes(n, generator, size=200.0, max_wh=80.0)).to(device)
        scores = torch.randint(0, 4, (n,), generator=generator).float().to(device)
        threshold = float(torch.rand(1, generator=generator))
        expected = torchvision.ops.nms(boxes.cpu(), scores.cpu(), threshold)
        assert torch.equal(B.nms_loop(boxes, scores, threshold).cpu(), expected), trial
        assert torch.equal(B.nms(boxes, scores, threshold).cpu(), expected), trial
    empty = B.nms_loop(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64


def test_nms_empty_and_errors(device):
    keep = B.nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64 and keep.device.type == device.type
    with pytest.raises(ValueError, match=r"scores must have shape \[2\]"):
        B.nms(torch.zeros(2, 4), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        B.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([float("nan")]), 0.5)
    with pytest.raises(ValueError, match="boxes must have shape"):
        B.nms(torch.zeros(2, 3), torch.zeros(2), 0.5)


def test_batched_nms(device, generator):
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.7], device=device)
    # same category: box 1 is suppressed by box 0; box 2 is alone in its category
    assert B.batched_nms(boxes, scores, torch.tensor([0, 0, 1], device=device), 0.5).tolist() == [0, 2]
    for n in (20, 400, 1200):  # torchvision uses its per-category loop above 1000 boxes
        boxes = random_boxes(n, generator, size=300.0, max_wh=100.0)
        scores, idxs = torch.rand(n, generator=generator), torch.randint(0, 5, (n,), generator=generator)
        expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
        keep = B.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5)
        assert torch.equal(keep.cpu(), expected)
    empty = B.batched_nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                          torch.zeros(0, dtype=torch.int64, device=device), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    with pytest.raises(ValueError, match="idxs"):
        B.batched_nms(boxes, scores, idxs[:-1], 0.5)


@pytest.mark.parametrize("max_kept", [1, 7, 64, 65, 300, 2000, 5000])
def test_nms_max_kept_is_the_first_of_the_full_answer(device, generator, max_kept):
    """Stopping early gives torchvision's first max_kept indices, across block boundaries
    (64 is the first block), and all of them when fewer survive."""
    boxes = random_boxes(3000, generator, size=600.0, max_wh=80.0).to(device)
    scores = torch.rand(3000, generator=generator).to(device)
    expected = torchvision.ops.nms(boxes.cpu(), scores.cpu(), 0.7)
    assert len(expected) > 300  # so that early stopping is exercised
    assert torch.equal(B.nms(boxes, scores, 0.7, max_kept=max_kept).cpu(), expected[:max_kept])
    idxs = torch.randint(0, 4, (3000,), generator=generator).to(device)
    full = torchvision.ops.batched_nms(boxes.cpu(), scores.cpu(), idxs.cpu(), 0.5)
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.5, max_kept=max_kept).cpu(), full[:max_kept])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_nms_max_kept_errors(bad):
    boxes, scores = torch.tensor([[0.0, 0, 1, 1]]), torch.ones(1)
    with pytest.raises(ValueError, match="max_kept must be a positive int"):
        B.nms(boxes, scores, 0.5, max_kept=bad)
    with pytest.raises(ValueError, match="max_kept must be a positive int"):
        B.batched_nms(boxes, scores, torch.zeros(1, dtype=torch.int64), 0.5, max_kept=bad)


def test_nms_result_does_not_depend_on_device(device, generator):
    boxes, scores = grid_boxes(500, generator), torch.randint(0, 5, (500,), generator=generator).float()
    assert torch.equal(B.nms(boxes.to(device), scores.to(device), 0.4).cpu(), B.nms(boxes, scores, 0.4))
