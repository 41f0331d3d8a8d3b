"""The detectors: shapes of outputs, training losses, eval format, batching, errors, SVD."""
import math

import pytest
import torch
import torchvision

from frcnn_edu.models import (FasterRCNN, FastRCNN, RPNHead, TinyVGG, shapes_faster_rcnn,
                              shapes_rcnn, tiny_fc_head, tiny_vgg, warp_regions)
from frcnn_edu.data.batching import batch_images
from frcnn_edu.models.fast_rcnn import RoIHead

LOSS_NAMES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}


def small_model(**kw):
    torch.manual_seed(0)
    return shapes_faster_rcnn(pretrained=False, **kw)


def toy_batch(device="cpu"):
    images = [torch.rand(3, 96, 128, device=device), torch.rand(3, 120, 80, device=device)]
    targets = [dict(boxes=torch.tensor([[10., 12., 50., 60.], [60., 20., 100., 40.]], device=device),
                    labels=torch.tensor([1, 3], device=device)),
               dict(boxes=torch.tensor([[5., 5., 70., 100.]], device=device),
                    labels=torch.tensor([2], device=device))]
    return images, targets


def test_tiny_vgg_stride_and_channels():
    net = TinyVGG()
    out = net(torch.zeros(1, 3, 160, 144))
    assert out.shape == (1, net.out_channels, 10, 9)
    assert net.stride == 16


def test_torchvision_backbones_have_stride_16():
    from frcnn_edu.models import resnet_backbone, vgg16_backbone
    for net in (vgg16_backbone(), resnet_backbone("resnet18")):
        out = net(torch.zeros(1, 3, 64, 96))
        assert out.shape[1:] == (net.out_channels, 4, 6)


def test_rpn_head_layout_matches_grid_anchor_order():
    """Score of anchor a at (y, x) must land at index (y * W + x) * k + a."""
    head = RPNHead(8, 3)
    feats = torch.randn(1, 8, 4, 5)
    logits, deltas = head(feats)
    raw = head.cls_logits(torch.relu(head.conv(feats)))  # [1, k, H, W]
    assert logits.shape == (1, 60) and deltas.shape == (1, 60, 4)
    y, x, a = 2, 3, 1
    assert torch.equal(logits[0, (y * 5 + x) * 3 + a], raw[0, a, y, x])
    raw_d = head.bbox_pred(torch.relu(head.conv(feats))).view(1, 3, 4, 4, 5)
    assert torch.equal(deltas[0, (y * 5 + x) * 3 + a], raw_d[0, a, :, y, x])


def test_batch_images_pads_to_stride_and_keeps_sizes():
    batch, sizes = batch_images([torch.rand(3, 50, 70), torch.rand(3, 33, 20)], stride=16)
    assert batch.shape == (2, 3, 64, 80)
    assert sizes == [(50, 70), (33, 20)]
    assert batch[1, :, 33:, :].abs().sum() == 0 and batch[1, :, :, 20:].abs().sum() == 0


def test_training_returns_the_four_named_losses_and_all_get_gradients(device):
    model = small_model().to(device).train()
    images, targets = toy_batch(device)
    losses = model(images, targets)
    assert set(losses) == LOSS_NAMES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, part in [("backbone", model.backbone), ("rpn", model.rpn.head),
                       ("head", model.roi_heads)]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name


def test_eval_returns_torchvision_format_in_image_coordinates(device):
    model = small_model(box_score_thresh=0.0).to(device).eval()
    images, _ = toy_batch(device)
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores"}
        assert det["boxes"].shape[1] == 4 and det["labels"].dtype == torch.int64
        h, w = img.shape[-2:]
        if len(det["boxes"]):
            assert det["boxes"][:, 2].max() <= w and det["boxes"][:, 3].max() <= h
            assert det["labels"].min() >= 1 and det["labels"].max() < model.num_classes
            assert (det["scores"][:-1] >= det["scores"][1:]).all()  # batched NMS sorts by score


