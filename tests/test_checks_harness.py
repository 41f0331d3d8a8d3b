"""Tests for the shared checker harness: positional calls, the smallest failing case, the
tripwire on the functions an exercise replaces, the records the grader reads."""
import torch

import frcnn_edu.boxes as boxes_module
from frcnn_edu import boxes as boxes_alias
from frcnn_edu.boxes import box_iou, nms
from frcnn_edu.checks import harness, lesson00
from frcnn_edu.checks.result import EXERCISES, METADATA_KEY, RECORDS, Result, records_json


def _iou_by_hand(a, b):
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(a, b):
    return float(box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0, 0])


CASES = [((0.0, 0.0, 10.0, 10.0), (5.0, 0.0, 15.0, 10.0)),
         ((0.0, 0.0, 4.0, 4.0), (8.0, 8.0, 9.0, 9.0)),
         ((0.0, 0.0, 100.0, 100.0), (10.0, 10.0, 20.0, 20.0))]


def _check(fn, **kw):
    return harness.check_function(fn, _reference, CASES, harness.close(atol=1e-6),
                                  convert=lambda g, a: float(g), name="iou", **kw)


def test_passes_and_reports_the_case_count():
    res = _check(_iou_by_hand)
    assert res and "3 cases" in res.message and res.status == "pass"


def test_smallest_failing_case_with_inputs_expected_got_and_hint():
    def unclamped(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)

    res = harness.check_function(unclamped, _reference, CASES, harness.close(),
                                 convert=lambda g, a: float(g), hint="clamp at 0", name="iou")
    assert not res and res.status == "fail"
    assert "1 of 3 cases fail" in res.message
    assert "iou((0.0, 0.0, 4.0, 4.0), (8.0, 8.0, 9.0, 9.0))" in res.message
    assert "gave 16, expected 0" in res.message and "clamp at 0" in res.message


def test_the_smallest_failing_case_is_reported():
    cases = [(list(range(9)),), (list(range(2)),), (list(range(5)),), ([],)]
    res = harness.check_function(lambda xs: sum(xs) + 1, sum, cases,
                                 lambda got, want, args: got == want, name="total")
    assert "4 of 4 cases fail" in res.message and "total([])" in res.message
    res = harness.check_function(lambda xs: sum(xs) + (len(xs) > 3), sum, cases,
                                 lambda got, want, args: got == want, name="total")
    assert "2 of 4 cases fail" in res.message and "total([0, 1, 2, 3, 4])" in res.message


def test_student_function_is_called_positionally():
    seen = []

    def renamed(first, second):
        seen.append((first, second))
        return _iou_by_hand(first, second)

    assert _check(renamed) and len(seen) == len(CASES)


def test_inputs_are_copied_before_the_student_sees_them():
    data = torch.tensor([1.0, 2.0])

    def mutates(t):
        t.zero_()
        return float(t.sum())

    harness.check_function(mutates, lambda t: float(t.sum()), [(data,)], harness.close())
    assert data.tolist() == [1.0, 2.0]


def test_stub_crash_and_not_a_function():
    def stub(a, b):
        raise NotImplementedError

    res = _check(stub)
    assert not res and res.status == "todo" and "not filled in" in res.message
    res = _check(lambda a, b: 1 / 0)
    assert not res and res.status == "error" and "ZeroDivisionError" in res.message
    assert _check(None).status == "todo"
    assert "pass your function" in _check(3.0).message


def test_tripwire_catches_every_way_to_reach_the_library_function():
    forbidden = ["frcnn_edu.boxes.box_iou"]
    ways = [lambda a, b: _reference(a, b),                                     # via a helper
            lambda a, b: float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]),  # global
            lambda a, b: float(boxes_module.box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]),
            lambda a, b: float(boxes_alias.box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]),
            box_iou]                                                          # the function itself
    for way in ways:
        res = _check(way, forbidden=forbidden)
        assert not res and "your solution calls frcnn_edu.boxes.box_iou; write it yourself" \
            in res.message, way
    assert boxes_module.box_iou is box_iou                                   # restored afterwards


def test_tripwire_cannot_be_swallowed():
    def sneaky(a, b):
        try:
            return _reference(a, b)
        except Exception:
            return _iou_by_hand(a, b)

    def sneakier(a, b):
        try:
            return _reference(a, b)
        except BaseException:                  # even this: the call was recorded
            return _iou_by_hand(a, b)

    assert "calls frcnn_edu.boxes.box_iou" in _check(sneaky, forbidden=["frcnn_edu.boxes.box_iou"]).message
    assert "calls frcnn_edu.boxes.box_iou" in _check(sneakier, forbidden=["frcnn_edu.boxes.box_iou"]).message


def test_library_code_may_still_use_a_forbidden_function_internally():
    """nms uses IoU inside the library: forbidding box_iou must not break a student's call to
    a different library function (only the student's own calls trip)."""
    def uses_nms(a, b):
        nms(torch.tensor([a, b]), torch.tensor([0.9, 0.8]), 0.5)   # library code calling IoU
        return _iou_by_hand(a, b)

    assert _check(uses_nms, forbidden=["frcnn_edu.boxes.box_iou"])


def test_checkers_register_and_record_for_the_grader():
    assert "lesson00.iou" in EXERCISES["lesson00"]
    before = len(RECORDS)
    res = lesson00.check_iou(_iou_by_hand)
    assert res.exercise == "lesson00.iou"
    assert RECORDS[before:] == [{"exercise": "lesson00.iou", "status": "pass", "message": res.message}]
    data, metadata = res._repr_mimebundle_()
    assert data["text/plain"].startswith("Correct: ")
    assert metadata[METADATA_KEY]["status"] == "pass"
    assert '"lesson00.iou"' in records_json()


def test_a_checker_that_cannot_read_an_answer_reports_instead_of_raising():
    res = lesson00.check_precision_recall(object(), 0.5)
    assert isinstance(res, Result) and not res
