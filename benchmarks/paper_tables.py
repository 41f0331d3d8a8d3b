"""The papers' ablation tables, re-run in miniature on the shapes data (lesson 06 reads the JSON).

Six tables, each row a few CPU minutes, every row at two seeds:

    anchors    Faster R-CNN Table 8: anchor scales x aspect ratios
    lambda     Faster R-CNN Table 9: the RPN loss weight lambda
    test_time  Faster R-CNN Table 2: proposals top-N, no NMS, no cls (random order), no reg
               (anchors as proposals); and the detector's NMS threshold (no paper number)
    multitask  Fast R-CNN Table 6: multi-task vs stage-wise training, test-time box regression
    svd        Fast R-CNN sec. 3.1 / Table 7: truncated SVD of fc6 / fc7, mAP and time
    rcnn       R-CNN Table 2: fc7 features with and without fine-tuning, box regression

Every trained row gets the same budget: `--steps` SGD steps of 2 images (Adam, the command
line's "fast" recipe: stride 8, RoIAlign, images at 240 pixels for Faster R-CNN), on the 1,000
'train' images, scored by mAP@0.5 (VOC, area under the curve) on the 200 'test' images. Rows
that only change test-time settings (test_time, svd, the R-CNN rows, "no test-time bbox reg")
evaluate a model trained by another row; no model is trained twice. Trained models are kept in
build/paper_tables/s<steps>/<model>/seed<k>/ (model.pt + meta.json); `--reuse` loads one whose
meta.json matches instead of training it again.

    python benchmarks/paper_tables.py [--steps 600] [--seeds 0 1] [--tables anchors lambda ...]
        [--workers N] [--threads 2] [--out benchmarks/results/paper_tables.json] [--device cpu]
        [--reuse]

JSON (benchmarks/results/paper_tables.json): {"machine": {...}, "settings": {...}, "tables":
{key: {"title", "paper", "paper_setting", "metric", "rows": [{"name", "config", "paper",
"runs": [{"seed", "mAP", "seconds", "steps", ...}], "note"}]}}}. mAP in [0, 1]; paper numbers
in % as printed. "seconds" is the training time of a trained row and the evaluation time of a
row that only evaluates (its "steps" are those of the model it evaluates). Extra run keys:
"ap" (per class), "proposals" (mean per image, test_time), "mAP_crowded" (test_time's detection
NMS rows, when ShapesDataset offers a crowded split), "ms_per_image", "fc_ms_per_image" (fc6 +
fc7 alone) and "fc_params" (svd),
"mAP_with_box_reg" (R-CNN without fine-tuning).
"""
import argparse
import copy
import datetime
import inspect
import json
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so the lesson can import us

from frcnn_edu.models.recipes import RECIPES  # noqa: E402
from frcnn_edu.data import ShapesDataset  # noqa: E402
from frcnn_edu.inference import evaluate  # noqa: E402
from frcnn_edu.models import RCNN, shapes_fast_rcnn, shapes_faster_rcnn, tiny_fc_head, tiny_vgg  # noqa: E402
from frcnn_edu.proposals import selective_search_dataset  # noqa: E402
from frcnn_edu.training import fit_rcnn, load_weights, save_atomic, train_fast_rcnn, train_joint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "paper_tables.json"
RECIPE = RECIPES["fast"]
OPTIMIZER = {"optimizer": RECIPE["optimizer"], "lr": RECIPE["lr"]}
FAST_RCNN_NET = {k: v for k, v in RECIPE["model"].items() if k != "image_scale"}  # SS boxes: no resize
# Anchor sizes in pixels of the 240-pixel resized image (shapes_faster_rcnn scales its stride-8
# default (16, 32, 64) by 240 / 160 only when anchor_sizes is not given, so we pass them scaled).
SIZES, RATIOS = (24, 48, 96), (0.5, 1.0, 2.0)
STAGEWISE_CLS_SHARE = 0.75   # stage-wise: this share of the steps for the classifier, the rest for box reg
RCNN_IMAGES = 200            # R-CNN's SVMs learn from this many training images (a CNN pass per region)
# Selective search for the Fast R-CNN and R-CNN rows: "fast" mode, boxes of at least 6 px (the
# released code's 20 px scaled to 160-px images), at most 100 per image (benchmarks/ladder.py takes all).
SS = dict(mode="fast", max_proposals=100, min_size=6)
SVD_TIMING_IMAGES = 50       # test images timed one at a time (1 thread, best of 3)

