"""Tests for the lesson 07 checkers: a right answer passes, usual slips fail with their hint, a
stub is reported, and an answer that calls the library function it replaces is refused."""
import torch
import torch.nn.functional as F

from frcnn_edu import checks
from frcnn_edu.checks import lesson07 as L
from frcnn_edu.roi_ops import roi_align


def _stub(*args):
    raise NotImplementedError("replace this line with your answer")


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson07 is L


def _target(mask, box, m, aligned=True, op=lambda f: f >= 0.5, transpose=False):
    rois = torch.tensor([[0.0, *box]])
    frac = roi_align(mask[None, None].float(), rois, m, 1.0, -1, aligned=aligned)[0, 0]
    out = op(frac).float()
    return out.t() if transpose else out


def test_mask_target_right_answer_passes():
    r = L.check_mask_target(lambda mask, box, m: _target(mask, box, m))
    assert r and "28 RoIs" in r.message


def test_mask_target_slips_get_their_hints():
    r = L.check_mask_target(lambda mask, box, m: _target(mask, box, m, op=lambda f: f))
    assert not r and "binary" in r.message and "case 0" in r.message
    r = L.check_mask_target(lambda mask, box, m: _target(mask, box, m, aligned=False))
    assert not r and "aligned=True" in r.message
    r = L.check_mask_target(lambda mask, box, m: _target(mask, box, m, transpose=True))
    assert not r and "transposed" in r.message
    r = L.check_mask_target(lambda mask, box, m: torch.zeros(m, m))
    assert not r and "cells differ" in r.message
    r = L.check_mask_target(lambda mask, box, m: torch.zeros(28, 28) if m == 14 else _target(mask, box, m))
    assert not r and "shape" in r.message and "m = 14" in r.message


def test_mask_target_stub_crash_and_library_call():
    assert "not filled in" in L.check_mask_target(_stub).message
    r = L.check_mask_target(lambda mask, box, m: 1 / 0)
    assert not r and "ZeroDivisionError" in r.message

    def calls_library(mask, box, m):
        from frcnn_edu.models import mask_rcnn
        return mask_rcnn.project_masks_on_boxes(mask[None], torch.tensor([box]), torch.tensor([0]), m)[0]
    r = L.check_mask_target(calls_library)
    assert not r and "uses" in r.message
    from frcnn_edu.models.mask_rcnn import project_masks_on_boxes  # held in the globals
    r = L.check_mask_target(lambda mask, box, m: project_masks_on_boxes(
        mask[None], torch.tensor([box]), torch.tensor([0]), m)[0])
    assert not r and "project_masks_on_boxes" in r.message
    # the library works again afterwards
    assert project_masks_on_boxes(torch.ones(1, 4, 4), torch.tensor([[0.0, 0, 4, 4]]),
                                  torch.tensor([0]), 2).sum() == 4


def _loss(logits, labels, targets):
    if len(labels) == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels)), labels], targets)


def test_mask_loss_right_answer_passes():
    assert L.check_mask_loss(_loss)


def test_mask_loss_slips_get_their_hints():
    def all_channels(x, labels, t):
        return F.binary_cross_entropy_with_logits(x, t[:, None].expand_as(x))
    r = L.check_mask_loss(all_channels)
    assert not r and "all K + 1 channels" in r.message and "case 0" in r.message
    r = L.check_mask_loss(lambda x, labels, t: F.cross_entropy(x, t.long() * labels[:, None, None]))
    assert not r and "SIGMOID" in r.message
    r = L.check_mask_loss(lambda x, labels, t: F.binary_cross_entropy_with_logits(
        x[torch.arange(len(labels)), labels], t, reduction="sum"))
    assert not r and "summed" in r.message
    r = L.check_mask_loss(lambda x, labels, t: F.binary_cross_entropy_with_logits(
        x[torch.arange(len(labels)), labels - 1], t))
    assert not r and "k - 1" in r.message
    r = L.check_mask_loss(lambda x, labels, t: F.binary_cross_entropy_with_logits(
        x[torch.arange(len(labels)), labels], t))      # NaN when R = 0
    assert not r and "R = 0" in r.message
    r = L.check_mask_loss(lambda x, labels, t: torch.zeros(2))
    assert not r and "scalar" in r.message


def test_mask_loss_stub_and_library_call():
    assert "not filled in" in L.check_mask_loss(_stub).message

    def calls_library(x, labels, t):
        from frcnn_edu.losses import mask_rcnn_loss
        return mask_rcnn_loss(x, labels, t)
    r = L.check_mask_loss(calls_library)
    assert not r and "uses" in r.message
