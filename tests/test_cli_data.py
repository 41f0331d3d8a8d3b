"""`--data`: the shapes written as a VOC and a COCO folder by the library train the same model as
the shapes themselves (same seed, same steps), and every bad folder is refused before training
with an error naming the file and the fix."""
import json
import shutil

import pytest
import torch

from frcnn_edu import cli
from frcnn_edu.data import CLASSES, ShapesDataset, open_dataset, parse_data_spec

STEPS = ["--steps", "2", "--seed", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for kind in ("voc", "coco"):
        assert cli.main(["export", "--to", f"{kind}:{root / kind}", "--train-images", "4",
                         "--test-images", "2"]) == 0
    coco = root / "coco"
    return dict(root=root, voc=f"voc:{root / 'voc'}",
                coco_train=f"coco:{coco / 'annotations/train.json'}:{coco / 'train'}",
                coco_test=f"coco:{coco / 'annotations/test.json'}:{coco / 'test'}")


@pytest.fixture(scope="module")
def runs(exported):
    root, test = exported["root"], exported["voc"] + ":test"
    argv = {"shapes": ["--data", "shapes", "--train-images", "4"],
            "voc": ["--data", exported["voc"] + ":train", "--image-scale", "240"],
            "coco": ["--data", exported["coco_train"], "--image-scale", "240"]}
    for name, flags in argv.items():
        assert cli.main(["train", "--out", str(root / name), "--eval-data", test, *flags, *STEPS]) == 0
    return {name: root / name for name in argv}


def test_export_keeps_pixels_boxes_and_classes(exported):
    shapes = ShapesDataset("test", num_images=2)
    for spec in (exported["voc"] + ":test", exported["coco_test"]):
        data = open_dataset(spec, "test")
        assert tuple(data.classes) == CLASSES and len(data) == 2
        for (image, target), (want_image, want) in zip(data, shapes):
            assert torch.equal(image, want_image)               # PNG: lossless
            assert torch.equal(target["boxes"], want["boxes"])  # exact decimals, not whole pixels
            assert torch.equal(target["labels"], want["labels"])


def test_voc_and_coco_folders_train_the_shapes_model(runs, exported, capsys):
    weights = {name: torch.load(out / "model.pt") for name, out in runs.items()}
    for name in ("voc", "coco"):
        for key, value in weights["shapes"].items():
            torch.testing.assert_close(weights[name][key], value, rtol=0, atol=1e-6, msg=key)
    metrics = {name: json.loads((out / "metrics.json").read_text()) for name, out in runs.items()}
    assert metrics["voc"]["train_steps"] == metrics["shapes"]["train_steps"] == 2
    for name in ("voc", "coco"):
        assert abs(metrics[name]["mAP"] - metrics["shapes"]["mAP"]) <= 0.02
        assert json.loads((runs[name] / "classes.json").read_text()) == list(CLASSES)
    # evaluate reads the same numbers through either format
    capsys.readouterr()
    for name, out in runs.items():
        for spec in (exported["voc"] + ":test", exported["coco_test"]):
            assert cli.main(["evaluate", str(out), "--data", spec, "--device", "cpu"]) == 0
            got = json.loads(capsys.readouterr().out)
            assert abs(got["mAP"] - metrics["shapes"]["mAP"]) <= 0.02, (name, spec)
    image = exported["root"] / "voc" / "JPEGImages" / "test_000000.png"
    save = exported["root"] / "det.png"
    assert cli.main(["detect", str(runs["coco"]), str(image), "--save", str(save),
                     "--threshold", "0", "--device", "cpu"]) == 0
    assert save.stat().st_size > 0


def test_evaluate_defaults_to_the_runs_held_out_split_and_refuses_coco(runs, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", str(runs["voc"]), "--device", "cpu"]) == 0   # voc:ROOT:test
    assert json.loads(capsys.readouterr().out)["mAP"] == pytest.approx(
        json.loads((runs["voc"] / "metrics.json").read_text())["mAP"])
    assert cli.main(["evaluate", str(runs["coco"]), "--device", "cpu"]) == 2
    assert "--data coco:JSON:IMAGES" in capsys.readouterr().err


def _voc_copy(exported, tmp_path):
    shutil.copytree(exported["root"] / "voc", tmp_path / "voc")
    return tmp_path / "voc"


def _coco_copy(exported, tmp_path):
    shutil.copytree(exported["root"] / "coco", tmp_path / "coco")
    coco = tmp_path / "coco"
    return coco, f"coco:{coco / 'annotations/train.json'}:{coco / 'train'}"


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _bad_voc(kind, root):
    if kind == "missing images dir":
        shutil.rmtree(root / "JPEGImages")
        return f"voc:{root}", [f"{root / 'JPEGImages'} not found", "JPEGImages/"]
    if kind == "missing image":
        (root / "JPEGImages" / "train_000001.png").unlink()
        return f"voc:{root}", ["train_000001.png not found", "train_000001.xml names this image",
                               "add the image"]
    if kind == "unknown class":
        xml = root / "Annotations" / "train_000002.xml"
        name = xml.read_text().split("<name>")[1].split("</name>")[0]
        xml.write_text(xml.read_text().replace(f"<name>{name}</name>", "<name>dragon</name>", 1))
        return f"voc:{root}", [str(xml), "'dragon' is not in class_names", "classes.txt"]
    if kind == "empty split":
        (root / "ImageSets" / "Main" / "train.txt").write_text("\n")
        return f"voc:{root}:train", ["train.txt lists no images (an empty split)"]
    if kind == "unknown split":
        return f"voc:{root}:val", ["val.txt not found", "['test', 'train']", "voc:"]
    if kind == "missing annotation":
        (root / "Annotations" / "train_000003.xml").unlink()
        return f"voc:{root}", ["train_000003.xml not found", "remove the id"]
    raise AssertionError(kind)


def _bad_coco(kind, coco, spec):
    ann = coco / "annotations" / "train.json"
    if kind == "missing images dir":
        shutil.rmtree(coco / "train")
        return spec, [f"{coco / 'train'} not found", "IMAGES_DIR"]
    if kind == "missing image":
        (coco / "train" / "000002.png").unlink()
        return spec, ["000002.png not found", "images[1]", "file_name"]
    if kind == "unknown class":
        _edit_json(ann, lambda d: d["annotations"][0].update(category_id=99))
        return spec, [str(ann), "category_id 99", "is not listed in 'categories'"]
    if kind == "empty split":
        _edit_json(ann, lambda d: d.update(images=[], annotations=[]))
        return spec, [str(ann), "'images' is empty (an empty split)"]
    raise AssertionError(kind)


VOC_CASES = ["missing images dir", "missing image", "unknown class", "empty split",
             "unknown split", "missing annotation"]
COCO_CASES = ["missing images dir", "missing image", "unknown class", "empty split"]


def _refused(spec, tmp_path, capsys):
    out = tmp_path / "run"
    capsys.readouterr()
    status = cli.main(["train", "--data", spec, "--out", str(out), *STEPS])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists()                          # refused before anything was written
    return err


@pytest.mark.parametrize("kind", VOC_CASES)
def test_bad_voc_folder_is_named_before_training(kind, exported, tmp_path, capsys):
    spec, named = _bad_voc(kind, _voc_copy(exported, tmp_path))
    err = _refused(spec, tmp_path, capsys)
    for part in named:
        assert part in err, (part, err)


@pytest.mark.parametrize("kind", COCO_CASES)
def test_bad_coco_folder_is_named_before_training(kind, exported, tmp_path, capsys):
    spec, named = _bad_coco(kind, *_coco_copy(exported, tmp_path))
    err = _refused(spec, tmp_path, capsys)
    for part in named:
        assert part in err, (part, err)


@pytest.mark.parametrize("text", ["foo", "voc:", "coco:a.json", "pennfudan:", "shapes:3", "voc:a:b:c"])
def test_bad_data_strings_name_the_syntax(text, tmp_path, capsys):
    err = _refused(text, tmp_path, capsys)
    assert f"--data {text!r}" in err and "voc:ROOT[:SPLIT]" in err
    with pytest.raises(ValueError, match="coco:ANNOTATIONS.json:IMAGES_DIR"):
        parse_data_spec(text)


def test_missing_root_and_other_classes_are_named(exported, tmp_path, capsys):
    err = _refused(f"voc:{tmp_path / 'nowhere'}", tmp_path, capsys)
    assert "nowhere not found" in err and "export --to voc:DIR" in err
    root = _voc_copy(exported, tmp_path)
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in CLASSES[1:]) + "dragon\n")
    capsys.readouterr()
    status = cli.main(["train", "--data", "shapes", "--eval-data", f"voc:{root}:test",
                       "--out", str(tmp_path / "run"), *STEPS])
    assert status == 2 and "dragon" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pennfudan_spec_holds_out_the_last_photos(tmp_path, capsys):
    import numpy as np
    from PIL import Image
    root = tmp_path / "PennFudanPed"
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    for i in range(6):
        mask = np.zeros((30, 40), np.uint8)
        mask[5:20, 3 + i:10 + i] = 1
        Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(root / "PNGImages" / f"P{i}.png")
        Image.fromarray(mask).save(root / "PedMasks" / f"P{i}_mask.png")
    train, test = open_dataset(f"pennfudan:{root}", "train"), open_dataset(f"pennfudan:{root}", "test")
    assert train.classes == ("__background__", "pedestrian") and (len(train), len(test)) == (3, 3)
    assert test[0][1]["boxes"].tolist() == [[6.0, 5.0, 13.0, 20.0]]   # photo 3: the first held out
    (root / "PedMasks" / "P5_mask.png").unlink()
    err = _refused(f"pennfudan:{root}", tmp_path, capsys)
    assert "PedMasks" in err and "one PedMasks mask per PNGImages image" in err
    err = _refused(f"pennfudan:{tmp_path / 'nowhere'}", tmp_path, capsys)
    assert "nowhere not found" in err and "download_pennfudan" in err


def test_a_folder_from_before_data_and_backbone_flags_still_resumes(tmp_path):
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path)])
    cli._resolve_settings(args)
    config = cli._train_config(args, ShapesDataset)
    old = {k: v for k, v in config.items() if k not in ("data", "eval_data", "steps", "weights",
                                                         "freeze")}
    old["model"] = {k: v for k, v in config["model"].items() if k != "backbone"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cli._check_resume(tmp_path, config)                      # the same run: accepted
    other = dict(config, data="voc:x", model=dict(config["model"], backbone="resnet18"))
    with pytest.raises(cli.UsageError, match="--data shapes -> voc:x; --backbone tinyvgg -> resnet18"):
        cli._check_resume(tmp_path, other)
