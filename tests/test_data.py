"""Tests for frcnn_edu.data: the shapes dataset, transforms, collate, VOC / COCO / Penn-Fudan files."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from frcnn_edu.data import (CLASSES, COCODataset, Compose, PennFudanDataset, RandomHorizontalFlip,
                            ResizeShorterSide, ShapesDataset, VOCDataset, check_target,
                            collate_fn, read_coco, write_coco, write_voc)
from frcnn_edu.data import shapes as shapes_module
from frcnn_edu.data.pennfudan import boxes_from_instance_mask

H = W = 160


@pytest.fixture(scope="module")
def stats_items():
    """Raw generations of 200 training images (numpy dicts), shared by the statistics tests."""
    ds = ShapesDataset("train", num_images=200)
    return [ds.generate(i) for i in range(len(ds))]


def _target(boxes, labels):
    return dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                labels=torch.tensor(labels, dtype=torch.int64))


# ----------------------------------------------------------------------------- shapes: format
def test_item_format():
    ds = ShapesDataset("train")
    assert len(ds) == 1000 and len(ShapesDataset("val")) == 200 and len(ShapesDataset("test")) == 200
    assert ds.classes == CLASSES and ds.num_classes == len(CLASSES) == 6 and ds.image_size == (H, W)
    image, target = ds[3]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == target["boxes"].shape[:1]
    assert target["image_id"].dtype == torch.int64 and int(target["image_id"]) == 3
    b = target["boxes"]
    assert torch.allclose(target["area"], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert (target["iscrowd"] == 0).all()
    raw = ds.get_raw(3)
    assert raw.dtype == np.uint8 and raw.shape == (H, W, 3)
    assert torch.equal(torch.from_numpy(raw).permute(2, 0, 1).float() / 255, image)
    assert torch.equal(ds.get_target(3)["boxes"], b)


def test_non_square_size_and_options():
    ds = ShapesDataset("val", num_images=20, image_size=(120, 200), max_objects=2)
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 120, 200)
        check_target(target, image_size=(120, 200), num_classes=ds.num_classes)
        assert 1 <= len(target["boxes"]) <= 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("training")
    with pytest.raises(ValueError, match="image_size"):
        ShapesDataset(image_size=(160,))
    with pytest.raises(ValueError, match="min_objects"):
        ShapesDataset(min_objects=3, max_objects=2)
    with pytest.raises(IndexError):
        ShapesDataset("val", num_images=5)[5]


# ----------------------------------------------------------------------------- shapes: determinism
def _equal_items(a, b):
    return torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_deterministic_across_calls_instances_and_order():
    ds1, ds2 = ShapesDataset("train", num_images=12), ShapesDataset("train", num_images=12)
    forward = [ds1[i] for i in range(12)]
    backward = [ds2[i] for i in reversed(range(12))][::-1]
    for i in range(12):
        assert _equal_items(forward[i], backward[i])
        assert _equal_items(forward[i], ds1[i])
    assert _equal_items(ds1[-1], ds1[11])
    # the length of the dataset does not change its items
    assert _equal_items(ShapesDataset("train", num_images=1000)[5], forward[5])


def test_seeds_and_splits_give_different_images():
    def hashes(split, seed=0, n=100):
        ds = ShapesDataset(split, num_images=n, seed=seed)
        return {ds.get_raw(i).tobytes() for i in range(n)}

    train, val, test = hashes("train"), hashes("val"), hashes("test")
    assert len(train) == 100 and len(val) == 100 and len(test) == 100
    assert not (train & val) and not (train & test) and not (val & test)
    assert not (hashes("train", seed=1, n=20) & train)


# ----------------------------------------------------------------------------- shapes: validity
def test_targets_are_valid(stats_items):
    for d in stats_items:
        target = dict(boxes=torch.from_numpy(d["boxes"]), labels=torch.from_numpy(d["labels"]))
        check_target(target, image_size=(H, W), num_classes=len(CLASSES))
        assert 1 <= len(d["boxes"]) <= 5
        assert (d["visible"] >= 0.6 - 1e-6).all()  # at most 40% of an object is hidden
        iou = torchvision.ops.box_iou(target["boxes"], target["boxes"]).fill_diagonal_(0)
        assert iou.max() <= 0.3 + 1e-6


@pytest.mark.parametrize("label", range(1, len(CLASSES)))
@pytest.mark.parametrize("outline", [False, True])
def test_drawn_extent_matches_box(label, outline):
    """The pixels a shape paints span its box to within a pixel, filled or outlined."""
    rng = np.random.default_rng(label)
    for box in ([20.0, 30.0, 90.0, 55.0], [40.5, 10.25, 60.0, 100.0], [5.0, 5.0, 36.0, 36.0]):
        box = np.array(box)
        poly = shapes_module._unit_polygon(rng, label)
        pts, thick = shapes_module._object_path(rng, poly, box, outline_prob=float(outline))
        assert (thick > 0) == outline
        window, mask = shapes_module._object_mask(pts, thick, box, H, W)
        full = np.zeros((H, W), dtype=bool)
        full[window] = mask
        rows, cols = np.nonzero(full.any(1))[0], np.nonzero(full.any(0))[0]
        extent = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        assert np.abs(extent - box).max() <= 1.0, (CLASSES[label], box, extent)


def test_variety_statistics(stats_items):
    boxes = np.concatenate([d["boxes"] for d in stats_items])
    labels = np.concatenate([d["labels"] for d in stats_items])
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    scale, ratio = np.sqrt(w * h), h / w
    assert scale.min() < 16 and scale.max() > 80  # small to large
    assert ratio.min() < 0.45 and ratio.max() > 2.2  # wide to tall
    assert ((ratio > 0.8) & (ratio < 1.25)).mean() > 0.1
    counts = np.bincount(labels, minlength=len(CLASSES))
    assert counts[0] == 0 and (counts[1:] > 0.12 * len(labels)).all()  # every class, balanced
    per_image = np.array([len(d["boxes"]) for d in stats_items])
    assert set(per_image) == {1, 2, 3, 4, 5}
    occluded = np.mean([(d["visible"] < 1).any() for d in stats_items])
    assert 0.2 < occluded < 0.9


def test_colour_does_not_give_the_class_away(stats_items):
    """Mean object colour per class is about the same (colours are drawn independently)."""
    means = {k: [] for k in range(1, len(CLASSES))}
    for d in stats_items:
        for box, label in zip(d["boxes"], d["labels"]):
            x1, y1, x2, y2 = box.astype(int)
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            means[int(label)].append(d["image"][cy, cx].astype(float))
    centre = np.array([np.mean(v, 0) for v in means.values()])
    assert np.abs(centre - centre.mean(0)).max() < 40


# ----------------------------------------------------------------------------- shapes: crowded
@pytest.fixture(scope="module")
def crowded_items():
    """Raw generations of 150 crowded test images."""
    ds = ShapesDataset("test", num_images=150, crowded=True)
    return [ds.generate(i) for i in range(len(ds))]


def _pair_ious(d):
    """IoU of every ground-truth pair of one image [P] and whether the pair shares its class."""
    boxes, labels = torch.from_numpy(d["boxes"]), torch.from_numpy(d["labels"])
    i, j = torch.triu_indices(len(boxes), len(boxes), offset=1)
    iou = torchvision.ops.box_iou(boxes, boxes)[i, j]
    return iou, labels[i] == labels[j]


def test_default_is_not_crowded_and_unchanged():
    """crowded=False is the default, item for item; the lessons' first item keeps its boxes."""
    plain, explicit = ShapesDataset("train", num_images=8), ShapesDataset("train", num_images=8,
                                                                           crowded=False)
    for i in range(8):
        assert _equal_items(plain[i], explicit[i])
    assert plain.options["max_box_iou"] == 0.3 and plain.options["max_objects"] == 5
    expected = torch.tensor([[35.5, 28.4375, 133.375, 100.0625],
                             [118.125, 33.375, 128.0625, 53.9375], [31.8125, 6.125, 53.9375, 48.5]])
    assert torch.equal(ShapesDataset("train").get_target(0)["boxes"], expected)
    assert repr(plain) == ("ShapesDataset(split='train', num_images=8, image_size=(160, 160), "
                           "seed=0, classes=('ellipse', 'rectangle', 'triangle', 'star', 'cross'))")


