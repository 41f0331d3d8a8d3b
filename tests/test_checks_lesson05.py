"""Tests for the lesson 05 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import torch

from frcnn_edu import checks
from frcnn_edu.checks import lesson05 as L

RIGHT_PARTS = {1: {"backbone", "rpn"}, 2: {"backbone", "roi_heads"}, 3: {"rpn"}, 4: {"roi_heads"}}


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson05 is L


# ------------------------------------------------------------------ exercise 1: trained parts

def test_library_trained_parts_match_the_paper_and_keep_the_random_state():
    state = torch.random.get_rng_state()
    parts = L.library_trained_parts()
    assert torch.equal(state, torch.random.get_rng_state())
    assert {k: set(v) for k, v in parts.items() if k != "joint"} == RIGHT_PARTS
    assert parts["joint"] == set(L.PARTS)


def test_check_trained_parts_right_in_several_forms():
    assert L.check_trained_parts(RIGHT_PARTS)
    assert L.check_trained_parts({str(k): sorted(v) for k, v in RIGHT_PARTS.items()})
    as_list = [{"backbone", "rpn"}, ("backbone", "roi_heads"), "rpn", ["roi_heads"]]
    assert L.check_trained_parts(as_list)
    assert L.check_trained_parts({k: {p.upper() for p in v} for k, v in RIGHT_PARTS.items()})


def _with(step, parts):
    return {**RIGHT_PARTS, step: set(parts)}


def test_check_trained_parts_wrong_with_hints():
    res = L.check_trained_parts(_with(3, {"backbone", "rpn"}))      # step 3 does not freeze
    assert not res and "step 3" in res.message and "FREEZES" in res.message
    res = L.check_trained_parts(_with(4, {"backbone", "roi_heads"}))
    assert not res and "step 4" in res.message and "frozen" in res.message
    res = L.check_trained_parts(_with(2, {"backbone", "rpn", "roi_heads"}))
    assert not res and "separate Fast R-CNN" in res.message
    res = L.check_trained_parts(_with(2, {"roi_heads"}))
    assert not res and "its own conv layers" in res.message
    res = L.check_trained_parts(_with(1, {"rpn"}))
    assert not res and "end to end" in res.message
    res = L.check_trained_parts(_with(4, {"rpn", "roi_heads"}))
    assert not res and "only proposes" in res.message
    every = {k: set(L.PARTS) for k in (1, 2, 3, 4)}                   # "joint in every step"
    res = L.check_trained_parts(every)
    assert not res and "step 1" in res.message and "RPN alone" in res.message


def test_check_trained_parts_bad_input():
    assert "unknown part" in L.check_trained_parts(_with(1, {"conv", "rpn"})).message
    assert "give a dict" in L.check_trained_parts({1: {"rpn"}}).message
    assert "give a dict" in L.check_trained_parts(None).message
    assert "give a dict" in L.check_trained_parts([{"rpn"}] * 3).message
    assert not L.check_trained_parts({1: 5, 2: 6, 3: 7, 4: 8})


# ------------------------------------------------------------------ exercise 2: dropped gradient

def test_check_dropped_gradient():
    assert L.check_dropped_gradient("c")
    assert L.check_dropped_gradient(" (C) ")
    res = L.check_dropped_gradient("a")
    assert not res and "all weights are updated" in res.message
    res = L.check_dropped_gradient("d")
    assert not res and "NON-approximate" in res.message
    res = L.check_dropped_gradient("b")
    assert not res and "does reach the shared" in res.message
    res = L.check_dropped_gradient("e")
    assert not res and "box coordinates" in res.message
    assert "one letter" in L.check_dropped_gradient("z").message
    assert "one letter" in L.check_dropped_gradient(None).message
    assert set(L.DROPPED_GRADIENT_CHOICES) == {"a", "b", "c", "d", "e"}


# ------------------------------------------------------------------ exercise 3: time saved

def test_check_time_saved_right():
    assert L.check_time_saved(lambda t4, tj: 1 - tj / t4)
    assert L.check_time_saved(lambda t4, tj: torch.tensor((t4 - tj) / t4))


def test_check_time_saved_wrong():
    res = L.check_time_saved(lambda t4, tj: tj / t4)
    assert not res and "1 minus it" in res.message
    res = L.check_time_saved(lambda t4, tj: t4 / tj)
    assert not res and "speed-up" in res.message
    res = L.check_time_saved(lambda t4, tj: 100 * (1 - tj / t4))
    assert not res and "percentage" in res.message
    res = L.check_time_saved(lambda t4, tj: (t4 - tj) / tj)
    assert not res and "4-step time" in res.message
    res = L.check_time_saved(lambda t4, tj: tj / t4 - 1)
    assert not res and "sign" in res.message
    res = L.check_time_saved(lambda t4, tj: 0.3)
    assert not res and "(t_4step - t_joint) / t_4step" in res.message


def test_check_time_saved_stub_and_bad_return():
    res = L.check_time_saved(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_time_saved(lambda t4, tj: "40%")
    assert not res and "number" in res.message
    res = L.check_time_saved(lambda t4, tj: tj / 0.0)
    assert not res and "ZeroDivisionError" in res.message


# ------------------------------------------------------------------ exercise 4: ladder ratio

def _speedup(times):
    ss = times["selective search"]
    return (times["R-CNN"] - ss) / (times["Fast R-CNN"] - ss)


def test_check_speedup_right_and_paper_case():
    assert L.check_speedup_without_proposals(_speedup)
    assert round(_speedup(L._LADDER_CASES[0])) == 147          # 47 / 0.32 = 146.9: "146x"


def test_check_speedup_wrong():
    res = L.check_speedup_without_proposals(lambda t: t["R-CNN"] / t["Fast R-CNN"])
    assert not res and "subtract it from both" in res.message
    res = L.check_speedup_without_proposals(
        lambda t: (t["R-CNN"] - t["selective search"]) / t["Fast R-CNN"])
    assert not res and "BOTH" in res.message
    res = L.check_speedup_without_proposals(lambda t: 1 / _speedup(t))
    assert not res and "inverted" in res.message
    res = L.check_speedup_without_proposals(
        lambda t: (t["R-CNN"] - t["selective search"]) / t["Faster R-CNN"])
    assert not res and "not with Faster R-CNN" in res.message
    res = L.check_speedup_without_proposals(lambda t: 146)
    assert not res and "(R-CNN - selective search)" in res.message


def test_check_speedup_stub_and_crash():
    res = L.check_speedup_without_proposals(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_speedup_without_proposals(lambda t: t["rcnn"])
    assert not res and "KeyError" in res.message
    res = L.check_speedup_without_proposals(lambda t: None)
    assert not res and "number" in res.message


def test_result_repr():
    assert repr(L.check_time_saved(lambda t4, tj: 1 - tj / t4)).startswith("Correct: ")
    assert repr(L.check_dropped_gradient("a")).startswith("Not yet: ")


# ------------------------------------------------------------------ exercise 5: one joint step
def right_step(model, images, targets, optimizer):
    features, sizes, targets = model.shared_features(images, targets)
    proposals, _, rpn_losses = model.rpn(features, sizes, targets)
    proposals = [torch.cat([p.detach(), t["boxes"]]) for p, t in zip(proposals, targets)]
    losses = {**rpn_losses, **model.roi_heads(features, proposals, sizes, targets)}
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    return losses


def slip(detach=True, add_gt=True, zero_grad=True, step=True, keys=None, returns="dict"):
    def fn(model, images, targets, optimizer):
        features, sizes, targets = model.shared_features(images, targets)
        proposals, _, rpn_losses = model.rpn(features, sizes, targets)
        proposals = [p.detach() if detach else p for p in proposals]
        if add_gt:
            proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets)]
        losses = {**rpn_losses, **model.roi_heads(features, proposals, sizes, targets)}
        if zero_grad:
            optimizer.zero_grad()
        sum(losses[k] for k in (keys or losses)).backward()
        if step:
            optimizer.step()
        return losses if returns == "dict" else sum(losses.values())
    return fn


def test_check_joint_step_right_and_enough_cases():
    assert len(L.JOINT_STEP_CASES) >= 20
    assert any(n_boxes == 0 for _, n_boxes, _, _ in L.JOINT_STEP_CASES)   # an image without objects
    state = torch.random.get_rng_state()
    res = L.check_joint_step(right_step)
    assert res, res.message
    assert torch.equal(state, torch.random.get_rng_state())


def test_check_joint_step_wrong_with_hints():
    cases = [(slip(detach=False), "NON-approximate"), (slip(zero_grad=False), "zero_grad"),
             (slip(add_gt=False), "ground-truth"), (slip(keys=L.RPN_LOSSES), "only the RPN"),
             (slip(keys=L.DETECTOR_LOSSES), "only the detector"), (slip(step=False), "optimizer.step"),
             (slip(returns="total"), "return the dict")]
    for fn, hint in cases:
        res = L.check_joint_step(fn)
        assert not res and hint in res.message and res.message.startswith("case "), res.message


def test_check_joint_step_refuses_the_library_step_under_any_name():
    from frcnn_edu.training import training_step
    from frcnn_edu.training.loop import training_step as same

    def via_library(model, images, targets, optimizer):
        return training_step(model, images, targets, optimizer)

    def via_alias(model, images, targets, optimizer):
        return same(model, images, targets, optimizer)
    for fn in (via_library, via_alias):
        res = L.check_joint_step(fn)
        assert not res and "library's own training step" in res.message

    def via_forward(model, images, targets, optimizer):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        return losses
    res = L.check_joint_step(via_forward)
    assert not res and "model.shared_features" in res.message


def test_check_joint_step_stub_crash_and_keywords():
    assert "not filled in" in L.check_joint_step(_stub).message
    todo = L.check_joint_step(None)  # a student copy's stub leaves the answer None
    assert not todo and todo.status == "todo" and "not filled in" in todo.message
    assert "pass your function" in L.check_joint_step(3).message

    def crash(model, images, targets, optimizer):
        raise KeyError("boxes")
    assert "KeyError" in L.check_joint_step(crash).message

    def keyword_only(*, model, images, targets, optimizer):   # the checker calls positionally
        return right_step(model, images, targets, optimizer)
    assert not L.check_joint_step(keyword_only)


def test_train_joint_with_a_step_fn_trains_with_it():
    from frcnn_edu.data import ShapesDataset
    from frcnn_edu.training import train_joint
    data = ShapesDataset("train", num_images=4, image_size=(64, 64), scale_range=(16, 40))
    calls = []

    def counting(model, images, targets, optimizer):
        calls.append(len(images))
        return right_step(model, images, targets, optimizer)
    model, _, _, _, _, _ = L._case(0)
    history = train_joint(model, data, steps=3, step_fn=counting, progress=False)
    assert calls == [2, 2, 2] and len(history) == 3 and set(L.LOSS_NAMES) <= set(history[0])