# --- what is trained: each model once per seed -----------------------------------------------
MODELS = {
    "anchors_1x1": ("faster", {"anchor_sizes": (48,), "anchor_ratios": (1.0,)}),
    "anchors_1x3": ("faster", {"anchor_sizes": (48,), "anchor_ratios": RATIOS}),
    "anchors_3x1": ("faster", {"anchor_sizes": SIZES, "anchor_ratios": (1.0,)}),
    "default": ("faster", {"anchor_sizes": SIZES, "anchor_ratios": RATIOS, "rpn_lam": 10.0}),
    **{f"lambda_{lam:g}": ("faster", {"rpn_lam": lam}) for lam in (0.1, 1.0, 3.0, 100.0)},
    "fast_multitask": ("fast", {"scheme": "multi-task"}),
    "fast_stagewise": ("fast", {"scheme": "stage-wise", "cls_share": STAGEWISE_CLS_SHARE}),
    "fast_cls_only": ("fast", {"scheme": "classification only"}),
}


def _row(name, model, paper, note, evaluator="plain", **settings):
    """One table row: the model it evaluates, how (evaluator + its settings), the paper's number."""
    return {"name": name, "model": model, "evaluator": evaluator, "settings": settings,
            "paper": paper, "note": note}


def _test_time_rows():
    rows = [_row(f"top-{n} proposals", "default", paper, "Proposals of the RPN, ranked by "
                 "objectness, NMS 0.7, the first N kept." + (" The default." if n == 300 else ""),
                 "test_time", post_nms_top_n=n) for n, paper in ((100, 55.1), (300, 56.8),
                                                                 (1000, 56.3), (2000, None))]
    rows.append(_row("no NMS, 6000 proposals", "default", 55.2, "The 6000 best-scored boxes, "
                     "no proposal NMS (the paper's count).", "test_time",
                     post_nms_top_n=6000, nms_thresh=None))
    rows += [_row(f"no cls: random order, {n} proposals", "default", paper,
                  "Objectness ignored: N boxes drawn in random order (seeded), no NMS, as the "
                  "paper does without its cls layer.", "test_time", post_nms_top_n=n,
                  nms_thresh=None, order="random") for n, paper in ((100, 44.6), (300, 51.4), (1000, 55.8))]
    rows.append(_row("no reg: anchors as proposals, 300", "default", 52.1, "The RPN's box deltas "
                     "ignored: the clipped anchors, ranked and NMS'd by objectness, are the "
                     "proposals.", "test_time", post_nms_top_n=300, apply_deltas=False))
    rows += [_row(f"detection NMS {t}", "default", None, "Threshold of the detector's per-class "
                  "NMS (0.3 in the papers); no paper number. mAP_crowded: on a test split with "
                  "overlapping objects, where a low threshold removes true boxes.",
                  "test_time", box_nms_thresh=t, crowded=True) for t in (0.3, 0.5, 0.7)]
    return rows


_ANCHOR_NOTE = ("Anchor sizes in pixels of the 240-pixel resized image ({} = {} px on the "
                "160-pixel original); ratio is h / w.")