def test_crowded_targets_are_valid_and_capped(crowded_items):
    for d in crowded_items:
        target = dict(boxes=torch.from_numpy(d["boxes"]), labels=torch.from_numpy(d["labels"]))
        check_target(target, image_size=(H, W), num_classes=len(CLASSES))
        assert 1 <= len(d["boxes"]) <= 9
        assert (d["visible"] >= 0.5 - 1e-6).all()  # at most half of an object is hidden
        size = np.sqrt(np.prod(d["boxes"][:, 2:] - d["boxes"][:, :2], 1))
        assert (size > 12 - 0.1).all() and (size < 96 + 0.1).all()  # neighbours stay in range
        iou, _ = _pair_ious(d)
        assert iou.numel() == 0 or iou.max() <= 0.7 + 1e-6  # the documented cap, never above


def test_crowded_images_have_close_neighbours(crowded_items):
    """Pairs reach IoU >= 0.5 in a good share of the images, mostly of the same class (so
    per-class NMS at 0.3 or 0.5 would remove a true object), and images hold more objects."""
    best_any, best_same = [], []
    for d in crowded_items:
        iou, same = _pair_ious(d)
        best_any.append(float(iou.max()) if iou.numel() else 0.0)
        best_same.append(float(iou[same].max()) if same.any() else 0.0)
    best_any, best_same = np.array(best_any), np.array(best_same)
    assert (best_any >= 0.5).mean() > 0.3
    assert (best_same >= 0.5).mean() > 0.3
    assert (best_same > 0.3).mean() > 0.8  # NMS at 0.3 suppresses a true neighbour here
    assert best_any.max() > 0.65
    per_image = np.array([len(d["boxes"]) for d in crowded_items])
    assert per_image.mean() > 5 and per_image.max() == 9
    labels = np.concatenate([d["labels"] for d in crowded_items])
    assert (np.bincount(labels, minlength=len(CLASSES))[1:] > 0.12 * len(labels)).all()


