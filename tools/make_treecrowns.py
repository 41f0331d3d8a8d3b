"""Write frcnn_edu/assets/treecrowns/ (lesson 08's photographs) from the DeepForest wheel.

    python tools/make_treecrowns.py --wheel deepforest-2.1.0-py3-none-any.whl
    python tools/make_treecrowns.py --wheel WHEEL --out /tmp/treecrowns --tile 400 --quality 85

DeepForest (MIT licence) ships aerial RGB photographs of forests with VOC XML boxes around the
tree crowns in `deepforest/data/`. This tool reads the four annotated ones from the wheel (a zip
file: nothing is installed or downloaded), cuts them into tiles with `frcnn_edu.data.tiling` (the
rule for crowns cut by a tile edge is in its docstring) and writes one VOC folder:

    train       the tiles of 2019_YELL_2_528000_4978000_image_crop2 (Yellowstone, 2299 x 2472)
    test        the tiles of 2019_YELL_2_541000_4977000_image_crop  (Yellowstone, 1249 x 1035,
                another area 13 km east: no test tile overlaps a training tile)
    othersites  OSBS_029 (Florida) and SOAP_061 (California), 400 x 400 each: other forests

Every class ("Tree"; SOAP_061's "Alive" and "Dead") becomes the one class "tree". tiles.csv
records each tile's source image and window; the tool prints what the tiling did to the boxes.
Re-running it with the same wheel and settings writes the same files.
"""
import argparse
import csv
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frcnn_edu.data.image_io import load_image  # noqa: E402
from frcnn_edu.data.tiling import crop_image, tile_annotations  # noqa: E402
from frcnn_edu.data.voc import read_voc_annotation, write_voc  # noqa: E402

SOURCE_CLASSES = ("__background__", "Tree", "Alive", "Dead")
CLASSES = ("__background__", "tree")
SPLITS = {  # split -> [(annotation, image) in deepforest/data/]
    "train": [("2019_YELL_2_528000_4978000_image_crop2.xml",
               "2019_YELL_2_528000_4978000_image_crop2.png")],
    "test": [("2019_YELL_2_541000_4977000_image_crop.xml",
              "2019_YELL_2_541000_4977000_image_crop.png")],
    "othersites": [("OSBS_029.xml", "OSBS_029.png"), ("SOAP_061.xml", "SOAP_061.png")],
}
LICENCE_FILES = ("deepforest-2.1.0.dist-info/licenses/LICENSE",
                 "deepforest-2.1.0.dist-info/licenses/AUTHORS.md")


def _extract(wheel, names, into):
    with zipfile.ZipFile(wheel) as z:
        have = set(z.namelist())
        for name in names:
            if name not in have:
                raise SystemExit(f"{wheel} holds no {name}: pass the deepforest 2.1.0 wheel "
                                 "(pip download deepforest==2.1.0 --no-deps)")
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(z.read(name))


def _tiles(folder, xml, png, tile, min_visible):
    """[(tile image, tile target, source row)] of one source image, and the tiling's counts."""
    ann = read_voc_annotation(folder / xml, SOURCE_CLASSES)
    image = load_image(folder / png)
    ann["labels"] = ann["labels"].clamp(max=1)          # Tree, Alive, Dead -> tree
    target = {k: ann[k] for k in ("boxes", "labels", "difficult")}
    tiles, counts = tile_annotations(target, tuple(image.shape[-2:]), tile, min_visible)
    items = [(crop_image(image, w), t, (png, *w)) for w, t in tiles]
    return items, counts


def make(wheel, out, tile=400, min_visible=0.5, quality=85):
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = [f"deepforest/data/{n}" for pairs in SPLITS.values() for p in pairs for n in p]
        _extract(wheel, data + list(LICENCE_FILES), tmp)
        for sub in ("Annotations", "JPEGImages", "ImageSets"):
            shutil.rmtree(out / sub, ignore_errors=True)
        rows = []
        for split, pairs in SPLITS.items():
            items = []
            for xml, png in pairs:
                made, counts = _tiles(tmp / "deepforest" / "data", xml, png, tile, min_visible)
                items += made
                print(f"{split}: {png}: {counts['boxes']} boxes -> {len(made)} tiles; "
                      f"{counts['cut']} boxes cut by a tile edge, {counts['pieces_difficult']} "
                      f"pieces under {min_visible:.0%} visible kept as difficult, "
                      f"{counts['empty_tiles']} tiles without a crown")
            ids = write_voc([(im, t) for im, t, _ in items], out, CLASSES, split=split,
                            jpeg_quality=quality)
            rows += [(i, split, *src, len(t["boxes"]), int(t["difficult"].sum()))
                     for i, (_, t, src) in zip(ids, items)]
        (out / "classes.txt").write_text("tree\n")
        with open(out / "tiles.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "split", "source", "x1", "y1", "x2", "y2", "boxes", "difficult"])
            w.writerows(rows)
        shutil.copy(tmp / LICENCE_FILES[0], out / "LICENSE")
        shutil.copy(tmp / LICENCE_FILES[1], out / "AUTHORS.md")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wheel", required=True, help="deepforest-2.1.0-py3-none-any.whl")
    p.add_argument("--out", default=str(ROOT / "frcnn_edu" / "assets" / "treecrowns"))
    p.add_argument("--tile", type=int, default=400, help="tile side in pixels (about)")
    p.add_argument("--min-visible", type=float, default=0.5,
                   help="a cut crown with less of its area in a tile is difficult there")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality of the tiles")
    args = p.parse_args(argv)
    rows = make(args.wheel, args.out, args.tile, args.min_visible, args.quality)
    print(f"{len(rows)} tiles written to {args.out}")


if __name__ == "__main__":
    main()
