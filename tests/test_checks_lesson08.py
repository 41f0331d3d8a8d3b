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


def cut_crown(box, window, min_visible):
    x1, y1, x2, y2 = window
    cx1, cy1 = min(max(box[0], x1), x2), min(max(box[1], y1), y2)
    cx2, cy2 = min(max(box[2], x1), x2), min(max(box[3], y1), y2)
    inside = (cx2 - cx1) * (cy2 - cy1)
    if inside <= 0:
        return None, None
    area = (box[2] - box[0]) * (box[3] - box[1])
    return [cx1 - x1, cy1 - y1, cx2 - x1, cy2 - y1], inside / area < min_visible


def test_cut_crown_solution_passes_and_slips_get_hints():
    assert L.check_cut_crown(cut_crown)

    def not_shifted(box, window, mv):
        piece, hard = cut_crown(box, window, mv)
        return (None, None) if piece is None else (
            [piece[0] + window[0], piece[1] + window[1], piece[2] + window[0], piece[3] + window[1]], hard)
    r = L.check_cut_crown(not_shifted)
    assert not r and "tile's pixels" in r.message

    def at_most(box, window, mv):
        piece, hard = cut_crown(box, window, mv)
        if piece is None:
            return None, None
        inside = (piece[2] - piece[0]) * (piece[3] - piece[1])
        return piece, inside / ((box[2] - box[0]) * (box[3] - box[1])) <= mv
    r = L.check_cut_crown(at_most)
    assert not r and "not <=" in r.message

    r = L.check_cut_crown(lambda box, window, mv: cut_crown(box, window, mv)
                          if cut_crown(box, window, mv)[0] is not None else ([0, 0, 0, 0], True))
    assert not r and "(None, None)" in r.message
    assert not L.check_cut_crown(lambda box, window, mv: [1, 2, 3])