def test_stages_select_losses():
    model = small_model().train()
    images, targets = toy_batch()
    assert set(model(images, targets, stages="rpn")) == {"loss_objectness", "loss_rpn_box_reg"}
    assert set(model(images, targets, stages="detector")) == {"loss_classifier", "loss_box_reg"}


def test_rpn_alone_skips_the_proposal_layer_and_keeps_its_losses():
    """stages="rpn" in training needs no proposals: the RPN returns None for them, and the
    losses (same sampling seed) equal those computed next to the proposal layer."""
    model = small_model().train()
    images, targets = toy_batch()
    x, sizes = batch_images(images, model.backbone.stride)
    features = model.backbone(x)
    torch.manual_seed(1)
    boxes, scores, losses = model.rpn(features, sizes, targets)
    torch.manual_seed(1)
    none_boxes, none_scores, alone = model.rpn(features, sizes, targets, propose=False)
    assert none_boxes is None and none_scores is None and len(boxes) == 2
    assert losses.keys() == alone.keys() and all(torch.equal(losses[k], alone[k]) for k in losses)
    torch.manual_seed(1)
    assert torch.equal(model(images, targets, stages="rpn")["loss_objectness"], losses["loss_objectness"])


def test_image_without_objects_trains():
    model = small_model().train()
    images = [torch.rand(3, 64, 64)]
    targets = [dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))]
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_rpn_box_reg"] == 0


@pytest.mark.parametrize("bad, message", [
    (dict(boxes=torch.tensor([[10., 10., 5., 20.]]), labels=torch.tensor([1])), "degenerate"),
    (dict(boxes=torch.tensor([[1., 1., 5., 5.]]), labels=torch.tensor([9])), "labels"),
    (dict(boxes=torch.tensor([[1., 1., 5., 5.]]), labels=torch.tensor([0])), "labels"),
    (dict(boxes=torch.tensor([[1., 1., 5., 5.]])), "labels"),
])
def test_bad_targets_raise_before_any_step(bad, message):
    model = small_model().train()
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 32, 32)], [bad])


def test_single_image_tensor_is_rejected_with_a_hint():
    with pytest.raises(TypeError, match="list"):
        small_model().eval()(torch.rand(3, 32, 32))


def test_roi_align_switch_and_bad_pooler():
    model = small_model(pooler="roi_align").train()
    images, targets = toy_batch()
    assert set(model(images, targets)) == LOSS_NAMES
    with pytest.raises(ValueError, match="pooler"):
        small_model(pooler="max")


def test_compress_fc_truncated_svd_approximates_the_layers():
    torch.manual_seed(0)
    head = RoIHead(16, 4, representation_size=64)
    x = torch.randn(5, 16, 7, 7)
    full = head.fc(x)
    n_before = sum(p.numel() for p in head.fc.parameters())
    head.compress_fc(64)                         # full rank: the same function
    assert torch.allclose(head.fc(x), full, atol=1e-4)
    with pytest.raises(ValueError, match="already compressed"):
        head.compress_fc(8)
    torch.manual_seed(0)
    head = RoIHead(16, 4, representation_size=64)
    head.compress_fc((8, 8))
    n_after = sum(p.numel() for p in head.fc.parameters())
    assert n_after < n_before / 4
    with pytest.raises(ValueError, match="rank"):
        RoIHead(16, 4, representation_size=64).compress_fc(0)


def test_svd_keeps_best_rank_t_approximation():
    torch.manual_seed(0)
    head = RoIHead(4, 3, representation_size=32)
    w = head.fc[1].weight.detach().clone()
    head.compress_fc((5, 32))
    first, second = head.fc[1][0], head.fc[1][1]
    approx = second.weight @ first.weight
    s = torch.linalg.svdvals(w)
    assert torch.allclose(torch.linalg.matrix_norm(w - approx), s[5:].norm(), rtol=1e-3)


