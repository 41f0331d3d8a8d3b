"""Lesson 08's augmentation: vertical flips, 90-degree rotations and colour jitter move the boxes
exactly with the pixels (or not at all), and the sliding-window baseline."""
import pytest
import torch

from frcnn_edu.data import (ColorJitter, Compose, RandomHorizontalFlip, RandomRotate90,
                            RandomVerticalFlip, aerial_augmentation, tree_crowns)
from frcnn_edu.evaluation import sliding_window_baseline, voc_eval

H, W = 30, 44  # not square: a rotation must swap them
BOXES = torch.tensor([[2.0, 3.0, 9.0, 7.0], [20.0, 1.0, 23.0, 25.0], [30.0, 18.0, 43.0, 29.0]])


def painted():
    """An image whose box i is painted with the value (i + 1) / 10 in channel 0, 0 elsewhere,
    and its target with a mask per box and the boxes as proposals too."""
    image = torch.zeros(3, H, W)
    masks = torch.zeros(len(BOXES), H, W, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(BOXES.long().tolist()):
        image[0, y1:y2, x1:x2] = (i + 1) / 10
        masks[i, y1:y2, x1:x2] = 1
    image[1] = torch.rand(H, W, generator=torch.Generator().manual_seed(0))  # texture
    target = {"boxes": BOXES.clone(), "labels": torch.tensor([1, 2, 1]),
              "difficult": torch.tensor([False, True, False]), "masks": masks,
              "proposals": BOXES.clone()}
    return image, target


def assert_boxes_follow_pixels(image, target):
    """Each box is exactly the region painted with its value: all pixels inside have it, and
    no pixel outside does (so the box is neither shifted nor too large nor too small)."""
    for i, box in enumerate(target["boxes"]):
        x1, y1, x2, y2 = (int(v) for v in box.tolist())
        assert box.tolist() == [float(v) for v in (x1, y1, x2, y2)], "boxes stay on whole pixels"
        region = image[0] == (i + 1) / 10
        inside = torch.zeros_like(region)
        inside[y1:y2, x1:x2] = True
        assert torch.equal(region, inside), f"box {i} {box.tolist()} is not where its pixels went"
        assert torch.equal(target["masks"][i].bool(), inside), f"mask {i} did not move with it"
    assert torch.equal(target["proposals"], target["boxes"])


@pytest.mark.parametrize("transform", [RandomVerticalFlip(p=1.0), RandomRotate90(),
                                       aerial_augmentation(jitter=0.0)])
def test_geometric_transforms_move_boxes_masks_and_proposals_with_the_pixels(transform):
    seen = set()
    for seed in range(40):
        for t in (transform.transforms if isinstance(transform, Compose) else [transform]):
            if hasattr(t, "generator"):
                t.generator = torch.Generator().manual_seed(seed)
        image, target = painted()
        before = {k: v.clone() for k, v in target.items()}
        out_image, out_target = Compose([RandomHorizontalFlip(0.5), transform])(image, target)
        assert_boxes_follow_pixels(out_image, out_target)
        assert torch.equal(out_target["labels"], before["labels"])
        assert torch.equal(out_target["difficult"], before["difficult"])
        assert all(torch.equal(target[k], v) for k, v in before.items()), "input target modified"
        seen.add((tuple(out_image.shape), tuple(out_image[0].nonzero()[0].tolist())))
    assert len(seen) >= (2 if isinstance(transform, RandomVerticalFlip) else 4)


def test_rotation_by_90_degrees_is_the_formula_and_torch_rot90():
    """Counter-clockwise by k quarter turns: (x, y) -> (y, W - x) each time, as torch.rot90."""
    image, target = painted()
    ks = set()
    for seed in range(12):
        k = int(torch.randint(4, (), generator=torch.Generator().manual_seed(seed)))  # its draw
        out_image, out_target = RandomRotate90(torch.Generator().manual_seed(seed))(image, target)
        assert torch.equal(out_image, torch.rot90(image, k, (1, 2)))
        expected, w, h = BOXES.clone(), W, H
        for _ in range(k):
            expected = torch.stack([expected[:, 1], w - expected[:, 2],
                                    expected[:, 3], w - expected[:, 0]], 1)
            w, h = h, w
        assert torch.equal(out_target["boxes"], expected)
        ks.add(k)
    assert ks == {0, 1, 2, 3}


def test_vertical_flip_is_the_formula():
    image, target = painted()
    out_image, out_target = RandomVerticalFlip(p=1.0)(image, target)
    assert torch.equal(out_image, image.flip(-2))
    x1, y1, x2, y2 = BOXES.unbind(1)
    assert torch.equal(out_target["boxes"], torch.stack([x1, H - y2, x2, H - y1], 1))
    assert RandomVerticalFlip(p=0.0)(image, target)[1]["boxes"] is target["boxes"]


def test_color_jitter_changes_pixels_within_range_and_never_the_boxes():
    image, target = painted()
    image = image * 0.5 + 0.25
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.05, generator=torch.Generator().manual_seed(1))
    outs = [jitter(image, target) for _ in range(5)]
    for out_image, out_target in outs:
        assert out_image.shape == image.shape and out_image.dtype == torch.float32
        assert 0.0 <= float(out_image.min()) and float(out_image.max()) <= 1.0
        assert out_target["boxes"] is target["boxes"]
        assert not torch.allclose(out_image, image, atol=1e-3)
    assert not torch.allclose(outs[0][0], outs[1][0]), "each image draws its own factors"
    again = ColorJitter(0.4, 0.4, 0.4, 0.05, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again(image, target)[0], outs[0][0]), "a seeded generator replays"
    assert torch.allclose(ColorJitter()(image, target)[0], image), "no jitter: the same image"


