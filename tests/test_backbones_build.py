"""--backbone / --weights / --freeze (frcnn_edu.models.build): ResNet-18 trains from scratch on the
CPU, missing ImageNet weights fail fast with the way to get them (no network is touched: the
downloader is replaced), a bad weights file is named, frozen blocks keep their weights."""
import json
import time
import urllib.error

import pytest
import torch

from frcnn_edu import cli
from frcnn_edu.data import ShapesDataset, export_voc
from frcnn_edu.models import build
from frcnn_edu.models.backbones import PRETRAINED_TINY_BY_STRIDE
from frcnn_edu.models.build import WeightsError, build_faster_rcnn, cached_weights_path
from frcnn_edu.training import train


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty torch cache and a downloader that fails as it does offline (and records calls)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def offline(url, path):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(build, "_download", offline)
    return calls


def _params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_resnet18_from_scratch_trains_a_step_and_freeze_keeps_the_first_blocks(no_network):
    torch.manual_seed(0)
    model = build_faster_rcnn("resnet18", "none", num_classes=6, stride=16, image_scale=None)
    body = model.backbone
    frozen = {**_params(body[0]), **{f"layer1.{k}": v for k, v in _params(body[4]).items()}}
    later = _params(body[6])                                          # layer3
    hist = train(model, ShapesDataset("train", num_images=2), steps=1, optimizer="adam", lr=1e-3,
                 warmup=0, progress=False)
    assert len(hist) == 1 and all(torch.isfinite(torch.tensor(v)) for v in hist[0].values())
    now = {**_params(body[0]), **{f"layer1.{k}": v for k, v in _params(body[4]).items()}}
    assert all(torch.equal(now[k], v) for k, v in frozen.items())   # conv1, layer1: the paper's freeze
    assert any(not torch.equal(_params(body[6])[k], v) for k, v in later.items())
    assert not no_network                                             # "none" downloads nothing


def test_paper_freeze_for_vgg16_is_conv1_and_conv2():
    model = build_faster_rcnn("vgg16", "none", num_classes=3, stride=16, image_scale=600)
    convs = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [c.weight.requires_grad for c in convs] == [False] * 4 + [True] * 9  # conv3_1 and up train
    assert model.roi_heads.fc.out_features == 4096                    # VGG's fc6/fc7 widths
    from frcnn_edu.anchors import make_base_anchors
    assert torch.equal(model.rpn.base_anchors, make_base_anchors((128, 256, 512), (0.5, 1.0, 2.0)))


def test_freeze_option_on_tinyvgg_keeps_those_blocks_after_a_step():
    torch.manual_seed(0)
    model = build_faster_rcnn("tinyvgg", "imagenet", freeze=2, num_classes=6, stride=8,
                              pooler="roi_align", image_scale=240)
    convs = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    before = [c.weight.detach().clone() for c in convs]
    train(model, ShapesDataset("train", num_images=2), steps=1, optimizer="adam", lr=1e-3,
          warmup=0, progress=False)
    same = [torch.equal(c.weight, b) for c, b in zip(convs, before)]
    assert same[:2] == [True, True] and not any(same[2:])
    with pytest.raises(ValueError, match="freeze must be 0..5"):
        build_faster_rcnn("tinyvgg", "none", freeze=9, stride=8)


def test_imagenet_without_cache_or_network_fails_fast_naming_the_fix(no_network, tmp_path):
    start = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        build_faster_rcnn("resnet18", "imagenet", num_classes=6, stride=16)
    message = str(e.value)
    path = cached_weights_path("resnet18")
    assert str(tmp_path / "torch_home") in str(path)                  # TORCH_HOME moved the cache
    assert "ResNet18_Weights.IMAGENET1K_V1" in message and str(path) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "--weights none" in message and "URLError" in message
    assert no_network == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert time.perf_counter() - start < 10


def test_imagenet_weights_in_the_cache_are_used_without_a_download(no_network):
    import torchvision
    from torchvision.ops.misc import FrozenBatchNorm2d
    torch.manual_seed(1)
    net = torchvision.models.resnet18(norm_layer=FrozenBatchNorm2d)
    path = cached_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    model = build_faster_rcnn("resnet18", "imagenet", num_classes=6, stride=16)
    assert torch.equal(model.backbone[0].weight, net.conv1.weight) and not no_network
    assert torch.equal(model.backbone[6][0].conv1.weight, net.layer3[0].conv1.weight)


def test_weights_path_missing_wrong_keys_or_not_torch_is_named(tmp_path):
    with pytest.raises(WeightsError, match=r"--weights .*nope.pt: file not found"):
        build_faster_rcnn("resnet18", str(tmp_path / "nope.pt"), stride=16)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv9.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match=r"not the weights of torchvision's resnet18 \(missing "
                                           r"keys \['bn1.bias'.*unexpected \['conv9.weight'\]"):
        build_faster_rcnn("resnet18", str(wrong), stride=16)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a torch weights file"):
        build_faster_rcnn("resnet18", str(text), stride=16)
    with pytest.raises(WeightsError, match="not a TinyVGG weights file.*'features' and 'fc'"):
        build_faster_rcnn("tinyvgg", str(wrong), stride=8)
    with pytest.raises(ValueError, match="only tinyvgg offers stride 8"):
        build_faster_rcnn("resnet18", "none", stride=8)


def test_tinyvgg_weights_path_loads_that_file():
    torch.manual_seed(0)
    from_path = build_faster_rcnn("tinyvgg", str(PRETRAINED_TINY_BY_STRIDE[8]), stride=8)
    shipped = build_faster_rcnn("tinyvgg", "imagenet", stride=8)
    for (k, a), b in zip(from_path.backbone.state_dict().items(), shipped.backbone.state_dict().values()):
        assert torch.equal(a, b), k


def test_cli_backbone_and_weights(no_network, tmp_path, capsys):
    export_voc(ShapesDataset("test", num_images=2), tmp_path / "voc", "test")
    out = tmp_path / "run"
    flags = ["--backbone", "resnet18", "--train-images", "2", "--steps", "1", "--device", "cpu",
             "--eval-data", f"voc:{tmp_path / 'voc'}:test"]
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), *flags]) == 2          # default: imagenet
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and "--weights none" in err and not out.exists()
    assert cli.main(["train", "--out", str(out), "--weights", "none", *flags]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["backbone"] == "resnet18" and config["model"]["stride"] == 16
    assert config["weights"] == "none" and config["freeze"] == 2
    assert cli.main(["evaluate", str(out), "--data", f"voc:{tmp_path / 'voc'}:test",
                     "--device", "cpu"]) == 0                            # rebuilt from config.json
    assert cli.main(["train", "--out", str(tmp_path / "r2"), "--stride", "8", "--weights", "none",
                     *flags]) == 2
    assert "only tinyvgg offers stride 8" in capsys.readouterr().err
