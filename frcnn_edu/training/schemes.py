"""The ways Faster R-CNN sec. 3.2 trains one network that both proposes and detects.

* Approximate joint training: one loop over the sum of the four losses. The detector treats
  the RPN's proposals as constants, so all weights are updated but the gradient of the detector
  loss with respect to the proposal coordinates is ignored (that is the approximation).
* Non-approximate joint training: the same loop on a model built with `joint="exact"`: the
  detector loss also back-propagates through RoIAlign (differentiable in the box coordinates,
  `roi_ops.roi_align_sampled`) into the proposal coordinates and the RPN's box regression.
* 4-step alternating training, the paper's main scheme:
  1. train the RPN, initialised from the pre-trained backbone;
  2. train a separate Fast R-CNN (a fresh pre-trained backbone) on step 1's proposals;
  3. initialise the RPN from the detector's conv layers, freeze those shared layers, and
     fine-tune only the RPN's own layers;
  4. keep the shared layers frozen and fine-tune the detector's own layers on step 3's
     proposals. The two now share their conv layers: one unified network.
The paper leaves non-approximate joint training out of its experiments: it needs an RoI layer
differentiable in the box coordinates (it cites the "RoI warping" layer of Dai et al., 2016);
RoIAlign's bilinear sampling is one.

Every function takes a budget and an `out` folder; each stage checkpoints in its own sub-folder,
so an interrupted 4-step run resumes in the stage where it stopped.
"""
import copy
from pathlib import Path

import torch

from .loop import check_budget, check_dataset, train

# Share of the budget each of the four steps gets. The shared conv layers learn in step 2 only
# (step 1's copy is thrown away, steps 3 and 4 freeze them), so on a budget of minutes step 2
# gets most of it: an RPN proposes well long before a detector classifies well, and steps 3
# and 4 only fine-tune the layers on top. In 5-minute runs of the command line's recipe
# (benchmarks/RESULTS.md) the mAP hardly moved between (0.1-0.2, 0.55-0.65, 0.05-0.15, 0.1-0.15)
# (0.89-0.90); making step 2's steps faster is what gained.
FOUR_STEP_SHARES = (0.1, 0.6, 0.15, 0.15)


def _sub(out, name):
    return None if out is None else Path(out) / name


def _budget(minutes, steps, share):
    if minutes is not None:
        return {"minutes": minutes * share}
    return {"steps": max(1, round(steps * share))}


def train_joint(model, dataset, *, minutes=None, steps=None, epochs=None, out=None, **kwargs):
    """Joint training: `train` on the sum of the four losses.

    Approximate or non-approximate as the model was built (`FasterRCNN(..., joint=...)`).
    `step_fn=my_step` trains with one's own step, `my_step(model, images, targets, optimizer)`
    returning the dict of losses (lesson 05's exercise); the other keywords go to `train`.
    """
    check_budget(steps, epochs, minutes)
    check_dataset(dataset, model.num_classes)
    return train(model, dataset, minutes=minutes, steps=steps, epochs=epochs,
                 out=_sub(out, "joint"), desc="joint", **kwargs)


def rpn_regression_gradients(model, dataset, batches=10, images_per_batch=2):
    """What the detector loss does to the RPN in joint training: over `batches` training batches
    of `dataset`, the norm of the gradient on the RPN's box-regression weights from the RPN loss
    and from the detector loss, and the cosine between the two; returns their medians
    (norm_rpn, norm_detector, cosine). With joint="approximate" the detector's norm is 0 (the
    proposals are constants); with joint="exact" it is the term that scheme adds.

    Each batch's sampling is seeded by its index, so two models see the same batches; the
    model's training mode is restored afterwards and no weight changes."""
    weight, rows, was_training = model.rpn.head.bbox_pred.weight, [], model.training
    model.train()
    for b in range(batches):
        images, targets = zip(*[dataset[images_per_batch * b + k] for k in range(images_per_batch)])
        torch.manual_seed(b)
        losses = model(list(images), list(targets))
        g_rpn, = torch.autograd.grad(losses["loss_objectness"] + losses["loss_rpn_box_reg"], weight,
                                     retain_graph=True)
        g_det, = torch.autograd.grad(losses["loss_classifier"] + losses["loss_box_reg"], weight,
                                     allow_unused=True)
        g_det = torch.zeros_like(weight) if g_det is None else g_det
        cosine = torch.cosine_similarity(g_rpn.flatten(), g_det.flatten(), 0)
        rows.append((g_rpn.norm(), g_det.norm(), cosine))
    model.train(was_training)
    return tuple(torch.tensor(rows).median(0).values.tolist())


