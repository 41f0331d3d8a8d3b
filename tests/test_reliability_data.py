"""Issue 18, data side: images checked for dtype, range and NaN; float64 boxes accepted; targets
outside the image refused unless clipped on request; VOC's difficult flag read as the devkit
does; loss inputs validated; malformed VOC/COCO files raise one error type naming the file and
the element; downloads use https, a checksum and a safe extraction."""
import io
import json
import math
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_edu.data import AnnotationError, check_target, read_coco, read_voc_annotation
from frcnn_edu.data import download as dl
from frcnn_edu.data.batching import check_images
from frcnn_edu.data.image_io import load_image
from frcnn_edu.data.targets import check_targets
from frcnn_edu.evaluation import voc_eval
from frcnn_edu.losses import rpn_loss, smooth_l1
from frcnn_edu.training import check_dataset, train

from test_training import tiny_data, tiny_model


# --- images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, fix", [(torch.float64, r"image\.float\(\)"),
                                        (torch.float16, r"image\.float\(\)"),
                                        (torch.uint8, r"image\.float\(\) / 255")])
def test_images_of_another_dtype_are_refused_with_the_fix(dtype, fix):
    image = (torch.rand(3, 32, 32) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    with pytest.raises(ValueError, match=rf"images\[0\] is {dtype}.*float32.*{fix}"):
        tiny_model().eval()([image])


def test_0_255_pixels_warn_and_nan_pixels_name_the_image():
    with pytest.warns(UserWarning, match=r"images\[1\] .*look like 0-255; divide by 255"):
        check_images([torch.rand(3, 8, 8), torch.rand(3, 8, 8) * 255])
    for bad in (float("nan"), float("inf")):
        image = torch.rand(3, 8, 8)
        image[1, 2, 2] = bad
        with pytest.raises(ValueError, match=r"images\[1\] holds NaN or inf pixels: an input problem"):
            tiny_model().eval()([torch.rand(3, 8, 8), image])


def test_a_0_255_dataset_warns_once():
    class Bright(torch.utils.data.Dataset):
        num_classes = 6

        def __init__(self):
            self.data = tiny_data(3)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            image, target = self.data[i]
            return image * 255, target
    with pytest.warns(UserWarning, match=r"3 of 3 dataset images \(first: item 0\).*0-255") as rec:
        check_dataset(Bright(), 6)
    assert len(rec) == 1


def test_float64_target_boxes_are_accepted_as_torchvision_does():
    class Double(torch.utils.data.Dataset):
        num_classes = 6

        def __init__(self):
            self.data = tiny_data(2)

        def __len__(self):
            return 2

        def __getitem__(self, i):
            image, target = self.data[i]
            return image, dict(target, boxes=target["boxes"].double())
    hist = train(tiny_model(), Double(), steps=1, progress=False)
    assert len(hist) == 1 and math.isfinite(hist[0]["loss"])
    target = Double()[0][1]
    checked = check_targets([target], 6, 1)
    assert checked[0]["boxes"].dtype == torch.float32 and target["boxes"].dtype == torch.float64


@pytest.mark.parametrize("targets", [
    {"boxes": torch.tensor([[1., 1., 9., 9.]]), "labels": torch.tensor([1])},
    torch.tensor([[1., 1., 9., 9.]]),
])
def test_targets_not_a_list_of_dicts_are_named(targets):
    model = tiny_model().train()
    with pytest.raises(TypeError, match="targets must be a list of dicts"):
        model([torch.rand(3, 32, 32)], targets)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert image.shape == (3, 1, 4) and image.dtype == torch.float32
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 0.25, 0.5, 1.0]), atol=1e-4)
    assert torch.equal(image[0], image[2])


# --- targets outside the image: an error unless clipped ---------------------------------------