TABLES = {
    "anchors": {
        "title": "Anchor scales and aspect ratios", "paper": "Faster R-CNN Table 8",
        "paper_setting": "VOC 2007 test, VGG-16", "metric": "mAP@0.5",
        "rows": [
            _row("1 scale, 1 ratio", "anchors_1x1", 66.7, _ANCHOR_NOTE.format("48", "32") +
                 " Paper: 65.8 with a 128^2 anchor, 66.7 with 256^2 (given here)."),
            _row("1 scale, 3 ratios", "anchors_1x3", 68.8, _ANCHOR_NOTE.format("48", "32") +
                 " Paper: 68.8 with 128^2, 67.9 with 256^2 (128^2 given here)."),
            _row("3 scales, 1 ratio", "anchors_3x1", 69.8, _ANCHOR_NOTE.format("24/48/96", "16/32/64")),
            _row("3 scales, 3 ratios", "default", 69.9, _ANCHOR_NOTE.format("24/48/96", "16/32/64") +
                 " The default (the lambda = 10 row of the next table is this same run)."),
        ]},
    "lambda": {
        "title": "The RPN loss weight lambda", "paper": "Faster R-CNN Table 9",
        "paper_setting": "VOC 2007 test, VGG-16", "metric": "mAP@0.5",
        "rows": [_row(f"lambda = {lam:g}", "default" if lam == 10 else f"lambda_{lam:g}", paper,
                      "Weight of the RPN's box loss in eq. 1 (N_cls = 256, N_reg = anchor "
                      "locations); 3 scales x 3 ratios." +
                      (" The default: the same run as anchors '3 scales, 3 ratios'." if lam == 10 else ""))
                 for lam, paper in ((0.1, 67.2), (1.0, 68.9), (3.0, 69.8), (10.0, 69.9), (100.0, 69.1))]},
    "test_time": {
        "title": "Test-time proposal ablations", "paper": "Faster R-CNN Table 2",
        "paper_setting": "VOC 2007 test, ZF net; detector trained on selective search, RPN at test",
        "metric": "mAP@0.5", "rows": _test_time_rows()},
    "multitask": {
        "title": "Multi-task vs stage-wise training", "paper": "Fast R-CNN Table 6",
        "paper_setting": "VOC 2007 test, VGG-16 (model L)", "metric": "mAP@0.5",
        "rows": [
            _row("classification only, no bbox reg", "fast_cls_only", 62.6,
                 "Trained on the classification loss alone (box loss weight 0), boxes left where "
                 "the proposals put them.", "no_box_reg"),
            _row("multi-task, no test-time bbox reg", "fast_multitask", 63.4,
                 "The multi-task model below with its box deltas zeroed at test time: what the "
                 "box loss does for the features alone.", "no_box_reg"),
            _row("stage-wise", "fast_stagewise", 64.0,
                 f"Classification loss for {STAGEWISE_CLS_SHARE:.0%} of the steps, then only the "
                 "box-regression layer trains (the rest frozen) for the remaining steps; the same "
                 "total steps as multi-task."),
            _row("multi-task + bbox reg", "fast_multitask", 66.9,
                 "Eq. 1, both losses from the first step; test-time box regression."),
        ]},
    "svd": {
        "title": "Truncated SVD of fc6 and fc7", "paper": "Fast R-CNN sec. 3.1, Table 7 / fig. 2",
        "paper_setting": "VOC 2007 test, VGG-16", "metric": "mAP@0.5",
        "rows": [_row(name, "fast_multitask", paper, note, "svd", ranks=ranks) for name, ranks, paper, note in (
            ("full fc6 / fc7", None, 66.9, "The multi-task Fast R-CNN, uncompressed (fc6 6272 x "
             "256, fc7 256 x 256)."),
            ("fc6 rank 64, fc7 rank 64 (1/4)", (64, 64), None, "A quarter of each layer's 256 "
             "singular values."),
            ("fc6 rank 64, fc7 rank 16 (the paper's shares)", (64, 16), 66.6, "The paper keeps "
             "1024 of fc6's 4096 (1/4) and 256 of fc7's 4096 (1/16); paper: >30 % less "
             "detection time."),
            ("fc6 rank 32, fc7 rank 32 (1/8)", (32, 32), None, "An eighth of each layer's singular "
             "values."))]},
    "rcnn": {
        "title": "R-CNN: fine-tuning and box regression", "paper": "R-CNN Table 2",
        "paper_setting": "VOC 2007 test, AlexNet", "metric": "mAP@0.5",
        "rows": [
            _row("fc7, no fine-tuning", "pretrained", 44.7, "SVMs on fc7 of the pre-trained "
                 "TinyVGG (stride 8 weights), no box regression (mAP_with_box_reg: with it).",
                 "rcnn", weights="pretrained", box_reg=False),
            _row("fc7, fine-tuned", "fast_multitask", 54.2, "SVMs on fc7 of the conv layers and "
                 "fc6/fc7 of the multi-task Fast R-CNN (table multitask): fine-tuned for detection "
                 "by Fast R-CNN training, not by R-CNN's own fine-tuning on warped windows. No "
                 "box regression.", "rcnn", weights="fine-tuned", box_reg=False),
            _row("fine-tuned + box regression", "fast_multitask", 58.5, "The same SVMs, with the "
                 "ridge box regressors on pool5.", "rcnn", weights="fine-tuned", box_reg=True),
        ]},
}


def find_row(table, name):
    """The row spec `name` of `table` (KeyError naming the choices otherwise)."""
    if table not in TABLES:
        raise KeyError(f"table must be one of {list(TABLES)}, got {table!r}")
    for row in TABLES[table]["rows"]:
        if row["name"] == name:
            return row
    raise KeyError(f"table {table!r} has no row {name!r}; rows: {[r['name'] for r in TABLES[table]['rows']]}")


# --- data ----------------------------------------------------------------------------------------
def ss_proposals(split, n, cache_dir):
    """Selective-search boxes (`SS`) of the first `n` images of `split`.

    The cache holds the whole split (build/cache/ss_<split>.pt); a
    shorter run without that cache computes its own images only, uncached.
    """
    full = ShapesDataset(split)
    cache = Path(cache_dir) / f"ss_{split}.pt"
    if cache.exists() or n >= len(full):
        return selective_search_dataset(full, cache=cache, progress=False, **SS)[:n]
    return selective_search_dataset(ShapesDataset(split, num_images=n), progress=False, **SS)


