"""Training loop, schemes, checkpoints, resume, NaN handling, R-CNN fitting, the CLI."""
import json

import pytest
import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import shapes_faster_rcnn, shapes_rcnn
from frcnn_edu.training import load_checkpoint, train, train_four_step, train_joint
from frcnn_edu.training.loop import epoch_order, lr_at
from frcnn_edu.training.rcnn_fit import fit_rcnn, fit_regressors, fit_svms, ridge


def tiny_data(n=4):
    return ShapesDataset("train", num_images=n, image_size=(64, 64), scale_range=(16, 40))


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return shapes_faster_rcnn(pretrained=False, rpn_pre_nms_top_n=(200, 100),
                              rpn_post_nms_top_n=(50, 20))


def test_lr_schedule_warmup_and_drop():
    assert lr_at(0, 0.0, 0.1, 10, (0.75,)) == pytest.approx(0.01)
    assert lr_at(50, 0.5, 0.1, 10, (0.75,)) == pytest.approx(0.1)
    assert lr_at(75, 0.75, 0.1, 10, (0.75,)) == pytest.approx(0.01)  # the drop point itself
    assert lr_at(80, 0.8, 0.1, 10, (0.5, 0.75)) == pytest.approx(0.001)


def test_epoch_order_is_fixed_by_seed_and_epoch():
    assert torch.equal(epoch_order(10, 0, 3), epoch_order(10, 0, 3))
    assert not torch.equal(epoch_order(10, 0, 3), epoch_order(10, 0, 4))


def test_history_records_every_step_and_named_losses():
    hist = train(tiny_model(), tiny_data(), steps=3, progress=False)
    assert [h["step"] for h in hist] == [1, 2, 3]
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss",
            "lr", "time", "epoch"} <= set(hist[0])


def test_budget_must_be_given_once():
    with pytest.raises(ValueError, match="exactly one budget"):
        train(tiny_model(), tiny_data(), steps=2, epochs=1, progress=False)


def test_minutes_budget_plans_steps_from_measured_speed(monkeypatch, fake_clock):
    from frcnn_edu.training import loop
    monkeypatch.setattr(loop, "time", fake_clock)

    def paced(model, images, targets):                 # 1/32 s a step on the test's clock (exact in binary)
        fake_clock.advance(0.03125)
        return {"loss_dummy": next(model.parameters()).sum() * 0.0 + 1.0}

    # a 0.12 s budget: the 4th step ends at 0.125 s, past it
    hist = train(tiny_model(), tiny_data(), minutes=0.002, calibration_steps=2, forward=paced,
                 progress=False)
    assert len(hist) == 4
    assert hist[-1]["time"] == 0.125


