"""Instance masks in the data (Mask R-CNN): the shapes' masks, their transforms, COCO files."""
import json

import cv2
import numpy as np
import pytest
import torch

from frcnn_edu.data import (RandomHorizontalFlip, ResizeShorterSide, ShapesDataset, read_coco,
                            write_coco)
from frcnn_edu.data import shapes as shapes_module
from frcnn_edu.data.errors import AnnotationError


def _recorded_objects(monkeypatch, ds, index):
    """Generate item `index` while recording each object's drawing call into the image
    (cv2 points, thickness), in drawing order; returns (generation dict, recorded calls)."""
    calls, draw = [], shapes_module._draw_path

    def spy(img, pts, thick, color, line_type):
        if line_type == cv2.LINE_AA:  # the image; the owner map draws with LINE_8
            calls.append((pts.copy(), thick))
        return draw(img, pts, thick, color, line_type)

    monkeypatch.setattr(shapes_module, "_draw_path", spy)
    d = ds.generate(index)
    monkeypatch.setattr(shapes_module, "_draw_path", draw)
    return d, calls


@pytest.mark.parametrize("crowded", [False, True])
def test_masks_are_the_painted_pixels_not_covered_later(monkeypatch, crowded):
    """Re-draw every object alone (as in the image, without anti-aliasing): its mask is what it
    paints less what later objects paint, so hidden parts are not in it."""
    ds = ShapesDataset("train", num_images=12, crowded=crowded, masks=True)
    for i in range(len(ds)):
        d, calls = _recorded_objects(monkeypatch, ds, i)
        masks = ds[i][1]["masks"].numpy().astype(bool)
        assert len(calls) == len(masks) == len(d["boxes"])
        painted = []
        for pts, thick in calls:
            alone = np.zeros(ds.image_size, dtype=np.uint8)
            shapes_module._draw_path(alone, pts, thick, 1, cv2.LINE_8)
            painted.append(alone.astype(bool))
        for g in range(len(masks)):
            later = np.any(painted[g + 1:], axis=0) if g + 1 < len(masks) else False
            assert np.array_equal(masks[g], painted[g] & ~later), (i, g)
            visible = masks[g].sum() / painted[g].sum()
            assert visible == pytest.approx(d["visible"][g], abs=1e-6)


def test_masks_leave_images_boxes_labels_unchanged_and_are_disjoint():
    plain, with_masks = ShapesDataset("val", num_images=10), ShapesDataset("val", num_images=10,
                                                                          masks=True)
    for i in range(10):
        (a, ta), (b, tb) = plain[i], with_masks[i]
        assert torch.equal(a, b) and "masks" not in ta
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
        m = tb["masks"]
        assert m.dtype == torch.uint8 and m.shape == (len(tb["boxes"]), 160, 160)
        assert m.sum(0).max() <= 1 and (m.flatten(1).sum(1) > 0).all()
    assert "masks=True" in repr(with_masks)
    with pytest.raises(ValueError, match="masks must be True or False"):
        ShapesDataset("val", masks="yes")


def _extent(mask):
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def test_mask_extent_and_box():
    """A mask spans its box to within 1 px when the object is fully visible, and always lies
    inside the box grown by 1 px (the documented relation)."""
    ds = ShapesDataset("train", num_images=40, masks=True)
    full = 0
    for i in range(len(ds)):
        d = ds.generate(i)
        target = ds.get_target(i)
        for g, box in enumerate(target["boxes"].double().numpy()):
            ext = _extent(target["masks"][g].numpy().astype(bool))
            assert (ext[:2] >= box[:2] - 1).all() and (ext[2:] <= box[2:] + 1).all()
            if d["visible"][g] == 1.0:
                full += 1
                assert np.abs(ext - box).max() <= 1.0, (i, g, ext, box)
    assert full > 50


