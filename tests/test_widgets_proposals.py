"""Tests for frcnn_edu.widgets.proposals: the RPN outputs and the replayed proposal layer equal
the library's, the stage counts, recall statistics, what draw_proposals puts on the axes, and
the explorer's result as its widgets move."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from frcnn_edu.anchors import inside_image  # noqa: E402
from frcnn_edu.boxes import box_iou  # noqa: E402
from frcnn_edu.data import ShapesDataset  # noqa: E402
from frcnn_edu.evaluation import average_recall, proposal_recall  # noqa: E402
from frcnn_edu.models import shapes_faster_rcnn  # noqa: E402
from frcnn_edu.proposals import generate_proposals  # noqa: E402
from frcnn_edu.widgets import proposals as P  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    return ShapesDataset("test", num_images=3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = shapes_faster_rcnn(pretrained=True)
    # an untrained RPN scores all anchors almost alike: give it distinct scores and real shifts
    with torch.no_grad():
        net.rpn.head.cls_logits.weight.normal_(std=0.3)
        net.rpn.head.bbox_pred.weight.normal_(std=0.02)
    return net.eval()


@pytest.fixture(scope="module")
def outputs(model, dataset):
    return P.rpn_outputs(model, dataset[0][0])


def test_module_reachable_from_widgets_package():
    from frcnn_edu import widgets

    assert widgets.proposals is P


def test_rpn_outputs_are_the_models_head_and_anchors(model, dataset, outputs):
    image = dataset[0][0]
    assert outputs["anchors"].shape == (900, 4) and outputs["image_size"] == (160, 160)
    assert outputs["logits"].shape == (900,) and outputs["deltas"].shape == (900, 4)
    assert not outputs["logits"].requires_grad
    with torch.no_grad():
        boxes, scores = model.propose([image])
    again, again_scores = generate_proposals(outputs["anchors"], outputs["logits"][None],
                                             outputs["deltas"][None], [(160, 160)])
    assert torch.equal(boxes[0], again[0]) and torch.equal(scores[0], again_scores[0])
    model.train()
    P.rpn_outputs(model, image)
    assert model.training  # the mode is given back
    model.eval()
    with pytest.raises(ValueError, match="image"):
        P.rpn_outputs(model, image[0])


@pytest.mark.parametrize("pre, post, thresh", [(6000, 300, 0.7), (100, 20, 0.5), (10, 300, 0.7),
                                               (6000, 2000, 0.9), (300, 5, 0.3)])
def test_proposal_stages_equal_generate_proposals(outputs, pre, post, thresh):
    stages = P.proposal_stages(outputs, pre, post, thresh)
    boxes, scores = generate_proposals(outputs["anchors"], outputs["logits"][None],
                                       outputs["deltas"][None], [outputs["image_size"]],
                                       pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=thresh)
    assert torch.equal(stages["boxes"], boxes[0]) and torch.equal(stages["scores"], scores[0])
    assert stages["anchors"] == 900
    assert stages["pre_nms"] == min(pre, 900)  # every decoded box is valid for this model
    assert stages["kept"] == len(boxes[0]) == min(stages["after_nms"], post)
    assert stages["after_nms"] <= stages["pre_nms"]


def test_proposal_stages_counts_follow_the_settings(outputs):
    loose = P.proposal_stages(outputs, 6000, 2000, 1.0)
    assert loose["after_nms"] == loose["pre_nms"] == 900  # IoU > 1 never happens: NMS keeps all
    strict = P.proposal_stages(outputs, 6000, 2000, 0.3)
    paper = P.proposal_stages(outputs, 6000, 2000, 0.7)
    assert strict["after_nms"] < paper["after_nms"] < loose["after_nms"]
    assert P.proposal_stages(outputs, 6000, 2000, 0.7, min_size=1000.0)["pre_nms"] == 0


def test_proposal_stages_inside_only(outputs):
    valid = inside_image(outputs["anchors"], (160, 160))
    inside = P.proposal_stages(outputs, 6000, 300, 0.7, inside_only=True)
    boxes, scores = generate_proposals(outputs["anchors"][valid], outputs["logits"][valid][None],
                                       outputs["deltas"][valid][None], [(160, 160)])
    assert inside["anchors"] == int(valid.sum()) == 444 and inside["pre_nms"] == 444
    # the scores: same values up to one float32 ulp (the sigmoid runs on vectors of other lengths)
    assert torch.equal(inside["boxes"], boxes[0])
    torch.testing.assert_close(inside["scores"], scores[0], rtol=0, atol=1e-7)
    none_inside = dict(outputs, image_size=(8, 8))  # every anchor crosses the border of 8 x 8
    empty = P.proposal_stages(none_inside, inside_only=True)
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,)
    assert (empty["anchors"], empty["pre_nms"], empty["after_nms"], empty["kept"]) == (0, 0, 0, 0)


def test_resized_model_proposals_come_back_in_image_pixels(dataset):
    """A model with image_scale (the command line's recipe: stride 8, 240 px) runs its RPN on the
    resized image; the replayed proposal layer returns what model.propose returns, in the
    160-pixel image's coordinates, for the paper's settings and for a 2000-box top-N."""
    torch.manual_seed(0)
    net = shapes_faster_rcnn(pretrained=True, stride=8, image_scale=240)
    with torch.no_grad():
        net.rpn.head.cls_logits.weight.normal_(std=0.3)
        net.rpn.head.bbox_pred.weight.normal_(std=0.02)
    net.eval()
    image = dataset[0][0]
    out = P.rpn_outputs(net, image)
    assert out["image_size"] == (240, 240) and out["anchors"].shape == (30 * 30 * 9, 4)
    assert torch.allclose(out["scale"], torch.full((4,), 1.5))
    for top_n in (300, 2000):
        net.rpn.post_nms_top_n = (2000, top_n)
        (boxes,), _ = net.propose([image])
        stages = P.proposal_stages(out, pre_nms_top_n=6000, post_nms_top_n=top_n)
        assert torch.allclose(stages["boxes"], boxes) and stages["boxes"].max() <= 160
    no_scale = {k: v for k, v in out.items() if k != "scale"}  # older outputs: boxes as decoded
    assert torch.allclose(P.proposal_stages(no_scale)["boxes"], P.proposal_stages(out)["boxes"] * 1.5)


def test_proposal_stats_match_the_library():
    props = torch.tensor([[10.0, 10, 50, 50], [0, 0, 40, 20], [60, 60, 100, 110]])
    gt = torch.tensor([[12.0, 10, 52, 50], [0, 0, 40, 40], [140, 140, 150, 150]])
    stats = P.proposal_stats(props, gt)
    want = proposal_recall([props], [gt], (0.5, 0.7))
    assert stats == {"proposals": 3, "recall@0.5": round(float(want[0]), 4),
                     "recall@0.7": round(float(want[1]), 4),
                     "AR": round(average_recall([props], [gt]), 4)}
    assert stats["recall@0.5"] == pytest.approx(2 / 3, abs=1e-4)
    empty = P.proposal_stats(torch.zeros(0, 4), gt, iou_thresholds=(0.5,))
    assert empty == {"proposals": 0, "recall@0.5": 0.0, "AR": 0.0}


def test_draw_proposals_rank_colours_best_boxes_and_texts(ax, dataset, outputs):
    image, target = dataset[0]
    stages = P.proposal_stages(outputs)
    out = P.draw_proposals(ax, image, stages["boxes"], target["boxes"], max_draw=12, title="t")
    g = len(target["boxes"])
    colls = [c for c in ax.collections if isinstance(c, PatchCollection)]
    assert len(colls) == 1 and len(colls[0].get_paths()) == 12
    edge = colls[0].get_edgecolor()
    cmap = matplotlib.colormaps["viridis"]
    assert np.allclose(edge[-1], cmap(1.0)) and np.allclose(edge[0], cmap(0.0))  # best on top
    assert len(ax.patches) == 2 * g  # gt boxes, then one best proposal per gt box
    assert all(p.get_linestyle() == "--" for p in ax.patches[:g])
    best_color = to_rgba(P.BEST_COLOR)
    assert all(np.allclose(to_rgba(p.get_edgecolor()), best_color) for p in ax.patches[g:])
    best = box_iou(stages["boxes"], target["boxes"]).max(0).values
    assert out["drawn"] == 12 and out["best_iou"] == [round(v, 4) for v in best.tolist()]
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in best.tolist()]
    assert ax.get_title() == "t" and len(ax.images) == 1


def test_draw_proposals_edge_cases(ax, dataset):
    image, target = dataset[1]
    out = P.draw_proposals(ax, image, torch.zeros(0, 4), target["boxes"])
    assert out == {"drawn": 0, "best_iou": [0.0] * len(target["boxes"])}
    assert not [c for c in ax.collections if isinstance(c, PatchCollection)]
    fig, ax2 = plt.subplots()
    out = P.draw_proposals(ax2, image, target["boxes"], None, max_draw=50, best=True)
    assert out == {"drawn": len(target["boxes"]), "best_iou": []} and not ax2.patches


def test_explorer_result_follows_the_widgets(model, dataset):
    pytest.importorskip("ipywidgets")
    w = P.proposal_explorer(model, dataset, index=0)
    index, thresh, pre, post, draw, inside = w.children[:6]
    assert (thresh.value, pre.value, post.value) == (0.7, 6000, 300)
    w.update()

    def expected(i, t=0.7, pre_n=6000, post_n=300, only=False):
        image, target = dataset[i]
        stages = P.proposal_stages(P.rpn_outputs(model, image), pre_n, post_n, t, inside_only=only)
        counts = {k: stages[k] for k in ("anchors", "pre_nms", "after_nms", "kept")}
        return {**counts, **P.proposal_stats(stages["boxes"], target["boxes"])}

    assert w.result == expected(0)
    index.value = 2
    assert w.result == expected(2)
    thresh.value = 0.5
    assert w.result == expected(2, t=0.5) and w.result["after_nms"] < expected(2)["after_nms"]
    pre.value = 30
    assert w.result == expected(2, t=0.5, pre_n=30) and w.result["pre_nms"] == 30
    post.value = 5
    assert w.result["kept"] == 5 and w.result["proposals"] == 5
    draw.value = 0
    assert w.result == expected(2, t=0.5, pre_n=30, post_n=5)
    inside.value = True
    assert w.result == expected(2, t=0.5, pre_n=30, post_n=5, only=True)
    assert w.result["anchors"] == 444