def test_fast_rcnn_with_external_proposals():
    torch.manual_seed(0)
    model = FastRCNN(TinyVGG(), 6, fc=tiny_fc_head(False)).train()
    images, targets = toy_batch()
    proposals = [torch.tensor([[0., 0., 40., 40.], [8., 10., 52., 58.]]),
                 torch.tensor([[0., 0., 60., 90.]])]
    losses = model(images, proposals, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    model.eval()
    out = model(images, proposals)
    assert len(out) == 2


def test_warp_regions_is_a_bilinear_resize():
    image = torch.arange(16.).view(1, 4, 4).expand(3, 4, 4).contiguous()
    crop = warp_regions(image, torch.tensor([[0., 0., 4., 4.]]), size=4, context=0)
    assert torch.allclose(crop[0], image, atol=1e-5)


def test_rcnn_regress_boxes_uses_the_regressor_of_each_box_class():
    model = shapes_rcnn(pretrained=False)
    image = torch.rand(3, 64, 64)
    boxes = torch.tensor([[10., 10., 30., 40.], [5., 20., 45., 50.]])
    labels = torch.tensor([2, 5])
    assert torch.allclose(model.regress_boxes(image, boxes, labels), boxes)   # zero regressors
    with torch.no_grad():
        model.regressor.bias[4 * 1:4 * 2] = torch.tensor([0.1, 0.0, 0.0, 0.0])   # class 2: tx = 0.1
        model.regressor.bias[4 * 4:4 * 5] = torch.tensor([0.0, 0.0, 0.0, 0.2])   # class 5: th = 0.2
    moved = model.regress_boxes(image, boxes, labels)
    assert torch.allclose(moved[0], boxes[0] + torch.tensor([2., 0., 2., 0.]))  # 0.1 * width 20
    h = 30 * math.exp(0.2)
    assert torch.allclose(moved[1], torch.tensor([5., 35 - h / 2, 45., 35 + h / 2]).clamp(max=64))
    # the same correction predict() applies to that box and class
    out = model.predict([image], [boxes[:1]])[0]
    assert torch.allclose(out["boxes"][out["labels"] == 2], moved[:1])
    with pytest.raises(ValueError, match="labels"):
        model.regress_boxes(image, boxes, torch.tensor([0, 1]))


def test_rcnn_predict_format():
    model = shapes_rcnn(pretrained=False)
    images = [torch.rand(3, 64, 64)]
    props = [torch.tensor([[0., 0., 30., 30.], [10., 10., 60., 50.]])]
    out = model.predict(images, props)
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_compare_rpn_head_with_torchvision_shapes():
    """Our head's flattening equals torchvision's concat_box_prediction_layers ordering."""
    from torchvision.models.detection.rpn import RPNHead as TVHead, concat_box_prediction_layers
    ours = RPNHead(8, 9)
    tv = TVHead(8, 9)
    tv.conv[0][0].load_state_dict(ours.conv.state_dict())
    tv.cls_logits.load_state_dict(ours.cls_logits.state_dict())
    tv.bbox_pred.load_state_dict(ours.bbox_pred.state_dict())
    feats = torch.randn(2, 8, 3, 4)
    logits, deltas = ours(feats)
    o, d = tv([feats])
    o, d = concat_box_prediction_layers(o, d)
    assert torch.allclose(logits.reshape(-1, 1), o, atol=1e-6)
    assert torch.allclose(deltas.reshape(-1, 4), d, atol=1e-6)


def test_tinyvgg_stride_8_dilates_conv5_and_keeps_the_weights():
    from frcnn_edu.models import TinyVGG
    s16, s8 = TinyVGG(), TinyVGG(stride=8)
    s8.load_state_dict(s16.state_dict())                        # the same parameters fit both
    x = torch.rand(1, 3, 96, 128)
    assert s16(x).shape == (1, 128, 6, 8) and s8(x).shape == (1, 128, 12, 16)
    convs = [m for m in s8 if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation for c in convs[-2:]] == [(2, 2)] * 2 and convs[-3].dilation == (1, 1)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in s8) == 3
    with pytest.raises(ValueError, match="stride"):
        TinyVGG(stride=4)