def test_crowded_is_deterministic_and_differs_by_seed():
    a, b = ShapesDataset("val", num_images=6, crowded=True), ShapesDataset("val", num_images=6,
                                                                           crowded=True)
    for i in reversed(range(6)):
        assert _equal_items(a[i], b[i])
    other = ShapesDataset("val", num_images=6, crowded=True, seed=1)
    plain = ShapesDataset("val", num_images=6)
    assert not any(torch.equal(a[i][0], other[i][0]) or torch.equal(a[i][0], plain[i][0])
                   for i in range(6))
    assert "crowded=True" in repr(a)


def test_crowded_explicit_arguments_win_and_bad_values():
    ds = ShapesDataset("test", num_images=20, crowded=True, max_box_iou=0.5, max_objects=6)
    assert ds.options["max_box_iou"] == 0.5 and ds.options["min_objects"] == 4
    for i in range(len(ds)):
        iou, _ = _pair_ious(ds.generate(i))
        assert len(ds.get_target(i)["boxes"]) <= 6 and (iou <= 0.5 + 1e-6).all()
    with pytest.raises(ValueError, match="crowded"):
        ShapesDataset(crowded="yes")
    with pytest.raises(ValueError, match="max_box_iou"):
        ShapesDataset(crowded=True, max_box_iou=0.0)
    with pytest.raises(ValueError, match="min_objects"):
        ShapesDataset(crowded=True, max_objects=3)  # crowded min_objects is 4


# ----------------------------------------------------------------------------- targets / collate
def test_check_target_errors():
    good = _target([[0, 0, 10, 10]], [1])
    assert check_target(good, (H, W), 6) is good
    with pytest.raises(ValueError, match="boxes.*degenerate box at index 1"):
        check_target(_target([[0, 0, 10, 10], [5, 5, 5, 9]], [1, 2]))
    with pytest.raises(ValueError, match="boxes.*NaN"):
        check_target(_target([[0, 0, float("nan"), 10]], [1]))
    with pytest.raises(ValueError, match=r"boxes.*\[G, 4\]"):
        check_target(dict(boxes=torch.zeros(2, 5), labels=torch.ones(2, dtype=torch.int64)))
    with pytest.raises(ValueError, match="labels.*int64"):
        check_target(dict(boxes=good["boxes"], labels=torch.ones(1)))
    with pytest.raises(ValueError, match=r"labels.*1\.\.5"):
        check_target(_target([[0, 0, 10, 10]], [6]), num_classes=6)
    with pytest.raises(ValueError, match=r"labels.*1\.\.5"):
        check_target(_target([[0, 0, 10, 10]], [0]), num_classes=6)
    with pytest.raises(ValueError, match="inside the image"):
        check_target(_target([[0, 0, 170, 10]], [1]), image_size=(H, W))
    with pytest.raises(ValueError, match="labels"):
        check_target(dict(boxes=good["boxes"]))
    empty = _target([], [])
    assert check_target(empty, (H, W), 6)["boxes"].shape == (0, 4)