def test_color_jitter_brightness_alone_scales_the_pixels():
    image = torch.full((3, 4, 4), 0.5)
    g = torch.Generator().manual_seed(3)
    factor = 1.0 + 0.3 * (2 * torch.rand((), generator=torch.Generator().manual_seed(3)).item() - 1)
    out, _ = ColorJitter(brightness=0.3, generator=g)(image, {"boxes": torch.zeros(0, 4),
                                                               "labels": torch.zeros(0, dtype=torch.int64)})
    assert torch.allclose(out, torch.full_like(image, 0.5 * factor))


@pytest.mark.parametrize("kwargs", [{"brightness": 1.0}, {"contrast": -0.1}, {"hue": 0.6}])
def test_color_jitter_refuses_bad_ranges(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ColorJitter(**kwargs)


def test_vertical_flip_refuses_a_bad_probability():
    with pytest.raises(ValueError, match="probability"):
        RandomVerticalFlip(p=1.5)


def test_aerial_augmentation_on_the_shipped_tiles_keeps_every_box_inside_its_tile():
    data = tree_crowns("train", transforms=aerial_augmentation(
        jitter=0.3, generator=torch.Generator().manual_seed(0)))
    for i in range(6):
        image, target = data[i]
        plain = data.get_annotation(i)
        assert len(target["boxes"]) == len(plain["boxes"])
        h, w = image.shape[-2:]
        assert sorted((h, w)) == sorted(plain["size"])
        b = target["boxes"]
        assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)).all()
        areas = lambda x: ((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])).sort().values  # noqa: E731
        assert torch.equal(areas(b), areas(plain["boxes"].float()))


def test_sliding_window_baseline_places_one_square_per_cell_with_seeded_scores():
    data = tree_crowns("test")
    preds = sliding_window_baseline(data, 37, stride=16, seed=0)
    h, w = data.get_annotation(0)["size"]
    assert len(preds[0]["boxes"]) == (h // 16) * (w // 16)
    wh = preds[0]["boxes"][:, 2:] - preds[0]["boxes"][:, :2]
    assert torch.allclose(wh, torch.full_like(wh, 37.0))
    again = sliding_window_baseline(data, 37, stride=16, seed=0)
    assert torch.equal(preds[3]["scores"], again[3]["scores"])
    anns = [data.get_annotation(i) for i in range(len(data))]
    assert 0.0 < voc_eval(preds, anns, 2)["mAP"] < 0.1  # it finds some crowns by chance