def test_stride_8_faster_rcnn_trains_and_detects_in_image_pixels():
    model = small_model(stride=8).train()
    assert model.backbone.stride == 8 and model.rpn.stride == 8
    images, targets = toy_batch()
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.backbone[-2].weight.grad.abs().sum() > 0        # conv5 learns
    model.eval()
    with torch.no_grad():
        out = model(images)
    for o, img in zip(out, images):
        h, w = img.shape[-2:]
        assert (o["boxes"][:, 2] <= w).all() and (o["boxes"][:, 3] <= h).all()


def test_image_scale_resizes_the_shorter_side_and_returns_the_factors():
    model = small_model(stride=8, image_scale=240)
    assert model.rpn.base_anchors.shape[0] == 9
    wh = model.rpn.base_anchors[:, 2:] - model.rpn.base_anchors[:, :2]
    square = wh[wh[:, 0] == wh[:, 1], 0].sort().values                # the ratio-1 anchors
    assert torch.allclose(square, torch.tensor([24., 48., 96.]))      # (16, 32, 64) x 240 / 160
    images, _ = toy_batch()                                          # 96 x 128 and 120 x 80
    resized, factors = model.resize(images)
    assert [tuple(r.shape[-2:]) for r in resized] == [(240, 320), (360, 240)]
    assert torch.allclose(factors[0], torch.tensor([2.5] * 4))
    assert torch.allclose(factors[1], torch.tensor([3.0] * 4))
    assert model.resize(images[:1])[0][0].shape == resized[0].shape
    unscaled = small_model(stride=8)
    same, ones = unscaled.resize(images)
    assert same[0] is images[0] and ones == [1.0, 1.0]


def test_image_scale_equals_resizing_by_hand_in_training_and_in_eval():
    """The resize layer changes where the pixels go, not the model: the same weights on images
    resized by hand (targets scaled too) give the same losses, proposals and detections."""
    images, targets = toy_batch()
    scaled = small_model(stride=8, image_scale=240)
    plain = small_model(stride=8, anchor_sizes=(24, 48, 96))
    plain.load_state_dict(scaled.state_dict())
    big, factors = scaled.resize(images)
    big_targets = [dict(t, boxes=t["boxes"] * f) for t, f in zip(targets, factors)]
    torch.manual_seed(1)
    a = scaled.train()(images, targets)
    torch.manual_seed(1)
    b = plain.train()(big, big_targets)
    for name in LOSS_NAMES:
        torch.testing.assert_close(a[name], b[name])
    props, _ = scaled.propose(images)
    big_props, _ = plain.propose(big)
    for p, q, f in zip(props, big_props, factors):
        torch.testing.assert_close(p, q / f)
    with torch.no_grad():
        da, db = scaled.eval()(images), plain.eval()(big)
    for x, y, f in zip(da, db, factors):
        torch.testing.assert_close(x["boxes"], y["boxes"] / f)
        assert torch.equal(x["labels"], y["labels"])


@pytest.mark.parametrize("bad", [0, -240, 240.0, "240"])
def test_bad_image_scale_names_the_argument(bad):
    with pytest.raises(ValueError, match="image_scale is the shorter side in pixels"):
        small_model(stride=8, image_scale=bad)


@pytest.mark.parametrize("image_scale", [None, 240])
def test_empty_image_is_named_before_resizing_or_convolving(image_scale):
    model = small_model(stride=8, image_scale=image_scale).eval()
    with pytest.raises(ValueError, match=r"images\[1\] is empty \(0 x 10 pixels\)"):
        model([torch.rand(3, 20, 20), torch.rand(3, 0, 10)])