def test_collate_with_dataloader():
    loader = torch.utils.data.DataLoader(ShapesDataset("val", num_images=5), batch_size=3,
                                         collate_fn=collate_fn)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list)
    assert len(images) == len(targets) == 3 and images[0].shape == (3, H, W)
    assert int(targets[2]["image_id"]) == 2
    with pytest.raises(TypeError, match="collate_fn"):
        collate_fn([torch.zeros(3)])


# ----------------------------------------------------------------------------- transforms
def test_flip_moves_boxes_with_pixels():
    image = torch.zeros(3, 20, 30)
    image[:, 5:9, 2:7] = 1.0  # the box (2, 5, 7, 9)
    target = _target([[2, 5, 7, 9]], [1])
    flipped, t = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(t["boxes"], torch.tensor([[23.0, 5.0, 28.0, 9.0]]))  # x1' = W - x2
    ys, xs = torch.nonzero(flipped[0], as_tuple=True)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (23, 28, 5, 9)
    assert torch.equal(target["boxes"], torch.tensor([[2.0, 5.0, 7.0, 9.0]]))  # input untouched


def test_flip_twice_is_identity_and_p0_does_nothing():
    image, target = ShapesDataset("val", num_images=1)[0]
    flip = RandomHorizontalFlip(p=1.0)
    back_image, back = flip(*flip(image, target))
    assert torch.equal(back_image, image) and torch.equal(back["boxes"], target["boxes"])
    same_image, same = RandomHorizontalFlip(p=0.0)(image, target)
    assert same_image is image and same is target


def test_flip_is_reproducible_with_a_generator():
    image, target = torch.zeros(3, 8, 8), _target([[0, 0, 2, 2]], [1])

    def decisions(seed):
        flip = RandomHorizontalFlip(0.5, generator=torch.Generator().manual_seed(seed))
        return [float(flip(image, target)[1]["boxes"][0, 0]) for _ in range(20)]

    assert decisions(0) == decisions(0)
    assert set(decisions(0)) == {0.0, 6.0}


def test_resize_shorter_side():
    image, target = torch.rand(3, 100, 200), _target([[10, 20, 30, 40]], [1])
    target["area"] = torch.tensor([400.0])
    out, t = ResizeShorterSide(600, 1000)(image, target)  # 600 / 100 = 6 but 200 * 6 > 1000: 5
    assert out.shape == (3, 500, 1000)
    assert torch.allclose(t["boxes"], torch.tensor([[50.0, 100.0, 150.0, 200.0]]))
    assert torch.allclose(t["area"], torch.tensor([10000.0]))
    assert torch.allclose(t["scale"], torch.tensor([5.0, 5.0]))
    out, t = ResizeShorterSide(320, None)(*ShapesDataset("val", num_images=1)[0])
    assert out.shape == (3, 320, 320)
    out2, t2 = Compose([ResizeShorterSide(320, None), ResizeShorterSide(160, None)])(image, target)
    assert torch.allclose(t2["scale"], torch.tensor([1.6, 1.6])) and out2.shape == (3, 160, 320)


def test_resize_moves_boxes_with_pixels():
    image = torch.zeros(3, 40, 60)
    image[:, 10:20, 30:50] = 1.0
    out, t = ResizeShorterSide(80, None)(image, _target([[30, 10, 50, 20]], [1]))
    ys, xs = torch.nonzero(out[0] > 0.5, as_tuple=True)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (60, 100, 20, 40)
    assert torch.equal(t["boxes"], torch.tensor([[60.0, 20.0, 100.0, 40.0]]))


def test_transforms_in_dataset_and_bad_inputs():
    ds = ShapesDataset("val", num_images=2, transforms=Compose([RandomHorizontalFlip(1.0)]))
    plain = ShapesDataset("val", num_images=2)
    assert torch.equal(ds[1][0], plain[1][0].flip(-1))
    with pytest.raises(ValueError, match="boxes.*degenerate"):
        RandomHorizontalFlip()(torch.zeros(3, 8, 8), _target([[4, 0, 2, 2]], [1]))
    with pytest.raises(ValueError, match="labels"):
        ResizeShorterSide(16)(torch.zeros(3, 8, 8), _target([[0, 0, 2, 2]], [1, 2]))
    with pytest.raises(TypeError, match="image"):
        RandomHorizontalFlip(1.0)(np.zeros((8, 8, 3)), _target([[0, 0, 2, 2]], [1]))
    with pytest.raises(ValueError, match="p must"):
        RandomHorizontalFlip(1.5)


