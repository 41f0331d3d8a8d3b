"""Lesson 08's checker: the solution passes; the usual slips fail, each with its hint."""
import torch

from frcnn_edu import checks
from frcnn_edu.anchors import anchor_sizes_from_boxes  # in the globals, as in a notebook
from frcnn_edu.checks import lesson08 as L


def _sizes(boxes):
    wh = boxes[:, 2:] - boxes[:, :2]
    return (wh[:, 0] * wh[:, 1]).sqrt()


def solution(boxes, n):
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.quantile(_sizes(boxes).double(), q).round().int().tolist()


def test_lesson_module_is_reachable_and_the_solution_passes():
    assert checks.lesson08 is L
    r = L.check_anchor_sizes(solution)
    assert r and "25 sets of boxes" in r.message


def test_slips_get_their_hints():
    def widths(boxes, n):
        w = (boxes[:, 2] - boxes[:, 0]).double()
        return torch.quantile(w, (torch.arange(n) + 0.5).double() / n).round().tolist()
    r = L.check_anchor_sizes(widths)
    assert not r and "you used the widths" in r.message

    def min_to_max(boxes, n):
        q = torch.linspace(0, 1, n).double() if n > 1 else torch.tensor([0.5]).double()
        return torch.quantile(_sizes(boxes).double(), q).round().tolist()
    r = L.check_anchor_sizes(min_to_max)
    assert not r and "(i + 0.5) / n" in r.message

    def unrounded(boxes, n):
        return torch.quantile(_sizes(boxes).double(), (torch.arange(n) + 0.5).double() / n).tolist()
    r = L.check_anchor_sizes(unrounded)
    assert not r and "whole pixels" in r.message

    r = L.check_anchor_sizes(lambda boxes, n: [round(float(_sizes(boxes).mean()))] * n)
    assert not r and "mean" in r.message
    r = L.check_anchor_sizes(lambda boxes, n: [20, 30])
    assert not r and "shape" in r.message


def test_stub_and_library_call():
    def stub(boxes, n):
        raise NotImplementedError
    assert L.check_anchor_sizes(stub).status == "todo"
    r = L.check_anchor_sizes(lambda b, n: anchor_sizes_from_boxes(b, n))
    assert not r and "anchor_sizes_from_boxes" in r.message