def crowded_test_set(n):
    """(dataset, description) of a test split with overlapping objects, or (None, why not)."""
    params = inspect.signature(ShapesDataset).parameters
    for name, value in (("crowded", True), ("max_gt_iou", 0.7)):
        if name in params:
            return ShapesDataset("test", num_images=n, **{name: value}), f"ShapesDataset(test, {name}={value})"
    return None, "ShapesDataset has no crowding option (crowded= / max_gt_iou=): crowded column skipped"


# --- models: build, train, save, reuse ---------------------------------------------------------
def build_model(key, pretrained=True):
    """The detector that MODELS[key] trains: Faster R-CNN (fast recipe) or Fast R-CNN on SS."""
    kind, config = MODELS[key]
    if kind == "faster":
        return shapes_faster_rcnn(pretrained=pretrained, **RECIPE["model"], **config)
    return shapes_fast_rcnn(pretrained=pretrained, **FAST_RCNN_NET)


def _set_trainable(module, flag):
    for p in module.parameters():
        p.requires_grad_(flag)


def train_classifier_stage(model, dataset, proposals, **kwargs):
    """Stage 1 of stage-wise training (Fast R-CNN sec. 5.1): the classification loss alone.

    The box loss gets weight 0 (so it sends no gradient into the shared layers) and the
    box-regression layer is frozen at its initial weights. kwargs go to `train_fast_rcnn`.
    """
    head = model.roi_heads
    lam = head.lam
    head.lam = 0.0
    _set_trainable(head.bbox_pred, False)
    try:
        return train_fast_rcnn(model, dataset, proposals, **kwargs)
    finally:
        head.lam = lam
        _set_trainable(head.bbox_pred, True)


def train_box_regression_stage(model, dataset, proposals, **kwargs):
    """Stage 2: only the box-regression layer learns (loss_box_reg); everything else is frozen."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    _set_trainable(model.roi_heads.bbox_pred, True)
    try:
        return train_fast_rcnn(model, dataset, proposals, **kwargs)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def train_fast_rcnn_scheme(model, dataset, proposals, scheme, *, steps, cls_share=STAGEWISE_CLS_SHARE,
                           **kwargs):
    """Fast R-CNN Table 6's schemes on the same total `steps`: "multi-task" (eq. 1 throughout),
    "stage-wise" (classifier for cls_share of the steps, then box regression alone) or
    "classification only" (the first stage for all steps). Returns the joined history."""
    if scheme == "multi-task":
        return train_fast_rcnn(model, dataset, proposals, steps=steps, **kwargs)
    if scheme not in ("stage-wise", "classification only"):
        raise ValueError(f'scheme must be "multi-task", "stage-wise" or "classification only", got {scheme!r}')
    cls_steps = steps if scheme == "classification only" or steps < 2 else \
        min(steps - 1, max(1, round(steps * cls_share)))
    history = train_classifier_stage(model, dataset, proposals, steps=cls_steps, **kwargs)
    if steps > cls_steps:
        history += train_box_regression_stage(model, dataset, proposals, steps=steps - cls_steps, **kwargs)
    return history


def model_dir(root, steps, key, seed):
    return Path(root) / f"s{steps}" / key / f"seed{seed}"


def _meta(key, seed, opts):
    meta = {"model": key, "config": MODELS[key][1], "seed": seed, "steps": opts["steps"],
            "train_images": opts["train_images"], "recipe": RECIPE}
    return json.loads(json.dumps(meta))   # tuples -> lists, as read back from the file


def obtain_model(key, seed, opts, reuse):
    """(model, info) for MODELS[key] at `seed`: loaded when `reuse` and the saved meta.json
    matches (same steps, images, config), else trained and saved. info: steps, seconds."""
    folder = model_dir(opts["root"], opts["steps"], key, seed)
    meta = _meta(key, seed, opts)
    saved = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else None
    if reuse and saved and saved["meta"] == meta and (folder / "model.pt").exists():
        model = build_model(key, pretrained=False)
        model.load_state_dict(load_weights(folder / "model.pt"))
        return model.to(opts["device"]).eval(), saved["info"]
    train = ShapesDataset("train", num_images=opts["train_images"])
    torch.manual_seed(seed)
    model = build_model(key)
    common = dict(steps=opts["steps"], seed=seed, device=opts["device"], progress=False, **OPTIMIZER)
    start = time.perf_counter()
    kind, config = MODELS[key]
    if kind == "faster":
        history = train_joint(model, train, **common)
    else:
        props = ss_proposals("train", len(train), opts["cache_dir"])
        history = train_fast_rcnn_scheme(model, train, props, config["scheme"],
                                         **{k: v for k, v in config.items() if k == "cls_share"}, **common)
    info = {"steps": len(history), "seconds": round(time.perf_counter() - start, 1)}
    save_atomic(model.state_dict(), folder / "model.pt")
    (folder / "meta.json").write_text(json.dumps({"meta": meta, "info": info}, indent=1) + "\n")
    return model.eval(), info


# --- evaluators: one per kind of row -------------------------------------------------------------
class Context:
    """What the evaluators of one job share: the test images, their SS boxes, fitted R-CNNs."""

    def __init__(self, opts):
        self.opts, self.device, self.memo = opts, opts["device"], {}
        self.test = ShapesDataset("test", num_images=opts["test_images"])
        self._props = None

    @property
    def test_props(self):
        if self._props is None:
            self._props = ss_proposals("test", len(self.test), self.opts["cache_dir"])
        return self._props

    def score(self, model, dataset=None):
        """evaluate() on the test images; Fast R-CNN and R-CNN get the SS boxes."""
        dataset = dataset or self.test
        external = not hasattr(model, "rpn")
        device = "cpu" if isinstance(model, RCNN) else self.device   # fit_rcnn works on the CPU
        props = self.test_props[:len(dataset)] if external else None
        return evaluate(model, dataset, device=device, proposals=props)


def _eval_plain(model, settings, seed, ctx):
    result = ctx.score(model)
    # A class absent from the test images has no AP (NaN): null in the JSON, which has no NaN.
    return {"mAP": result["mAP"], "ap": {k: None if v != v else v for k, v in result["ap"].items()}}


def _zero_linear(linear):
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()


def _eval_no_box_reg(model, settings, seed, ctx):
    model = copy.deepcopy(model)
    _zero_linear(model.roi_heads.bbox_pred)          # zero deltas decode to the proposals
    return _eval_plain(model, settings, seed, ctx)


def apply_test_settings(model, seed=0, post_nms_top_n=300, nms_thresh=0.7, order="score",
                        apply_deltas=True, box_nms_thresh=0.3):
    """Set a Faster R-CNN's test-time proposal layer and detection NMS (in place)."""
    rpn = model.rpn
    rpn.post_nms_top_n = (rpn.post_nms_top_n[0], post_nms_top_n)
    rpn.nms_thresh, rpn.test_order, rpn.test_apply_deltas = nms_thresh, order, apply_deltas
    rpn.generator = torch.Generator().manual_seed(seed)
    model.roi_heads.nms_thresh = box_nms_thresh
    return model


