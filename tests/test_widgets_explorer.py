"""The explorers' shared container: a saved lesson shows a note, not the controls' repr."""
import ipywidgets
import torch

from frcnn_edu.widgets.explorer import NOT_RUN_NOTE, checkbox, explorer
from frcnn_edu.widgets.iou_nms import nms_explorer


def test_an_explorer_is_interactive_and_its_text_form_is_the_note():
    w = explorer(lambda n: n * 2, n=ipywidgets.IntSlider(value=3))
    assert isinstance(w, ipywidgets.interactive)
    assert w.result == 6                                # still runs update like interactive
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == NOT_RUN_NOTE           # what a not-yet-run lesson shows
    assert "application/vnd.jupyter.widget-view+json" in data


def test_a_lesson_explorer_uses_it_and_its_checkbox_labels_fit():
    image = torch.rand(3, 32, 32)
    detections = dict(boxes=torch.tensor([[2.0, 2, 20, 20], [3, 3, 21, 21]]),
                      scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([1, 1]))
    w = nms_explorer(image, detections)
    assert repr(w) == NOT_RUN_NOTE
    boxes = [c for c in w.children if isinstance(c, ipywidgets.Checkbox)]
    assert boxes and all(not c.indent and c.layout.width == "auto" for c in boxes)
    long = checkbox(True, "anchors inside the image only")
    assert long.description == "anchors inside the image only" and long.layout.width == "auto"