def _target(boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return dict(boxes=boxes, labels=torch.ones(len(boxes), dtype=torch.int64) if labels is None
                else torch.tensor(labels))


@pytest.mark.parametrize("box", [[10., 10., 70., 20.], [-4., 10., 20., 20.], [10., 10., 20., 90.]])
def test_boxes_outside_the_image_are_an_error_unless_clipped(box):
    target = _target([[1., 1., 5., 5.], box])
    with pytest.raises(ValueError, match=r"target\['boxes'\]\[1\].*inside the image.*clip=True"):
        check_target(target, image_size=(64, 64))
    clipped = check_target(target, image_size=(64, 64), clip=True)
    assert clipped is not target and torch.equal(target["boxes"][1], torch.tensor(box))
    assert clipped["boxes"].min() >= 0 and clipped["boxes"][:, 2].max() <= 64
    with pytest.raises(ValueError, match="clipped to the image"):          # nothing left inside
        check_target(_target([[70., 70., 80., 80.]]), image_size=(64, 64), clip=True)


def test_training_data_with_a_box_outside_its_image_fails_before_the_first_step():
    class Outside(torch.utils.data.Dataset):
        num_classes = 6

        def __len__(self):
            return 2

        def __getitem__(self, i):
            box = [[40., 40., 80., 60.]] if i == 1 else [[1., 1., 9., 9.]]
            return torch.rand(3, 64, 64), _target(box)
    with pytest.raises(ValueError, match=r"dataset item 1: .*inside the image .*clip"):
        check_dataset(Outside(), 6)


VOC_XML = """<annotation><filename>a.jpg</filename>
<size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>dog</name><difficult>{difficult}</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>5</ymin><xmax>{xmax}</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


def _voc(tmp_path, difficult="0", xmin="10", xmax="50", text=None):
    path = tmp_path / "0001.xml"
    path.write_text(text if text is not None else VOC_XML.format(difficult=difficult, xmin=xmin, xmax=xmax))
    return path


def test_voc_box_outside_the_image_is_an_error_unless_clipped(tmp_path):
    for xmin, xmax in (("10", "120"), ("0", "50")):                # xmax > width; x1 = xmin - 1 < 0
        path = _voc(tmp_path, xmin=xmin, xmax=xmax)
        with pytest.raises(AnnotationError, match=rf"{path}.*inside the image.*clip=True"):
            read_voc_annotation(path)
        boxes = read_voc_annotation(path, clip=True)["boxes"]
        assert boxes[0, 0] >= 0 and boxes[0, 2] <= 100


@pytest.mark.parametrize("text, want", [("1", True), ("0", False), (" 1 ", True)])
def test_voc_difficult_reads_as_the_devkit(tmp_path, text, want):
    assert read_voc_annotation(_voc(tmp_path, difficult=text))["difficult"].tolist() == [want]


@pytest.mark.parametrize("text", ["yes", "true", "2", ""])
def test_voc_difficult_other_values_are_errors_naming_the_file(tmp_path, text):
    path = _voc(tmp_path, difficult=text)
    with pytest.raises(AnnotationError, match=rf"{path}: <object> 0 \(dog\)/<difficult>: .*1 or 0"):
        read_voc_annotation(path)


def test_voc_missing_difficult_means_not_difficult(tmp_path):
    path = _voc(tmp_path, text=VOC_XML.replace("<difficult>{difficult}</difficult>", "")
                .format(xmin="10", xmax="50"))
    assert read_voc_annotation(path)["difficult"].tolist() == [False]


def test_coco_box_outside_the_image_is_an_error_unless_clipped(tmp_path):
    path = tmp_path / "ann.json"
    for bbox in ([50, 10, 60, 20], [-3, 10, 20, 20]):               # x + w > width; x < 0
        path.write_text(json.dumps(dict(
            images=[dict(id=1, file_name="a.png", width=100, height=80)],
            annotations=[dict(id=7, image_id=1, category_id=1, bbox=bbox)],
            categories=[dict(id=1, name="dog")])))
        with pytest.raises(AnnotationError, match=rf"{path}: image id 1: .*inside the image.*clip=True"):
            read_coco(path)
        boxes = read_coco(path, clip=True).targets[0]["boxes"]
        assert boxes[0, 0] >= 0 and boxes[0, 2] <= 100


# --- loss inputs and evaluation edge cases ----------------------------------------------------

def test_rpn_loss_takes_hard_labels_only():
    a = 6
    args = (torch.zeros(a), torch.zeros(a, 4))
    with pytest.raises(ValueError, match=r"labels must hold 1 .*0\.5"):
        rpn_loss(*args, torch.tensor([1., 0.5, 0., -1., 0., 0.]), torch.zeros(a, 4))
    ok = rpn_loss(*args, torch.tensor([1., 0., 0., -1., 0., 0.]), torch.zeros(a, 4))   # float 0/1/-1
    assert all(torch.isfinite(t) for t in ok)


def test_smooth_l1_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape, got \[5, 4\] and \[1, 4\]"):
        smooth_l1(torch.zeros(5, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        smooth_l1(torch.zeros(4), torch.zeros(4, 1))


def test_voc_eval_of_no_images_is_nan():
    result = voc_eval([], [], 3)
    assert math.isnan(result["mAP"]) and all(math.isnan(v) for v in result["ap"].values())


# --- malformed annotation files: one error type naming file and element ----------------------

VOC_BAD = {
    "bad XML": ("<annotation><object>", "XML: not well-formed"),
    "missing bndbox": (VOC_XML.format(difficult="0", xmin="1", xmax="5").split("<bndbox>")[0]
                       + "</object></annotation>",
                       r"<object> 0 \(dog\)/<bndbox>: missing"),
    "xmin abc": (VOC_XML.format(difficult="0", xmin="abc", xmax="50"),
                 r"<bndbox>/<xmin>: is 'abc'; expected a number"),
    "missing xmax": (VOC_XML.replace("<xmax>{xmax}</xmax>", "").format(difficult="0", xmin="1"),
                     r"<bndbox>/<xmax>: missing"),
    "unknown class": (VOC_XML.replace("dog", "dragon").format(difficult="0", xmin="1", xmax="5"),
                      r"<name>: 'dragon' is not in class_names"),
    "bad size": (VOC_XML.replace("<width>100", "<width>wide").format(difficult="0", xmin="1", xmax="5"),
                 r"<size>/<width>: is 'wide'"),
    "wrong root": ("<notes/>", r"<notes>: expected the root element <annotation>"),
}


@pytest.mark.parametrize("case", sorted(VOC_BAD))
def test_malformed_voc_files_raise_annotation_error_naming_file_and_element(tmp_path, case):
    text, named = VOC_BAD[case]
    path = _voc(tmp_path, text=text)
    with pytest.raises(AnnotationError, match=rf"^{path}: .*{named}") as err:
        read_voc_annotation(path)
    assert isinstance(err.value, ValueError)


GOOD = dict(images=[dict(id=1, file_name="a.png", width=100, height=80)],
            annotations=[dict(id=7, image_id=1, category_id=1, bbox=[1, 2, 10, 10])],
            categories=[dict(id=1, name="dog")])
COCO_BAD = {
    "invalid JSON": ("{not json", "JSON: not valid JSON"),
    "top-level list": ("[]", "top level: a list"),
    "no categories": (dict(GOOD, categories=None), "'categories': missing or not a list"),
    "3-number bbox": (dict(GOOD, annotations=[dict(GOOD["annotations"][0], bbox=[1, 2, 3])]),
                      r"annotations\[0\] \(id 7\)\['bbox'\]: is \[1, 2, 3\]; expected \[x, y, width, height\]"),
    "text bbox": (dict(GOOD, annotations=[dict(GOOD["annotations"][0], bbox=["1", 2, 3, 4])]),
                  r"\['bbox'\]: .*four numbers"),
    "no image_id": (dict(GOOD, annotations=[{"id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]),
                    r"\['image_id'\]: missing"),
    "category name missing": (dict(GOOD, categories=[dict(id=1)]), r"categories\[0\]\['name'\]: missing"),
    "unlisted category": (dict(GOOD, annotations=[dict(GOOD["annotations"][0], category_id=3)]),
                          "category_id 3: is not listed in 'categories'"),
    "no file_name": (dict(GOOD, images=[dict(id=1)]), r"images\[0\]\['file_name'\]: missing"),
}


@pytest.mark.parametrize("case", sorted(COCO_BAD))
def test_malformed_coco_files_raise_annotation_error_naming_file_and_key(tmp_path, case):
    content, named = COCO_BAD[case]
    path = tmp_path / "ann.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(AnnotationError, match=rf"^{path}: .*{named}"):
        read_coco(path)


def test_good_coco_still_reads(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(GOOD))
    assert read_coco(path).targets[0]["boxes"].tolist() == [[1.0, 2.0, 11.0, 12.0]]


# --- downloads -------------------------------------------------------------------------------

def test_download_needs_https_and_checks_the_checksum(tmp_path):
    with pytest.raises(ValueError, match="https"):
        dl.download_file("http://example.org/a.tar", tmp_path)
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"data")
    with pytest.raises(ValueError, match=rf"{archive}: md5 is .*expected 0+"):
        dl._verify(archive, md5="0" * 32)
    dl._verify(archive, md5="8d777f385d3dfec8815d20f7496026dc")   # md5(b"data")
    with pytest.warns(UserWarning, match="recorded"):             # no published checksum: pin it
        dl._verify(archive)
    dl._verify(archive)
    archive.write_bytes(b"changed")
    with pytest.raises(ValueError, match="the file changed"):
        dl._verify(archive)


def _tar(path, name, linkname=None):
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        if linkname is not None:
            info.type, info.linkname = tarfile.SYMTYPE, linkname
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    return path


@pytest.mark.parametrize("old_python", [False, True])
@pytest.mark.parametrize("name, link", [("../evil.txt", None), ("/tmp/evil_abs.txt", None),
                                        ("a/link", "../../outside")])
def test_tar_members_outside_the_folder_are_refused(tmp_path, monkeypatch, old_python, name, link):
    if old_python:                                               # the hand-written member check
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = _tar(tmp_path / "x.tar", name, link)
    target = tmp_path / "out"
    with pytest.raises(ValueError, match=r"x\.tar.*(outside|absolute|not safe)"):
        dl.extract_tar(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    ok = _tar(tmp_path / "ok.tar", "VOCdevkit/a.txt")
    dl.extract_tar(ok, target)
    assert (target / "VOCdevkit" / "a.txt").read_bytes() == b"hi"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "..\\evil.txt"])
def test_zip_members_outside_the_folder_are_refused(tmp_path, name):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(name, "hi")
    with pytest.raises(ValueError, match=r"x\.zip.*outside"):
        dl.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
