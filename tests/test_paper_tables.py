"""benchmarks/paper_tables.py and the test-time switches it uses (proposal layer, RPN).

The switches reproduce Faster R-CNN Table 2's ablations: no NMS, proposals in random order
("no cls"), the anchors themselves ("no reg"). The benchmark's own parts: stage-wise training
freezes the right layers, a tiny `run_row` returns the schema, the JSON round-trips.
"""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from frcnn_edu.boxes import clip_boxes, decode_boxes
from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import RegionProposalNetwork, shapes_fast_rcnn
from frcnn_edu.proposals import generate_proposals

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import paper_tables as pt  # noqa: E402


def _scattered(n=40, size=100, seed=0):
    """n random boxes (some crossing the border of a size x size image), logits, deltas."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size - 10
    wh = torch.rand(n, 2, generator=g) * 30 + 5
    anchors = torch.cat([xy, xy + wh], 1)
    return anchors, torch.randn(1, n, generator=g), torch.randn(1, n, 4, generator=g) * 0.2


def test_no_nms_keeps_the_top_n_by_score():
    anchors, logits, deltas = _scattered()
    full, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], post_nms_top_n=1000, nms_thresh=None)
    decoded = clip_boxes(decode_boxes(anchors, deltas[0]), (100, 100))
    inside = (decoded[:, 2] > decoded[:, 0]) & (decoded[:, 3] > decoded[:, 1])
    assert len(full[0]) == int(inside.sum()) > 30          # nothing suppressed (boxes outside: dropped)
    top, scores = generate_proposals(anchors, logits, deltas, [(100, 100)], post_nms_top_n=7,
                                     nms_thresh=None)
    assert torch.equal(top[0], full[0][:7])
    assert torch.allclose(scores[0], torch.sigmoid(logits[0]).sort(descending=True).values[:7])
    with_nms, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], post_nms_top_n=1000, nms_thresh=0.3)
    assert len(with_nms[0]) < 40                                    # NMS did remove overlaps here


def test_random_order_is_a_seeded_permutation():
    anchors, logits, deltas = _scattered()
    kw = dict(post_nms_top_n=1000, nms_thresh=None, order="random")
    by_score, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], post_nms_top_n=1000, nms_thresh=None)
    a, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], generator=torch.Generator().manual_seed(1), **kw)
    b, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], generator=torch.Generator().manual_seed(1), **kw)
    c, _ = generate_proposals(anchors, logits, deltas, [(100, 100)], generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a[0], b[0])                                  # same seed, same order
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], by_score[0])
    as_set = lambda boxes: sorted(map(tuple, boxes.tolist()))  # noqa: E731
    assert as_set(a[0]) == as_set(by_score[0])                      # the same boxes: a permutation
    with pytest.raises(ValueError, match="order"):
        generate_proposals(anchors, logits, deltas, [(100, 100)], order="shuffled")


def test_apply_deltas_false_returns_the_clipped_anchors():
    anchors, logits, deltas = _scattered()
    boxes, _ = generate_proposals(anchors, logits, deltas * 50, [(100, 100)], post_nms_top_n=1000,
                                  nms_thresh=None, apply_deltas=False)
    expected = clip_boxes(anchors, (100, 100))[logits[0].sort(descending=True, stable=True).indices]
    expected = expected[(expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1])]
    assert torch.equal(boxes[0], expected)


def test_rpn_uses_the_switches_at_test_time_only():
    rpn = RegionProposalNetwork(8, stride=8, anchor_sizes=(16,), anchor_ratios=(1.0,),
                                post_nms_top_n=(1000, 1000), nms_thresh=None, test_apply_deltas=False)
    torch.nn.init.normal_(rpn.head.bbox_pred.weight, std=1.0)      # large deltas
    features = torch.randn(1, 8, 4, 4)
    anchors = clip_boxes(rpn.anchors_for(features), (32, 32))
    rpn.eval()
    boxes, _, _ = rpn(features, [(32, 32)])
    assert {tuple(b) for b in boxes[0].tolist()} <= {tuple(a) for a in anchors.tolist()}
    rpn.train()
    boxes, _, _ = rpn(features, [(32, 32)])                        # training: deltas applied
    assert not {tuple(b) for b in boxes[0].tolist()} <= {tuple(a) for a in anchors.tolist()}


@pytest.fixture
def tiny_fast_rcnn():
    data = ShapesDataset("train", num_images=2)
    proposals = [data[i][1]["boxes"] + 2.0 for i in range(2)]     # near the objects: foreground RoIs
    torch.manual_seed(0)
    return shapes_fast_rcnn(pretrained=False, stride=8), data, proposals


def _changed(before, model):
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}


def test_stagewise_freezes_what_it_should(tiny_fast_rcnn):
    model, data, proposals = tiny_fast_rcnn
    kw = dict(steps=1, progress=False, optimizer="adam", lr=1e-3, warmup=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pt.train_classifier_stage(model, data, proposals, **kw)
    changed = _changed(before, model)
    assert not any(n.startswith("roi_heads.bbox_pred") for n in changed)   # frozen at its init
    assert "roi_heads.cls_score.weight" in changed and any(n.startswith("backbone") for n in changed)
    assert model.roi_heads.lam == 1.0 and all(p.requires_grad for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pt.train_box_regression_stage(model, data, proposals, **kw)
    assert _changed(before, model) == {"roi_heads.bbox_pred.weight", "roi_heads.bbox_pred.bias"}
    assert all(p.requires_grad for p in model.parameters())


def test_stagewise_splits_the_same_total_steps(tiny_fast_rcnn):
    model, data, proposals = tiny_fast_rcnn
    history = pt.train_fast_rcnn_scheme(model, data, proposals, "stage-wise", steps=4, progress=False,
                                        optimizer="adam", lr=1e-3)
    assert len(history) == 4
    assert [round(h["loss_box_reg"], 6) == 0 for h in history] == [True, True, True, False]
    with pytest.raises(ValueError, match="scheme"):
        pt.train_fast_rcnn_scheme(model, data, proposals, "joint", steps=1)


def test_plan_trains_each_model_once_per_seed():
    jobs = pt.plan_jobs(list(pt.TABLES), [0, 1])
    trainings = [j for j in jobs if j[2] == "train"]
    assert len(trainings) == 2 * len(pt.MODELS)                     # 22 runs for two seeds
    default = jobs[("default", 0, "train")]
    assert ("anchors", "3 scales, 3 ratios") in default and ("lambda", "lambda = 10") in default
    assert pt.dependency(("default", 1, "test_time")) == ("default", 1, "train")
    assert pt.dependency(("pretrained", 0, "rcnn")) is None


def _check_run(run, seed, steps):
    assert {"seed", "mAP", "seconds", "steps"} <= set(run)
    assert run["seed"] == seed and run["steps"] == steps and 0 <= run["mAP"] <= 1
    json.dumps(run, allow_nan=False)                                # valid JSON: no NaN


def test_run_row_tiny_budget_returns_the_schema_and_reuses(tmp_path):
    kw = dict(seed=0, steps=2, train_images=4, test_images=4, root=tmp_path, cache_dir=tmp_path)
    run = pt.run_row("anchors", "1 scale, 1 ratio", **kw)
    _check_run(run, 0, 2)
    assert (pt.model_dir(tmp_path, 2, "anchors_1x1", 0) / "model.pt").exists()
    again = pt.run_row("test_time", "no reg: anchors as proposals, 300", **kw)   # trains "default"
    _check_run(again, 0, 2)
    assert again["proposals"] <= 300
    fast = pt.run_row("multitask", "multi-task, no test-time bbox reg", **kw)   # SS for 4 + 4 images
    _check_run(fast, 0, 2)
    svd = pt.run_row("svd", "fc6 rank 32, fc7 rank 32 (1/8)", **kw)             # reuses that model
    _check_run(svd, 0, 2)
    assert svd["fc_params"] == 32 * (6272 + 256) + 256 + 32 * (256 + 256) + 256
    assert svd["ms_per_image"] > svd["fc_ms_per_image"] > 0
    with pytest.raises(KeyError, match="rows"):
        pt.run_row("anchors", "5 scales", **kw)


def test_results_round_trip(tmp_path):
    results = [(t, row["name"], {"seed": s, "mAP": 0.5, "seconds": 1.0, "steps": 3})
               for t in pt.TABLES for row in pt.TABLES[t]["rows"] for s in (1, 0)]
    opts = pt._options(3, 4, 4, "cpu", tmp_path, tmp_path, False, 1)
    data = {"machine": pt.machine_info(1, 1, "cpu"), "settings": pt.settings_info(opts, [0, 1]),
            "tables": pt.assemble(list(pt.TABLES), results)}
    path = pt.write_results(data, tmp_path / "r.json")
    loaded = pt.load_results(path)
    assert loaded == json.loads(json.dumps(data))
    assert list(loaded["tables"]) == ["anchors", "lambda", "test_time", "multitask", "svd", "rcnn"]
    row = loaded["tables"]["lambda"]["rows"][3]
    assert row["paper"] == 69.9 and [r["seed"] for r in row["runs"]] == [0, 1]
    assert row["config"]["rpn_lam"] == 10.0 and len(loaded["machine"]["date"]) == 10
    del loaded["tables"]["svd"]["rows"][0]["runs"][0]["mAP"]
    (tmp_path / "bad.json").write_text(json.dumps(loaded))
    with pytest.raises(ValueError, match="bad.json.*svd.*mAP"):
        pt.load_results(tmp_path / "bad.json")


def test_committed_results_follow_the_schema():
    data = pt.load_results(pt.DEFAULT_OUT)
    for table in data["tables"].values():
        for row in table["rows"]:
            assert row["paper"] is None or isinstance(row["paper"], float)
            for run in row["runs"]:
                assert 0 <= run["mAP"] <= 1 and not math.isnan(run["mAP"])