# ----------------------------------------------------------------------------- VOC
def test_voc_round_trip_exact(tmp_path):
    ds = ShapesDataset("val", num_images=4)
    ids = write_voc(ds, tmp_path, split="val", image_format="png", round_coords=False)
    assert (tmp_path / "ImageSets" / "Main" / "val.txt").read_text().split() == ids
    voc = VOCDataset(tmp_path, "val", class_names=CLASSES)
    assert len(voc) == 4
    for i in range(4):
        image, target = voc[i]
        assert torch.equal(target["boxes"], ds[i][1]["boxes"])
        assert torch.equal(target["labels"], ds[i][1]["labels"])
        assert target["difficult"].dtype == torch.bool and not target["difficult"].any()
        assert torch.allclose(image, ds[i][0], atol=1 / 255 + 1e-6)  # PNG: lossless up to rounding


def test_voc_coordinates_and_difficult(tmp_path):
    target = _target([[0, 4, 10, 12], [2.4, 3.6, 7.5, 9.0]], [1, 3])
    target["difficult"] = torch.tensor([False, True])
    write_voc([(torch.rand(3, 16, 20), target)], tmp_path, split="train")
    obj = ET.parse(tmp_path / "Annotations" / "train_000000.xml").getroot().findall("object")
    assert [obj[0].find("bndbox").findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == \
        ["1", "5", "10", "12"]  # 1-based, both ends included
    assert obj[1].findtext("name") == CLASSES[3] and obj[1].findtext("difficult") == "1"
    _, back = VOCDataset(tmp_path, "train", class_names=CLASSES)[0]
    assert torch.equal(back["boxes"], torch.tensor([[0.0, 4, 10, 12], [2, 4, 8, 9]]))  # rounded
    assert back["difficult"].tolist() == [False, True]
    easy = VOCDataset(tmp_path, "train", class_names=CLASSES, keep_difficult=False)
    assert easy.get_annotation(0)["labels"].tolist() == [1]


def _edit_first_object(path, **fields):
    tree = ET.parse(path)
    obj = tree.getroot().find("object")
    for tag, text in fields.items():
        (obj.find("bndbox").find(tag) if tag in ("xmin", "ymin", "xmax", "ymax")
         else obj.find(tag)).text = text
    tree.write(path)


def test_voc_bad_files(tmp_path):
    write_voc([(torch.rand(3, 16, 20), _target([[0, 0, 5, 5]], [2]))], tmp_path, split="train")
    xml = tmp_path / "Annotations" / "train_000000.xml"
    with pytest.raises(ValueError, match="'rectangle' is not in class_names"):
        VOCDataset(tmp_path, "train")[0]  # default class names are VOC's
    _edit_first_object(xml, xmax="0")
    with pytest.raises(ValueError, match="boxes.*degenerate"):
        VOCDataset(tmp_path, "train", class_names=CLASSES)[0]
    with pytest.raises(FileNotFoundError, match="ImageSets"):
        VOCDataset(tmp_path, "test")
    with pytest.raises(ValueError, match=r"labels.*1\.\.5"):
        write_voc([(torch.rand(3, 8, 8), _target([[0, 0, 5, 5]], [9]))], tmp_path / "x")


# ----------------------------------------------------------------------------- COCO
def test_coco_round_trip(tmp_path):
    ds = ShapesDataset("test", num_images=3)
    data = write_coco(ds, tmp_path / "ann.json", image_dir=tmp_path / "images")
    first = data["annotations"][0]
    x1, y1, x2, y2 = ds[0][1]["boxes"][0].tolist()
    assert first["bbox"] == [x1, y1, x2 - x1, y2 - y1] and first["image_id"] == 1
    assert first["category_id"] == int(ds[0][1]["labels"][0])
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4, 5]
    coco = COCODataset(tmp_path / "images", tmp_path / "ann.json")
    assert coco.classes == CLASSES and len(coco) == 3
    for i in range(3):
        image, target = coco[i]
        assert torch.equal(target["boxes"], ds[i][1]["boxes"])
        assert torch.equal(target["labels"], ds[i][1]["labels"])
        assert int(target["image_id"]) == i + 1 and image.shape == (3, H, W)