def _eval_test_time(model, settings, seed, ctx):
    settings = dict(settings)
    crowded = settings.pop("crowded", False)
    model = apply_test_settings(copy.deepcopy(model), seed, **settings)
    counts = []
    hook = model.roi_heads.register_forward_pre_hook(lambda mod, args: counts.extend(len(p) for p in args[1]))
    try:
        result = _eval_plain(model, settings, seed, ctx)
    finally:
        hook.remove()
    result["proposals"] = round(sum(counts) / max(1, len(counts)), 1)
    if crowded:
        dataset, why = crowded_test_set(len(ctx.test))
        if dataset is None:
            print(f"note: {why}", flush=True)
        else:
            model.rpn.generator = torch.Generator().manual_seed(seed)
            result["mAP_crowded"] = ctx.score(model, dataset)["mAP"]
            result["crowded_split"] = why
    return result


def detection_ms(model, images, proposals, repeats=3):
    """Milliseconds per image of Fast R-CNN detection (proposals given), one image per call, on
    one CPU thread: the best of `repeats` passes over the images, after a warm-up call.
    With proposals=None, `model(x)` is timed on each x of `images` (e.g. the fc layers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    device = next(model.parameters()).device
    calls = [((img.to(device),) if proposals is None else ([img.to(device)], [p.to(device)]))
             for img, p in zip(images, proposals if proposals is not None else images)]
    try:
        with torch.no_grad():
            model.eval()(*calls[0])
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                for args in calls:
                    model(*args)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 1000 * best / len(images)


def fc_ms(model, images, proposals, repeats=3):
    """Milliseconds per image of fc6 + fc7 alone (what truncated SVD shrinks), on one CPU
    thread: the RoIs of `images` pooled once, then the fc layers timed, best of `repeats`."""
    device = next(model.parameters()).device
    with torch.no_grad():
        pooled = [model.roi_heads.pool(model.backbone(img[None].to(device)), [p.to(device)])
                  for img, p in zip(images, proposals)]
        return detection_ms(model.roi_heads.fc, pooled, None, repeats)


def _eval_svd(model, settings, seed, ctx):
    model = copy.deepcopy(model)
    if settings["ranks"] is not None:
        model.roi_heads.compress_fc(tuple(settings["ranks"]))
    result = _eval_plain(model, settings, seed, ctx)
    n = min(SVD_TIMING_IMAGES, len(ctx.test))
    images, props = [ctx.test[i][0] for i in range(n)], ctx.test_props[:n]
    result["ms_per_image"] = round(detection_ms(model, images, props), 2)
    result["fc_ms_per_image"] = round(fc_ms(model, images, props), 3)
    result["fc_params"] = sum(p.numel() for p in model.roi_heads.fc.parameters())
    return result


def _fitted_rcnn(model, weights, seed, ctx):
    """R-CNN (stride-8 TinyVGG, so the fine-tuned conv5 fits) with SVMs + regressors fitted on
    the first RCNN_IMAGES training images; conv + fc6/fc7 pre-trained or from `model`."""
    if weights not in ctx.memo:
        rcnn = RCNN(tiny_vgg(True, stride=8), tiny_fc_head(True, stride=8), ShapesDataset.num_classes)
        if weights == "fine-tuned":
            rcnn.backbone.load_state_dict(model.backbone.state_dict())
            rcnn.fc.load_state_dict(model.roi_heads.fc.state_dict())
        n = min(RCNN_IMAGES, ctx.opts["train_images"])
        props = ss_proposals("train", ctx.opts["train_images"], ctx.opts["cache_dir"])[:n]
        torch.manual_seed(seed)
        ctx.memo[weights] = fit_rcnn(rcnn.cpu(), ShapesDataset("train", num_images=n), props,
                                     progress=False, seed=seed)
    return ctx.memo[weights]


def _eval_rcnn(model, settings, seed, ctx):
    rcnn = _fitted_rcnn(model, settings["weights"], seed, ctx)
    plain = copy.deepcopy(rcnn)
    _zero_linear(plain.regressor)                     # the same SVMs, boxes where SS put them
    result = _eval_plain(rcnn if settings["box_reg"] else plain, settings, seed, ctx)
    if settings["weights"] == "pretrained" and not settings["box_reg"]:
        result["mAP_with_box_reg"] = ctx.score(rcnn)["mAP"]
    return result


EVALUATORS = {"plain": _eval_plain, "no_box_reg": _eval_no_box_reg, "test_time": _eval_test_time,
              "svd": _eval_svd, "rcnn": _eval_rcnn}
TRAINED_ROW_EVALUATORS = ("plain", "no_box_reg")   # rows scored by the job that trains their model


# --- jobs: (model, seed, kind) -> runs of its rows ---------------------------------------------------
def plan_jobs(tables, seeds):
    """{job: [(table, row name), ...]}; a job is (model key, seed, "train" or an evaluator).

    A "train" job trains its model (or reuses it) and scores the rows evaluated as trained;
    every other job evaluates a saved model (test_time, svd, rcnn), after its "train" job.
    """
    jobs = {}
    for table in tables:
        for row in TABLES[table]["rows"]:
            for seed in seeds:
                kind = "train" if row["evaluator"] in TRAINED_ROW_EVALUATORS else row["evaluator"]
                if kind != "train" and row["model"] != "pretrained":
                    jobs.setdefault((row["model"], seed, "train"), [])
                jobs.setdefault((row["model"], seed, kind), []).append((table, row["name"]))
    return jobs


def dependency(job):
    key, seed, kind = job
    return None if kind == "train" or key == "pretrained" else (key, seed, "train")


def needs_ss(job):
    key, _, kind = job
    return kind == "rcnn" or MODELS.get(key, ("",))[0] == "fast"


def run_job(job, row_refs, opts):
    """Run one job; returns [(table, row name, run dict)]."""
    if opts.get("threads"):
        torch.set_num_threads(opts["threads"])
    key, seed, kind = job
    if key == "pretrained":
        model, info = None, {"steps": 0, "seconds": 0.0}
    else:
        model, info = obtain_model(key, seed, opts, reuse=opts["reuse"] or kind != "train")
    ctx, results, done = Context(opts), [], {}
    for table, name in row_refs:
        row = find_row(table, name)
        memo_key = (row["evaluator"], json.dumps(row["settings"], sort_keys=True))
        if memo_key not in done:          # lambda = 10 and anchors 3x3: one evaluation
            start = time.perf_counter()
            extra = EVALUATORS[row["evaluator"]](model, row["settings"], seed, ctx)
            done[memo_key] = (extra, round(time.perf_counter() - start, 1))
        extra, eval_seconds = done[memo_key]
        extra = dict(extra)
        seconds = info["seconds"] if kind == "train" else eval_seconds
        results.append((table, name, {"seed": seed, "mAP": extra.pop("mAP"), "seconds": seconds,
                                      "steps": info["steps"], "eval_seconds": eval_seconds, **extra}))
    return results


def _options(steps, train_images, test_images, device, root, cache_dir, reuse, threads):
    return {"steps": int(steps), "train_images": int(train_images), "test_images": int(test_images),
            "device": str(device), "root": str(root), "cache_dir": str(cache_dir), "reuse": bool(reuse),
            "threads": threads}


def run_row(table, row_name, seed=0, steps=600, *, train_images=1000, test_images=200, device="cpu",
            root=ROOT / "build" / "paper_tables", cache_dir=ROOT / "build" / "cache", reuse=True,
            threads=None):
    """Re-run one row at one seed (e.g. steps=20 in a lesson's quick setting); returns its run
    dict {"seed", "mAP", "seconds", "steps", "eval_seconds", ...}. The model it needs is trained
    first, or, with `reuse`, loaded when one with the same settings was saved before."""
    row = find_row(table, row_name)
    kind = "train" if row["evaluator"] in TRAINED_ROW_EVALUATORS else row["evaluator"]
    opts = _options(steps, train_images, test_images, device, root, cache_dir, reuse, threads)
    return run_job((row["model"], seed, kind), [(table, row_name)], opts)[0][2]


def _init_worker(threads):
    torch.set_num_threads(threads)


def _describe(job, seconds):
    key, seed, kind = job
    return f"[{time.strftime('%H:%M:%S')}] done {kind:<9} {key:<15} seed {seed}  ({seconds:.0f} s)"


def run_jobs(jobs, opts, workers):
    """All jobs, `workers` at a time in spawned processes (1: in this process), each after its
    dependency. Selective search is computed here while the first Faster R-CNN jobs train.
    svd jobs run last, alone, in this process: they time detection."""
    serial = [j for j in jobs if j[2] == "svd"]
    pending = sorted((j for j in jobs if j not in serial), key=lambda j: (j[2] != "train", j[1]))
    results, finished = [], set()

    def ensure_ss():
        if any(needs_ss(j) for j in jobs):
            ss_proposals("train", opts["train_images"], opts["cache_dir"])
            ss_proposals("test", opts["test_images"], opts["cache_dir"])

    if workers <= 1:
        ensure_ss()
        for job in pending + serial:
            start = time.perf_counter()
            results += run_job(job, jobs[job], opts)
            print(_describe(job, time.perf_counter() - start), flush=True)
        return results
    ss_ready = not any(needs_ss(j) for j in jobs)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(opts["threads"] or 1,)) as pool:
        running = {}
        while pending or running:
            for job in list(pending):
                if (dependency(job) in (None, *finished)) and (ss_ready or not needs_ss(job)):
                    running[pool.submit(run_job, job, jobs[job], opts)] = (job, time.perf_counter())
                    pending.remove(job)
            if not ss_ready:
                ensure_ss()
                ss_ready = True
                continue
            if not running:
                raise RuntimeError(f"jobs left with unmet dependencies: {pending}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job, start = running.pop(future)
                results += future.result()
                finished.add(job)
                print(_describe(job, time.perf_counter() - start), flush=True)
    for job in serial:
        start = time.perf_counter()
        results += run_job(job, jobs[job], opts)
        print(_describe(job, time.perf_counter() - start), flush=True)
    return results


# --- the JSON file -------------------------------------------------------------------------------
def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads, workers, device):
    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {"cpu": _cpu_name(), "threads_per_run": int(threads), "workers": int(workers),
            "torch": torch.__version__, "device": name, "date": datetime.date.today().isoformat()}


def settings_info(opts, seeds):
    return {"steps": opts["steps"], "seeds": list(seeds), "train_images": opts["train_images"],
            "test_images": opts["test_images"],
            "recipe": {"faster_rcnn": RECIPE["model"], "fast_rcnn": FAST_RCNN_NET, **OPTIMIZER,
                       "batch_size": 2, "selective_search": SS, "rcnn_train_images": RCNN_IMAGES,
                       "stagewise_cls_share": STAGEWISE_CLS_SHARE, "svd_timing_images": SVD_TIMING_IMAGES}}


def row_config(row):
    """What a row's runs were: the detector and its training settings, then the test settings."""
    key = row["model"]
    if key == "pretrained":
        config = {"detector": "R-CNN", "weights": "pre-trained TinyVGG (stride 8)"}
    else:
        kind, trained = MODELS[key]
        config = {"detector": "Faster R-CNN" if kind == "faster" else "Fast R-CNN", "model": key, **trained}
        if row["evaluator"] == "rcnn":
            config["detector"] = "R-CNN"
    return json.loads(json.dumps({**config, **row["settings"]}))


def assemble(tables, results):
    """{table key: table dict} with each row's runs sorted by seed."""
    out = {}
    for table in tables:
        spec = TABLES[table]
        rows = [{"name": row["name"], "config": row_config(row), "paper": row["paper"],
                 "runs": sorted((run for t, name, run in results if t == table and name == row["name"]),
                                key=lambda run: run["seed"]),
                 "note": row["note"]} for row in spec["rows"]]
        out[table] = {**{k: spec[k] for k in ("title", "paper", "paper_setting", "metric")}, "rows": rows}
    return out


SCHEMA_KEYS = {"machine": ("cpu", "threads_per_run", "workers", "torch", "device", "date"),
               "settings": ("steps", "seeds", "train_images", "test_images", "recipe")}
ROW_KEYS = ("name", "config", "paper", "runs", "note")
RUN_KEYS = ("seed", "mAP", "seconds", "steps")


def check_results(data, source="results"):
    """Raise ValueError naming `source` and the first key that the schema misses."""
    for part, keys in SCHEMA_KEYS.items():
        missing = [k for k in keys if k not in data.get(part, {})]
        if missing:
            raise ValueError(f"{source}: {part!r} lacks {missing} (rerun benchmarks/paper_tables.py)")
    for key, table in data.get("tables", {}).items():
        for k in ("title", "paper", "paper_setting", "metric", "rows"):
            if k not in table:
                raise ValueError(f"{source}: table {key!r} lacks {k!r}")
        for row in table["rows"]:
            missing = [k for k in ROW_KEYS if k not in row] + \
                      [k for run in row.get("runs", []) for k in RUN_KEYS if k not in run]
            if missing:
                raise ValueError(f"{source}: table {key!r} row {row.get('name')!r} lacks {missing}")
    return data


def write_results(data, path):
    """Write the results JSON (checked first), via a temporary file so a kill leaves the old one."""
    path = Path(path)
    check_results(data, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return path


def load_results(path=DEFAULT_OUT):
    """The results JSON as a dict, checked against the schema (ValueError naming the file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python benchmarks/paper_tables.py` first")
    return check_results(json.loads(path.read_text()), str(path))


def merge_previous(path, data):
    """Keep the tables of an earlier file at `path` that this run did not redo, when its
    settings match (same steps, seeds, images); otherwise this run's tables alone."""
    try:
        old = load_results(path)
    except (FileNotFoundError, ValueError, json.JSONDecodeError):
        return data
    if old["settings"] != json.loads(json.dumps(data["settings"])):
        return data
    tables = {**old["tables"], **data["tables"]}
    kept = sorted(set(old["tables"]) - set(data["tables"]))
    if kept:
        print(f"kept from {path}: tables {kept}")
    return {**data, "tables": {k: tables[k] for k in TABLES if k in tables}}


def print_tables(tables):
    for key, table in tables.items():
        print(f"\n{key}: {table['title']} ({table['paper']}, {table['paper_setting']})")
        for row in table["rows"]:
            maps = " ".join(f"{run['mAP']:.3f}" for run in row["runs"])
            paper = "-" if row["paper"] is None else f"{row['paper']:.1f}"
            print(f"  {row['name']:<48} paper {paper:>5}  ours {maps}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600, help="SGD steps (2 images each) of every trained row")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    p.add_argument("--workers", type=int, default=1, help="parallel processes for the jobs")
    p.add_argument("--threads", type=int, default=2, help="torch threads per process")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--device", default="cpu")
    p.add_argument("--reuse", action="store_true", help="load saved models with the same settings")
    p.add_argument("--train-images", type=int, default=1000, help="(for quick checks)")
    p.add_argument("--test-images", type=int, default=200, help="(for quick checks)")
    p.add_argument("--root", default=str(ROOT / "build" / "paper_tables"), help="where models are kept")
    p.add_argument("--cache", default=str(ROOT / "build" / "cache"), help="selective-search boxes")
    args = p.parse_args(argv)
    if args.steps < 1 or args.workers < 1 or args.threads < 1:
        p.error("--steps, --workers and --threads must be positive")
    torch.set_num_threads(args.threads)
    opts = _options(args.steps, args.train_images, args.test_images, args.device, args.root,
                    args.cache, args.reuse, args.threads)
    jobs = plan_jobs(args.tables, args.seeds)
    print(f"{len(jobs)} jobs ({sum(j[2] == 'train' for j in jobs)} trainings) for tables "
          f"{args.tables}, seeds {args.seeds}, {args.steps} steps, {args.workers} workers x "
          f"{args.threads} threads", flush=True)
    start = time.perf_counter()
    results = run_jobs(jobs, opts, args.workers)
    data = {"machine": machine_info(args.threads, args.workers, args.device),
            "settings": settings_info(opts, args.seeds), "tables": assemble(args.tables, results)}
    data = merge_previous(args.out, data)
    print_tables(data["tables"])
    print(f"\nwrote {write_results(data, args.out)} after {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