class WithProposals(torch.utils.data.Dataset):
    """`dataset` with each image's external proposals in its target (flips move them too)."""

    def __init__(self, dataset, proposals):
        if len(proposals) != len(dataset):
            raise ValueError(f"proposals has {len(proposals)} entries for {len(dataset)} images")
        self.dataset, self.proposals = dataset, proposals
        self.num_classes = getattr(dataset, "num_classes", None)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, target = self.dataset[i]
        return image, dict(target, proposals=self.proposals[i])


def _on_external_proposals(model, images, targets):
    # by keyword: a FastRCNN and a FasterRCNN (whose RPN then sits unused) both take this call
    return model(images, proposals=[t["proposals"] for t in targets], targets=targets)


def train_fast_rcnn(model, dataset, proposals, *, minutes=None, steps=None, epochs=None,
                    out=None, **kwargs):
    """Fast R-CNN on fixed proposals (selective search): hierarchical sampling, sec. 2.3.

    Each step takes N = 2 images (batch_size=2) and samples R / N = 64 RoIs from each (set by
    the model's rois_per_image), a quarter of them foreground.
    """
    check_budget(steps, epochs, minutes)
    check_dataset(dataset, model.num_classes)
    return train(model, WithProposals(dataset, proposals), forward=_on_external_proposals,
                 minutes=minutes, steps=steps, epochs=epochs, out=_sub(out, "fast_rcnn"),
                 desc="Fast R-CNN", **kwargs)


def _rpn_only(model, images, targets):
    return model(images, targets, stages="rpn")


class RPNProposals(WithProposals):
    """`dataset` with a trained RPN's proposals (training top-N, 2000) in each target, computed
    the first time an image is drawn and kept: step 2 of 4-step training. The authors' released
    code does the same (step 1's RPN writes its proposals to disk once); here that saves the
    proposer's forward pass, about a third of a step-2 step, from the second epoch on. Flips
    move the kept proposals with the pixels, as they move selective search's."""

    def __init__(self, dataset, proposer):
        super().__init__(dataset, [None] * len(dataset))
        self.proposer = proposer

    def __getitem__(self, i):
        image, target = self.dataset[i]
        if self.proposals[i] is None:
            device = next(self.proposer.parameters()).device
            boxes, _ = self.proposer.propose([image.to(device)], train_settings=True)
            self.proposals[i] = boxes[0].cpu()
        return image, dict(target, proposals=self.proposals[i])


def _detector_on_proposals(model, images, targets):
    """Step 2: the detector (its RPN unused) trains on the proposals in the targets."""
    return model(images, targets, stages="detector", proposals=[t["proposals"] for t in targets])


def _detector_only(model, images, targets):
    """Step 4: the unified model's own RPN proposes (its conv layers are shared and frozen)."""
    return model(images, targets, stages="detector")


def _frozen_backbone_params(model, part):
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return list(getattr(model, part).parameters())


def train_four_step(make_model, dataset, *, minutes=None, steps=None, out=None,
                    shares=FOUR_STEP_SHARES, **kwargs):
    """The paper's 4-step alternating training. Returns (model, dict of the 4 histories).

    `make_model()` must build a fresh model with the pre-trained backbone (steps 1 and 2 each
    start from one). The budget (minutes or steps) is split by `shares`.
    """
    if (minutes is None) == (steps is None):
        raise ValueError("give exactly one budget: minutes= or steps=")
    check_budget(steps=steps, minutes=minutes)  # positive, before any model is built
    rpn_model, detector = make_model(), make_model()
    check_dataset(dataset, detector.num_classes)
    hist = {}
    hist["1_rpn"] = train(rpn_model, dataset, forward=_rpn_only, out=_sub(out, "step1_rpn"),
                          desc="step 1: RPN", **_budget(minutes, steps, shares[0]), **kwargs)
    rpn_model.eval()
    hist["2_detector"] = train(detector, RPNProposals(dataset, rpn_model),
                               forward=_detector_on_proposals,
                               params=[*detector.backbone.parameters(), *detector.roi_heads.parameters()],
                               out=_sub(out, "step2_detector"), desc="step 2: Fast R-CNN",
                               **_budget(minutes, steps, shares[1]), **kwargs)
    unified = copy.deepcopy(detector)  # shared conv layers from the detector (step 3 starts here)
    unified.rpn.load_state_dict(rpn_model.rpn.state_dict())
    hist["3_rpn"] = train(unified, dataset, forward=_rpn_only,
                          params=_frozen_backbone_params(unified, "rpn"),
                          out=_sub(out, "step3_rpn"), desc="step 3: RPN, shared frozen",
                          **_budget(minutes, steps, shares[2]), **kwargs)
    hist["4_detector"] = train(unified, dataset, forward=_detector_only,
                               params=_frozen_backbone_params(unified, "roi_heads"),
                               out=_sub(out, "step4_detector"), desc="step 4: detector head",
                               **_budget(minutes, steps, shares[3]), **kwargs)
    for p in unified.parameters():
        p.requires_grad_(True)
    return unified, hist