def test_coco_reader_maps_category_ids(tmp_path):
    data = dict(images=[dict(id=7, file_name="a.png", height=50, width=60)],
                categories=[dict(id=18, name="dog"), dict(id=3, name="car")],
                annotations=[dict(id=1, image_id=7, category_id=18, bbox=[10, 20, 5, 8],
                                  area=40, iscrowd=0),
                             dict(id=2, image_id=7, category_id=3, bbox=[0, 0, 60, 50],
                                  area=3000, iscrowd=1)])
    (tmp_path / "a.json").write_text(json.dumps(data))
    ann = read_coco(tmp_path / "a.json")
    assert ann.class_names == ("__background__", "car", "dog") and ann.category_ids == (3, 18)
    t = ann.targets[0]
    assert torch.equal(t["boxes"], torch.tensor([[10.0, 20, 15, 28], [0, 0, 60, 50]]))
    assert t["labels"].tolist() == [2, 1] and t["iscrowd"].tolist() == [0, 1]
    data["annotations"][0]["bbox"] = [10, 20, 0, 8]
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotation id 1: bbox"):
        read_coco(tmp_path / "a.json")
    assert read_coco(tmp_path / "a.json", skip_degenerate=True).targets[0]["labels"].tolist() == [1]


# ----------------------------------------------------------------------------- Penn-Fudan
def _write_pennfudan(root, masks):
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    for i, mask in enumerate(masks):
        photo = np.full(mask.shape + (3,), 90, np.uint8)
        Image.fromarray(photo).save(root / "PNGImages" / f"P{i:02d}.png")
        Image.fromarray(mask).save(root / "PedMasks" / f"P{i:02d}_mask.png")


def test_pennfudan_loader(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:10, 3:8] = 1  # rows 2..9, cols 3..7 -> box (3, 2, 8, 10)
    mask[5:19, 20:29] = 2
    mask[12, 4] = 0  # holes do not matter
    _write_pennfudan(tmp_path, [mask, np.zeros((20, 30), np.uint8)])
    ds = PennFudanDataset(tmp_path, return_masks=True)
    assert len(ds) == 2 and ds.classes == ("__background__", "pedestrian")
    image, target = ds[0]
    assert image.shape == (3, 20, 30)
    assert torch.equal(target["boxes"], torch.tensor([[3.0, 2, 8, 10], [20, 5, 29, 19]]))
    assert target["labels"].tolist() == [1, 1] and target["masks"].shape == (2, 20, 30)
    assert int(target["masks"][0].sum()) == 40
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    flipped = PennFudanDataset(tmp_path, transforms=RandomHorizontalFlip(1.0), return_masks=True)[0][1]
    assert torch.equal(flipped["masks"], target["masks"].flip(-1))


def test_pennfudan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="PNGImages"):
        PennFudanDataset(tmp_path)
    _write_pennfudan(tmp_path, [np.zeros((4, 4), np.uint8)])
    (tmp_path / "PedMasks" / "P00_mask.png").unlink()
    with pytest.raises(ValueError, match="PedMasks"):
        PennFudanDataset(tmp_path)
    with pytest.raises(ValueError, match="mask"):
        boxes_from_instance_mask(np.zeros((2, 3, 4)))


def test_transforms_keep_the_device(device):
    image = torch.rand(3, 20, 40, device=device)
    target = dict(boxes=torch.tensor([[2.0, 3.0, 10.0, 12.0]], device=device),
                  labels=torch.tensor([1], device=device))
    out, t = Compose([RandomHorizontalFlip(1.0), ResizeShorterSide(40, None)])(image, target)
    assert out.device == image.device and t["boxes"].device == image.device
    assert out.shape == (3, 40, 80)
    assert torch.allclose(t["boxes"].cpu(), torch.tensor([[60.0, 6.0, 76.0, 24.0]]))


def test_shapes_overlap_rule_uses_box_iou_bit_for_bit():
    """The shapes' placement rule (IoU with earlier boxes <= max_box_iou) runs `boxes.box_iou`
    in float64: the same numbers, bit for bit, as the NumPy formula the saved images were drawn
    with, so every image, box and saved result stays the same."""
    from frcnn_edu.data.shapes import _ONE, _box_iou_max

    def numpy_iou_max(box, boxes):
        b = np.asarray(boxes)
        iw = np.clip(np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
        ih = np.clip(np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
        inter = iw * ih
        union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + np.prod(box[2:] - box[:2]) - inter
        return float((inter / union).max())

    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 10))
        xy, wh = rng.uniform(0, 150, (n + 1, 2)), rng.uniform(7, 90, (n + 1, 2))
        b = np.round(np.concatenate([xy, xy + wh], 1) * _ONE) / _ONE
        assert _box_iou_max(b[0], list(b[1:])) == numpy_iou_max(b[0], list(b[1:]))
    assert _box_iou_max(b[0], []) == 0.0
