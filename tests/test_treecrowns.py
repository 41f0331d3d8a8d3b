"""Lesson 08's photographs: the shipped VOC folder, the tiling rule it was made with, and
choosing anchor sizes from box statistics."""
import csv
import json

import pytest
import torch

from frcnn_edu.anchors import anchor_sizes_from_boxes
from frcnn_edu.data import (TREE_CLASSES, boxes_in_window, open_dataset, tile_annotations,
                            tile_grid, tree_crowns, tree_crowns_root)

# split -> (tiles, boxes, difficult boxes): the README's table
COUNTS = {"train": (36, 688, 115), "test": (9, 329, 51), "othersites": (2, 98, 0)}


@pytest.mark.parametrize("split", sorted(COUNTS))
def test_the_shipped_folder_reads_with_the_voc_reader(split):
    data = tree_crowns(split)
    anns = [data.get_annotation(i) for i in range(len(data))]
    tiles, boxes, difficult = COUNTS[split]
    assert len(data) == tiles
    assert sum(len(a["boxes"]) for a in anns) == boxes
    assert sum(int(a["difficult"].sum()) for a in anns) == difficult
    image, target = data[0]
    assert image.shape[0] == 3 and 300 <= image.shape[1] <= 420 and set(target["labels"].tolist()) <= {1}


def test_data_spec_opens_the_shipped_folder_with_its_one_class():
    data = open_dataset("treecrowns", "train")
    assert tuple(data.classes) == TREE_CLASSES and len(data) == COUNTS["train"][0]
    assert (tree_crowns_root() / "LICENSE").read_text().startswith("MIT License")


def test_no_test_tile_overlaps_a_training_tile():
    rows = list(csv.DictReader(open(tree_crowns_root() / "tiles.csv")))
    sources = {split: {r["source"] for r in rows if r["split"] == split} for split in COUNTS}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["othersites"]
    for split in COUNTS:  # within one photograph the tiles are disjoint
        wins = [(r["source"], *(int(r[k]) for k in ("x1", "y1", "x2", "y2")))
                for r in rows if r["split"] == split]
        for i, a in enumerate(wins):
            for b in wins[i + 1:]:
                if a[0] == b[0]:
                    assert min(a[3], b[3]) <= max(a[1], b[1]) or min(a[4], b[4]) <= max(a[2], b[2])


def test_the_grid_partitions_the_image():
    wins = tile_grid(1035, 1249, 400)
    assert len(wins) == 9
    area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in wins)
    assert area == 1035 * 1249 and wins[-1][2:] == (1249, 1035)
    assert tile_grid(100, 90, 400) == [(0, 0, 90, 100)]
    with pytest.raises(ValueError, match="tile"):
        tile_grid(100, 100, 0)


def test_a_box_cut_by_a_tile_edge_follows_the_rule():
    # a 200 x 200 image cut into 2 x 2 tiles of 100; box 0 inside a tile, box 1 cut 70 / 30,
    # box 2 cut into four equal quarters
    target = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [70.0, 20.0, 110.0, 40.0],
                                     [90.0, 90.0, 110.0, 110.0]]),
              "labels": torch.tensor([1, 1, 1])}
    tiles, counts = tile_annotations(target, (200, 200), 100)
    assert counts == {"boxes": 3, "cut": 2, "pieces_difficult": 5, "empty_tiles": 0}
    (w0, t0), (w1, t1) = tiles[0], tiles[1]
    assert w0 == (0, 0, 100, 100) and w1 == (100, 0, 200, 100)
    assert t0["boxes"].tolist() == [[10, 10, 30, 30], [70, 20, 100, 40], [90, 90, 100, 100]]
    assert t0["difficult"].tolist() == [False, False, True]     # 75 % / 25 % visible
    assert t1["boxes"].tolist() == [[0, 20, 10, 40], [0, 90, 10, 100]]  # in the tile's pixels
    assert t1["difficult"].tolist() == [True, True]             # 25 % of box 1 is in tile 1
    index, _, small = boxes_in_window(target["boxes"], (0, 0, 100, 100), min_visible=0.2)
    assert index.tolist() == [0, 1, 2] and not small.any()
    with pytest.raises(ValueError, match="min_visible"):
        boxes_in_window(target["boxes"], (0, 0, 100, 100), min_visible=0)


def test_anchor_sizes_from_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 30, 30], [0, 0, 4, 100]])
    assert anchor_sizes_from_boxes(boxes, 1) == (20,)       # sqrt(w h) of the thin box is 20
    assert anchor_sizes_from_boxes(boxes[:1], 3) == (10, 10, 10)
    assert anchor_sizes_from_boxes(boxes, 2) == (18, 22)   # quantiles 0.25, 0.75 of 10,20,20,30
    with pytest.raises(ValueError, match="boxes"):
        anchor_sizes_from_boxes(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="degenerate"):
        anchor_sizes_from_boxes(torch.tensor([[0.0, 0, 0, 5]]))


def test_train_color_jitter_flags_jitter_the_training_tiles_and_are_kept(tmp_path, capsys):
    """`train --data treecrowns --color-jitter 0.3 --hue 0.05`: lesson 08's colour jitter from the
    command line. The training images change colour and keep their boxes; the run folder records
    both settings, so a resume with other values is refused."""
    from frcnn_edu import cli
    args = cli.build_parser().parse_args(["train", "--data", "treecrowns", "--out", str(tmp_path),
                                          "--color-jitter", "0.3", "--hue", "0.05"])
    plain = open_dataset("treecrowns", "train")
    jittered = cli._dataset("treecrowns", "train", transforms=cli._training_transforms(args))
    (image, target), (want_image, want) = jittered[0], plain[0]
    assert image.shape == want_image.shape and not torch.allclose(image, want_image, atol=1e-3)
    assert torch.equal(target["boxes"], want["boxes"])
    assert 0.0 <= image.min() and image.max() <= 1.0
    off = cli.build_parser().parse_args(["train", "--data", "treecrowns", "--out", str(tmp_path)])
    assert cli._training_transforms(off) is None     # the default trains on the pixels as read
    # two steps through the command, then a resume with another strength
    run = ["train", "--data", "treecrowns", "--image-scale", "none", "--steps", "1",
           "--device", "cpu", "--out", str(tmp_path / "run"), "--color-jitter", "0.3"]
    assert cli.main(run) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["color_jitter"], config["hue"]) == (0.3, 0.0)
    capsys.readouterr()
    assert cli.main(run[:-1] + ["0.2"]) == 2
    assert "--color-jitter 0.3 -> 0.2" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--color-jitter", "1.0"), ("--color-jitter", "-0.1"),
                                         ("--hue", "0.6"), ("--hue", "x")])
def test_bad_jitter_values_name_the_flag(flag, value, tmp_path, capsys):
    from frcnn_edu import cli
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--out", str(tmp_path), flag, value])
    assert flag in capsys.readouterr().err
