"""The shipped "ImageNet" stand-in: TinyVGG pre-trained to classify shapes (frcnn_edu.training.pretrain).

The full command takes about 8 minutes on 2 cores at stride 16 (stride 8 took 14 on one core),
too long for `make test`; it runs when FRCNN_EDU_SLOW=1 (`make test-slow`) and must reproduce
the shipped validation accuracy of each stride's weights.
The quick tests check the regions, one training step, BN folding, the saved file's format and
that the shipped weights load.
"""
import json
import os

import pytest
import torch

from frcnn_edu.boxes import box_iou
from frcnn_edu.models import tiny_fc_head, tiny_vgg
from frcnn_edu.models.backbones import PRETRAINED_TINY_BY_STRIDE, fold_batch_norm, load_pretrained_tiny
from frcnn_edu.training.pretrain import (RegionClassifier, _save, _training_batch, jitter_boxes,
                                         make_regions, pretrain, region_accuracy)

SHIPPED = {stride: json.loads(path.with_suffix(".json").read_text())
           for stride, path in PRETRAINED_TINY_BY_STRIDE.items()}


def test_regions_are_the_objects_and_background_boxes():
    images, regions, labels = make_regions(4, background_per_image=2)
    assert images.shape == (4, 3, 160, 160) and images.dtype == torch.uint8
    for boxes, lab in zip(regions, labels):
        assert len(boxes) == len(lab) and (lab == 0).sum() == 2 and (lab > 0).sum() >= 1
        fg, bg = boxes[lab > 0], boxes[lab == 0]
        assert box_iou(bg, fg).max() <= 0.1                      # background touches no object
    again = make_regions(4, background_per_image=2)
    assert torch.equal(images, again[0]) and all(map(torch.equal, regions, again[1]))


def test_training_batch_adds_jittered_objects_and_flips_boxes_with_the_image():
    images, regions, labels = make_regions(2)
    x, rois, y = _training_batch(images, regions, labels, [0, 1], torch.Generator().manual_seed(0))
    n_fg = sum(int((lab > 0).sum()) for lab in labels)
    assert x.shape == (2, 3, 160, 160) and len(y) == sum(map(len, labels)) + n_fg
    assert sum(map(len, rois)) == len(y)
    for boxes, lab in zip(rois, labels):                         # flipped or not, still objects
        k = int((lab > 0).sum())
        assert box_iou(boxes[len(lab):], boxes[:k]).diag().min() > 0.5


def test_jitter_moves_each_side_by_at_most_the_fraction():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]]).repeat(500, 1)
    moved = jitter_boxes(boxes, torch.Generator().manual_seed(0), 0.1)
    limit = torch.tensor([4.0, 2.0, 4.0, 2.0])
    assert ((moved - boxes).abs() <= limit + 1e-5).all() and (moved != boxes).any()


def test_one_pretraining_step_lowers_the_loss_on_its_batch():
    torch.manual_seed(0)
    images, regions, labels = make_regions(4)
    model = RegionClassifier(6)
    x, rois, y = _training_batch(images, regions, labels, range(4), torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x, rois), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert 0.0 <= region_accuracy(model, images, regions, labels) <= 1.0


@pytest.mark.parametrize("stride", [16, 8])
def test_fold_batch_norm_gives_the_same_outputs_in_a_plain_tinyvgg(stride):
    torch.manual_seed(0)
    model = RegionClassifier(6, stride=stride).features
    for m in model.modules():                                    # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    plain = fold_batch_norm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert plain.stride == stride and set(plain.state_dict()) == set(tiny_vgg().state_dict())
    x = torch.randn(2, 3, 48, 64)
    torch.testing.assert_close(plain(x), model(x), atol=1e-4, rtol=1e-4)


def test_saved_weights_load_into_the_detector_parts(tmp_path):
    model = RegionClassifier(6)
    model.features = fold_batch_norm(model.features.eval())
    _save(model, tmp_path / "w.pt", {"val_accuracy": 0.0})
    backbone, fc = tiny_vgg(True, tmp_path / "w.pt"), tiny_fc_head(True, tmp_path / "w.pt")
    want = model.features.state_dict()["0.weight"].half().float()
    assert torch.equal(backbone.state_dict()["0.weight"], want)
    assert json.loads((tmp_path / "w.json").read_text()) == {"val_accuracy": 0.0}
    assert fc(torch.zeros(1, 128, 7, 7)).shape == (1, 256)


@pytest.mark.parametrize("stride", [16, 8])
def test_shipped_weights_and_their_record(stride):
    record = SHIPPED[stride]
    assert record["seed"] == 2014 and record["stride"] == stride and record["val_accuracy"] >= 0.9
    assert PRETRAINED_TINY_BY_STRIDE[stride].name in record["command"]
    out = tiny_vgg(pretrained=True, stride=stride)(torch.zeros(1, 3, 160, 160))
    assert out.shape == (1, 128, 160 // stride, 160 // stride)


def test_each_stride_loads_its_own_weights_backbone_and_fc_alike():
    w16, w8 = load_pretrained_tiny(stride=16), load_pretrained_tiny(stride=8)
    assert not torch.equal(w16["features"]["0.weight"], w8["features"]["0.weight"])
    assert torch.equal(tiny_vgg(True, stride=8).state_dict()["0.weight"], w8["features"]["0.weight"])
    fc8 = tiny_fc_head(True, stride=8).state_dict()
    assert all(torch.equal(fc8[k], w8["fc"][k]) for k in fc8)


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain --stride 8 --out"):
        tiny_vgg(True, tmp_path / "none.pt", stride=8)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FRCNN_EDU_SLOW") != "1",
                    reason="8-15 minutes each: run with FRCNN_EDU_SLOW=1 (make test-slow)")
@pytest.mark.parametrize("stride", [16, 8])
def test_pretrain_command_reproduces_the_shipped_accuracy(tmp_path, stride):
    record = SHIPPED[stride]
    _, metrics = pretrain(out=tmp_path / "w.pt", seed=record["seed"], epochs=record["epochs"],
                          stride=stride, progress=False)
    assert metrics["train_regions"] == record["train_regions"]
    assert metrics["val_regions"] == record["val_regions"]
    assert abs(metrics["val_accuracy"] - record["val_accuracy"]) <= 0.03