def test_interrupted_run_resumes_without_repeating_finished_epochs(tmp_path):
    data = tiny_data(4)                                 # 2 steps per epoch, 3 epochs
    calls = []

    def interrupted_at_step_4(model, images, targets):
        calls.append(1)
        if len(calls) == 4:                             # in the middle of epoch 1
            raise KeyboardInterrupt
        return model(images, targets)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), data, epochs=3, forward=interrupted_at_step_4, progress=False, out=tmp_path)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 1 and state["step"] == 2   # the last finished epoch

    calls.clear()
    counting = lambda model, images, targets: calls.append(1) or model(images, targets)  # noqa: E731
    resumed = tiny_model(seed=1)                        # other init: the checkpoint must load
    hist = train(resumed, data, epochs=3, forward=counting, progress=False, out=tmp_path)
    assert len(calls) == 4                              # epochs 1 and 2 only
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert [h["epoch"] for h in hist] == [0, 0, 1, 1, 2, 2]

    calls.clear()
    done = tiny_model(seed=2)
    again = train(done, data, epochs=3, forward=counting, progress=False, out=tmp_path)
    assert calls == [] and len(again) == 6              # finished: loads and returns at once
    assert all(torch.equal(a, b) for a, b in zip(done.state_dict().values(),
                                                  resumed.state_dict().values()))


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    data = tiny_data(4)
    full = tiny_model()
    train(full, data, steps=4, progress=False, warmup=0)
    part = tiny_model()
    (tmp_path / "a").mkdir()
    train(part, data, steps=4, progress=False, warmup=0, out=tmp_path / "a")
    again = tiny_model(seed=5)
    train(again, data, steps=4, progress=False, warmup=0, out=tmp_path / "a")
    for a, b in zip(full.state_dict().values(), part.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(part.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_loss_stops_training_naming_step_and_loss():
    model = tiny_model()

    def forward(m, images, targets):
        losses = m(images, targets)
        losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
        return losses
    with pytest.raises(FloatingPointError, match=r"step 0: loss_box_reg is nan"):
        train(model, tiny_data(), steps=2, forward=forward, progress=False)


def test_nan_weights_stop_training_with_the_step():
    model = tiny_model()
    with torch.no_grad():
        model.rpn.head.conv.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 0"):
        train(model, tiny_data(), steps=2, progress=False)


def test_bad_dataset_targets_fail_before_the_first_step():
    class Bad(torch.utils.data.Dataset):
        num_classes = 6

        def __len__(self):
            return 2

        def __getitem__(self, i):
            boxes = torch.tensor([[10., 10., 5., 20.]]) if i == 1 else torch.tensor([[1., 1., 9., 9.]])
            return torch.rand(3, 32, 32), dict(boxes=boxes, labels=torch.tensor([1]))
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="dataset item 1"):
        train_joint(model, Bad(), steps=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_four_step_training_runs_and_shares_conv_layers(tmp_path):
    model, hist = train_four_step(tiny_model, tiny_data(), steps=8, out=tmp_path, progress=False)
    assert list(hist) == ["1_rpn", "2_detector", "3_rpn", "4_detector"]
    assert set(hist["1_rpn"][0]) >= {"loss_objectness", "loss_rpn_box_reg"}
    assert "loss_classifier" not in hist["1_rpn"][0] and "loss_objectness" not in hist["2_detector"][0]
    for stage in ("step1_rpn", "step2_detector", "step3_rpn", "step4_detector"):
        assert (tmp_path / stage / "checkpoint.pt").exists()
    # steps 3 and 4 froze the shared layers: the backbone equals step 2's
    step2 = tiny_model()
    load_checkpoint(tmp_path / "step2_detector", step2)
    for a, b in zip(model.backbone.state_dict().values(), step2.backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert all(p.requires_grad for p in model.parameters())
    model.eval()
    out = model([torch.rand(3, 64, 64)])
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_step2_proposals_are_the_rpns_computed_once_per_image_and_flip_with_it():
    from frcnn_edu.data.transforms import RandomHorizontalFlip
    from frcnn_edu.training.schemes import RPNProposals
    proposer, data = tiny_model().eval(), tiny_data()
    calls = []
    propose = proposer.propose
    proposer.propose = lambda images, **kw: calls.append(1) or propose(images, **kw)
    with_props = RPNProposals(data, proposer)
    image, target = with_props[1]
    expected, _ = propose([image], train_settings=True)  # the training top-N
    assert torch.equal(target["proposals"], expected[0]) and len(expected[0]) > 20
    assert not target["proposals"].requires_grad
    assert torch.equal(with_props[1][1]["proposals"], expected[0]) and len(calls) == 1  # kept
    flipped_image, flipped = RandomHorizontalFlip(1.0)(*with_props[1])
    assert torch.equal(flipped["proposals"][:, [2, 0]], 64 - target["proposals"][:, [0, 2]])
    assert torch.equal(with_props[1][1]["proposals"], expected[0])  # the kept copy is not flipped


def test_propose_builds_no_graph_even_in_training_mode():
    model = tiny_model().train()
    proposals, scores = model.propose([torch.rand(3, 64, 64)], train_settings=True)
    assert proposals[0].grad_fn is None and scores[0].grad_fn is None and model.training


def test_svm_with_hard_negatives_separates_two_clusters():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(20, 5, generator=g) + 3
    neg = torch.randn(500, 5, generator=g) - 3
    feats = torch.cat([pos, neg])
    ious = torch.cat([torch.ones(20, 1), torch.zeros(500, 1)])
    w, b = fit_svms(feats, ious, initial_negatives=10, generator=g)
    scores = feats @ w[0] + b[0]
    assert (scores[:20] > 0).all() and (scores[20:] < 0).all()


def test_ridge_regressor_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    true = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = x @ true + 0.5
    w, b = fit_regressors(x, y, torch.ones(200, dtype=torch.int64), 2, lam=1e-6)
    assert torch.allclose(w.T, true, atol=1e-4) and torch.allclose(b, torch.full((4,), 0.5,
                                                                               dtype=torch.float64), atol=1e-4)


def test_ridge_primal_and_dual_forms_agree():
    """Fewer samples than features (pool5: 6272 values, a few hundred boxes) uses the M x M form."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 80, generator=g, dtype=torch.float64)
    y = torch.randn(30, 4, generator=g, dtype=torch.float64)
    primal = torch.linalg.solve(x.T @ x + 7.0 * torch.eye(80, dtype=torch.float64), x.T @ y)
    assert torch.allclose(ridge(x, y, 7.0), primal, atol=1e-10)          # dual form (30 < 80)
    tall = torch.cat([x, x])                                               # 60 < 80: still dual
    wide = torch.cat([x] * 3)                                              # 90 >= 80: primal form
    for xs, ys in ((tall, torch.cat([y, y])), (wide, torch.cat([y] * 3))):
        direct = torch.linalg.solve(xs.T @ xs + 7.0 * torch.eye(80, dtype=torch.float64), xs.T @ ys)
        assert torch.allclose(ridge(xs, ys, 7.0), direct, atol=1e-10)


def test_fit_rcnn_end_to_end_on_gt_jittered_proposals():
    data = tiny_data(3)
    proposals = []
    for i in range(len(data)):
        gt = data[i][1]["boxes"]
        jitter = torch.cat([gt + 2, gt - 1, torch.tensor([[0., 0., 20., 20.], [40., 40., 63., 63.]])])
        proposals.append(jitter.clamp(0, 64))
    model = fit_rcnn(shapes_rcnn(pretrained=False), data, proposals, progress=False)
    out = model.predict([data[0][0]], [proposals[0]])
    assert set(out[0]) == {"boxes", "labels", "scores"}
    assert model.svm.weight.abs().sum() > 0


def test_cli_train_evaluate_detect(tmp_path, monkeypatch, capsys):
    from frcnn_edu import cli
    from frcnn_edu.models import recipes
    class Small(ShapesDataset):
        def __init__(self, split, num_images=None):
            super().__init__(split, num_images=4, image_size=(64, 64))
    monkeypatch.setattr(cli, "ShapesDataset", Small)
    monkeypatch.setattr(recipes, "shapes_faster_rcnn", lambda pretrained=True, **kw: tiny_model())
    out = tmp_path / "run"
    cli.main(["train", "--method", "joint", "--out", str(out), "--minutes", "0.01", "--device", "cpu"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mAP", "ap", "images_per_second", "train_images_per_second"} <= set(metrics)
    capsys.readouterr()
    cli.main(["evaluate", str(out), "--device", "cpu"])
    evaluated = json.loads(capsys.readouterr().out)    # the saved model, re-scored on the test split
    assert evaluated["mAP"] == metrics["mAP"] and evaluated["ap"] == metrics["ap"]
    from PIL import Image
    img = tmp_path / "img.png"
    Image.fromarray((ShapesDataset("test", 1, image_size=(64, 64)).get_raw(0))).save(img)
    cli.main(["detect", str(out), str(img), "--save", str(tmp_path / "det.png"), "--device", "cpu"])
    assert (tmp_path / "det.png").exists()


@pytest.mark.parametrize("flags, want", [
    ([], dict(stride=8, pooler="roi_align", optimizer="adam", lr=0.0005, image_scale=240)),  # fast
    (["--paper"], dict(stride=16, pooler="roi_pool", optimizer="sgd", lr=0.01, image_scale=None)),
    (["--stride", "16", "--lr", "0.02", "--image-scale", "none"],
     dict(stride=16, pooler="roi_align", optimizer="adam", lr=0.02, image_scale=None)),
    (["--image-scale", "320"], dict(stride=8, pooler="roi_align", optimizer="adam", lr=0.0005,
                                    image_scale=320)),
])
def test_cli_records_and_rebuilds_its_settings(tmp_path, monkeypatch, flags, want):
    from frcnn_edu import cli
    from frcnn_edu.models import recipes
    class Small(ShapesDataset):
        def __init__(self, split, num_images=None):
            super().__init__(split, num_images=4, image_size=(64, 64))
    built, used = [], []
    def fake(pretrained=True, **kw):
        built.append(kw)
        return tiny_model()
    def fake_joint(model, data, **kw):
        used.append(kw)
        return train_joint(model, data, **kw)
    monkeypatch.setattr(cli, "ShapesDataset", Small)
    monkeypatch.setattr(recipes, "shapes_faster_rcnn", fake)
    monkeypatch.setattr(cli, "train_joint", fake_joint)
    out = tmp_path / "run"
    cli.main(["train", "--out", str(out), "--minutes", "0.01", "--device", "cpu", *flags])
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == want["lr"] and config["optimizer"] == want["optimizer"]
    assert used[0]["lr"] == want["lr"] and used[0]["optimizer"] == want["optimizer"]
    assert config["model"]["pooler"] == want["pooler"] and config["model"]["stride"] == want["stride"]
    recipes.load_trained(out)
    assert [(kw["pooler"], kw["stride"]) for kw in built] == [(want["pooler"], want["stride"])] * 2
    assert [kw["image_scale"] for kw in built] == [want["image_scale"]] * 2


def test_adam_option_trains_and_a_bad_optimizer_is_named():
    data = tiny_data(2)
    model = tiny_model()
    before = model.roi_heads.cls_score.weight.detach().clone()
    history = train(model, data, steps=2, optimizer="adam", lr=1e-3, progress=False)
    assert len(history) == 2 and not torch.equal(before, model.roi_heads.cls_score.weight)
    with pytest.raises(ValueError, match="optimizer"):
        train(tiny_model(), data, steps=1, optimizer="rmsprop", progress=False)


def test_progress_bar_estimate_uses_the_steady_step_time():
    from frcnn_edu.training.loop import _estimate_total
    assert _estimate_total(1.0, 10, 10.0, (0, 0.0)) == 60      # 1 s per step: 50 s left = 50 steps
    assert _estimate_total(1.0, 100, 28.0, (10, 10.0)) == 260  # then 0.2 s per step: 160 more
    assert _estimate_total(1.0, 100, 70.0, (10, 10.0)) == 100  # over budget already


def test_minutes_budget_holds_when_steps_slow_down_after_the_drop(monkeypatch, fake_clock):
    from frcnn_edu.training import loop
    monkeypatch.setattr(loop, "time", fake_clock)
    calls = []

    def fast_then_slow(model, images, targets):       # 1/64 s per step for 64 steps (1 s), then 1/8 s
        calls.append(1)
        fake_clock.advance(1 / 64 if len(calls) <= 64 else 1 / 8)
        return {"loss_dummy": next(model.parameters()).sum() * 0.0 + 1.0}

    hist = train(tiny_model(), tiny_data(20), minutes=0.05, calibration_steps=2, lr_drops=(0.3,),
                 warmup=0, forward=fast_then_slow, progress=False)  # a 3 s budget
    # planned in steps at the fast pace the run would take 192 steps (17 s at the slow pace); the
    # clock stops it at 3 s: 64 fast steps (1 s) and 16 slow ones (2 s)
    assert len(hist) == 80 and hist[-1]["time"] == 3.0
    # the drop came after 30 % of the time (0.9 s: from step 59, after 58 fast steps = 0.906 s),
    # not after 30 % of a plan
    dropped = next(h for h in hist if h["lr"] < hist[0]["lr"])
    assert dropped["step"] == 59


def test_minutes_budget_is_filled_when_steps_speed_up(monkeypatch, fake_clock):
    from frcnn_edu.training import loop
    monkeypatch.setattr(loop, "time", fake_clock)
    calls = []

    def slow_then_fast(model, images, targets):       # 1/4 s per step for 12 steps (3 s), then 1/32 s
        calls.append(1)
        fake_clock.advance(1 / 4 if len(calls) <= 12 else 1 / 32)
        return {"loss_dummy": next(model.parameters()).sum() * 0.0 + 1.0}

    hist = train(tiny_model(), tiny_data(20), minutes=0.1, calibration_steps=2, lr_drops=(0.9,),
                 forward=slow_then_fast, progress=False)  # 10 steps per epoch, a 6 s budget
    # A plan in steps made at step 20 (mean pace since step 2) would stop after about 3.8 s;
    # scheduled by the clock, the run fills its 6 s: 12 slow steps (3 s) and 96 fast ones (3 s)
    assert len(hist) == 108 and hist[-1]["time"] == 6.0