def test_masks_follow_flip_and_resize():
    ds = ShapesDataset("train", num_images=4, masks=True)
    for i in range(4):
        image, target = ds[i]
        fi, ft = RandomHorizontalFlip(1.0)(image, target)
        assert torch.equal(ft["masks"], target["masks"].flip(-1)) and ft["masks"].dtype == torch.uint8
        for g, box in enumerate(ft["boxes"].double().numpy()):  # the flipped box fits the flipped mask
            ext = _extent(ft["masks"][g].numpy().astype(bool))
            assert (ext[:2] >= box[:2] - 1).all() and (ext[2:] <= box[2:] + 1).all()
        ri, rt = ResizeShorterSide(320, None)(image, target)  # 2x: nearest = each pixel 2x2
        want = target["masks"].repeat_interleave(2, -1).repeat_interleave(2, -2)
        assert ri.shape[-2:] == (320, 320) and torch.equal(rt["masks"], want)
        si, st = ResizeShorterSide(80, None)(image, target)   # 0.5x: every second pixel
        assert torch.equal(st["masks"], target["masks"][:, ::2, ::2])
        assert set(st["masks"].unique().tolist()) <= {0, 1}


def test_coco_masks_round_trip(tmp_path):
    ds = ShapesDataset("test", num_images=6, masks=True)
    items = [ds[i] for i in range(6)]
    data = write_coco(items, tmp_path / "ann.json", image_dir=tmp_path / "img")
    ann = data["annotations"][0]
    assert isinstance(ann["segmentation"]["counts"], str) and ann["segmentation"]["size"] == [160, 160]
    assert ann["area"] == int(items[0][1]["masks"][0].sum())
    read = read_coco(tmp_path / "ann.json", masks=True)
    for (_, t), r in zip(items, read.targets):
        assert torch.equal(r["masks"], t["masks"]) and torch.equal(r["boxes"], t["boxes"])
    assert "masks" not in read_coco(tmp_path / "ann.json").targets[0]  # only when asked


def _column_major_runs(mask):
    """COCO's uncompressed RLE, written out by hand: run lengths of the column-major pixels,
    starting with a run of zeros."""
    flat, runs, value, count = mask.T.reshape(-1), [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    return runs + [count]


def test_coco_reads_polygons_and_uncompressed_rle(tmp_path):
    crowd = np.zeros((40, 50), dtype=np.uint8)
    crowd[5:15, 20:45] = 1
    crowd[30:38, 2:9] = 1
    data = dict(images=[dict(id=1, file_name="a.png", height=40, width=50)],
                categories=[dict(id=1, name="ellipse")], annotations=[
                    dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 10], iscrowd=0,
                         segmentation=[[10, 10, 30, 10, 30, 20, 10, 20]]),
                    dict(id=2, image_id=1, category_id=1, bbox=[2, 5, 43, 33], iscrowd=1,
                         segmentation=dict(size=[40, 50], counts=_column_major_runs(crowd)))])
    (tmp_path / "a.json").write_text(json.dumps(data))
    masks = read_coco(tmp_path / "a.json", masks=True).targets[0]["masks"].numpy()
    square = np.zeros((40, 50), dtype=np.uint8)
    square[10:20, 10:30] = 1   # the polygon's corners are pixel edges: pixels 10..29 x 10..19
    assert np.array_equal(masks[0], square) and np.array_equal(masks[1], crowd)


def test_coco_mask_errors(tmp_path):
    base = dict(images=[dict(id=1, file_name="a.png", height=40, width=50)],
                categories=[dict(id=1, name="ellipse")],
                annotations=[dict(id=7, image_id=1, category_id=1, bbox=[1, 1, 5, 5])])
    (tmp_path / "a.json").write_text(json.dumps(base))
    with pytest.raises(AnnotationError, match="annotation id 7: 'segmentation'"):
        read_coco(tmp_path / "a.json", masks=True)
    base["annotations"][0]["segmentation"] = dict(size=[10, 10], counts=[100])
    (tmp_path / "a.json").write_text(json.dumps(base))
    with pytest.raises(AnnotationError, match="has size"):
        read_coco(tmp_path / "a.json", masks=True)
    del base["images"][0]["height"]
    (tmp_path / "a.json").write_text(json.dumps(base))
    with pytest.raises(AnnotationError, match="height"):
        read_coco(tmp_path / "a.json", masks=True)
    image = torch.zeros(3, 20, 20)
    target = dict(boxes=torch.tensor([[1.0, 1, 5, 5]]), labels=torch.tensor([1]),
                  masks=torch.zeros(1, 10, 10, dtype=torch.uint8))
    with pytest.raises(ValueError, match="masks"):
        write_coco([(image, target)], tmp_path / "b.json")
