"""Training R-CNN's linear SVMs (with hard negatives) and box regressors (R-CNN sec. 2.3, app. C).

For each class: positives are the ground-truth boxes of that class; negatives are proposals
whose IoU with every box of that class is below 0.3 (the paper's threshold, chosen by grid
search). There are far too many negatives to use at once, so training starts from a random
subset and repeatedly adds the "hard" negatives the current SVM scores above -1 (inside the
margin), then retrains: hard-negative mining. The box regressors are ridge regressions
(lambda = 1000) from pool5 features of proposals with IoU > 0.6 to a box of the class, to the
(tx, ty, tw, th) targets of Faster R-CNN eq. 2 (first defined in R-CNN app. C).

Shape key:
    M  regions collected over the training images    F  fc7 size    F5  pool5 size
    K  foreground classes
"""
import torch
from tqdm.auto import tqdm

from ..boxes import box_iou, encode_boxes

FEATURE_NORM = 20.0  # R-CNN scales fc7 features to this mean norm before the SVMs


def collect_regions(model, dataset, proposals, reg_iou=0.6, progress=True):
    """fc7 features of every proposal and gt box, their best IoU per class, and regression data."""
    fc7, ious, reg_x, reg_y, reg_c = [], [], [], [], []
    k = model.num_classes - 1
    for i in tqdm(range(len(dataset)), desc="R-CNN features", disable=not progress, leave=False):
        image, target = dataset[i]
        gt, labels = target["boxes"], target["labels"]
        boxes = torch.cat([gt, proposals[i]])
        pool5, feats = model.features(image, boxes)
        iou = box_iou(boxes, gt) if len(gt) else boxes.new_zeros(len(boxes), 0)
        per_class = boxes.new_zeros(len(boxes), k)
        for c in range(1, k + 1):
            if (labels == c).any():
                per_class[:, c - 1] = iou[:, labels == c].max(1).values
        fc7.append(feats)
        ious.append(per_class)
        if len(gt):
            best, j = iou.max(1)
            sel = best > reg_iou
            reg_x.append(pool5[sel])
            reg_y.append(encode_boxes(boxes[sel], gt[j[sel]]))
            reg_c.append(labels[j[sel]])
    return torch.cat(fc7), torch.cat(ious), torch.cat(reg_x), torch.cat(reg_y), torch.cat(reg_c)


def _train_svm(x, y, c=1e-3, steps=100):
    """Minimise 0.5 |w|^2 + c * sum hinge(y (x.w + b)) with L-BFGS; x [M, F], y in {-1, +1}."""
    w = x.new_zeros(x.shape[1] + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")
    xb = torch.cat([x, x.new_ones(len(x), 1)], 1)

    def closure():
        opt.zero_grad()
        margin = torch.clamp(1 - y * (xb @ w), min=0)
        loss = 0.5 * w[:-1].pow(2).sum() + c * margin.pow(2).sum()  # squared hinge: smooth
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach()


def fit_svms(fc7, ious, neg_iou=0.3, rounds=3, initial_negatives=2000, c=1e-3, generator=None):
    """One SVM per class with hard-negative mining. Returns weights [K, F] and biases [K]."""
    k = ious.shape[1]
    weights = fc7.new_zeros(k, fc7.shape[1] + 1)
    for cls in range(k):
        pos = fc7[ious[:, cls] >= 1.0 - 1e-6]           # the ground-truth boxes themselves
        negatives = fc7[ious[:, cls] < neg_iou]
        pick = torch.randperm(len(negatives), generator=generator)[:initial_negatives]
        active = negatives[pick]
        for _ in range(rounds):
            x = torch.cat([pos, active])
            y = torch.cat([x.new_ones(len(pos)), -x.new_ones(len(active))])
            w = _train_svm(x, y, c)
            scores = negatives @ w[:-1] + w[-1]
            hard = negatives[scores > -1.0]                 # inside the margin: "hard"
            active = torch.unique(torch.cat([active, hard]), dim=0)
        weights[cls] = w
    return weights[:, :-1], weights[:, -1]


def ridge(x, y, lam):
    """argmin_w |x w - y|^2 + lam |w|^2 for x [M, F], y [M, T] -> w [F, T] (no intercept).

    Two equal closed forms: (x^T x + lam I)^-1 x^T y solves an F x F system, and
    x^T (x x^T + lam I)^-1 y an M x M one. We take the smaller: pool5 has F5 = 6272 values while
    a class of a small training set has a few hundred boxes, and then the second form is
    hundreds of times cheaper (F5^3 / 3 is about 80 GFLOP per class).
    """
    m, f = x.shape
    if m < f:
        return x.T @ torch.linalg.solve(x @ x.T + lam * torch.eye(m, dtype=x.dtype, device=x.device), y)
    return torch.linalg.solve(x.T @ x + lam * torch.eye(f, dtype=x.dtype, device=x.device), x.T @ y)


def fit_regressors(reg_x, reg_y, reg_c, num_classes, lam=1000.0):
    """Class-specific ridge regression (closed form) pool5 -> (tx, ty, tw, th). [K*4, F5 + 1]."""
    k, f5 = num_classes - 1, reg_x.shape[1]
    weight, bias = reg_x.new_zeros(4 * k, f5), reg_x.new_zeros(4 * k)
    for cls in range(1, k + 1):
        x, y = reg_x[reg_c == cls], reg_y[reg_c == cls]
        if len(x) == 0:
            continue
        mean_x, mean_y = x.mean(0), y.mean(0)   # centring: the bias is not regularised
        w = ridge(x - mean_x, y - mean_y, lam)                  # [F5, 4]
        weight[4 * (cls - 1):4 * cls] = w.T
        bias[4 * (cls - 1):4 * cls] = mean_y - mean_x @ w
    return weight, bias


@torch.no_grad()
def fit_rcnn(model, dataset, proposals, progress=True, seed=0):
    """Learn `model`'s SVMs and box regressors from `dataset` and its per-image `proposals`."""
    if len(proposals) != len(dataset):
        raise ValueError(f"proposals has {len(proposals)} entries for {len(dataset)} images")
    model.eval()
    fc7, ious, reg_x, reg_y, reg_c = collect_regions(model, dataset, proposals, progress=progress)
    scale = FEATURE_NORM / fc7.norm(dim=1).mean().clamp(min=1e-6)
    with torch.enable_grad():
        w, b = fit_svms(fc7 * scale, ious, generator=torch.Generator().manual_seed(seed))
    model.svm.weight.copy_(w * scale)   # fold the feature scaling into the SVM weights
    model.svm.bias.copy_(b)
    rw, rb = fit_regressors(reg_x, reg_y, reg_c, model.num_classes)
    model.regressor.weight.copy_(rw)
    model.regressor.bias.copy_(rb)
    return model
