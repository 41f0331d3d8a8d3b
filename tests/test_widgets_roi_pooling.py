"""Tests for frcnn_edu.widgets.roi_pooling: the bin edges agree with RoI pooling, what the drawing
puts on the axes, and the explorer's result as its sliders move."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from frcnn_edu.roi_ops import roi_pool, roi_pool_loop  # noqa: E402
from frcnn_edu.widgets import roi_pooling  # noqa: E402
from frcnn_edu.widgets.roi_pooling import (BIN_COLORS, ROI_COLORS, draw_roi_pooling,  # noqa: E402
                                           roi_pool_bins, roi_pooling_explorer)

from frcnn_edu.checks.lesson02 import FEATURE  # noqa: E402  (lesson 02's hand-sized map)


@pytest.fixture
def axes():
    fig, axes = plt.subplots(1, 2)
    yield axes
    plt.close(fig)


def _same_color(a, b):
    return np.allclose(to_rgba(a)[:3], to_rgba(b)[:3])


def test_module_reachable_from_widgets_package():
    from frcnn_edu import widgets

    assert widgets.roi_pooling is roi_pooling


def test_roi_pool_bins_worked_example():
    # x: 20/16 = 1.25 -> 1, 80/16 = 5 -> 5 (5 cells); y: 24/16 = 1.5 -> 2, 56/16 = 3.5 -> 4 (3 cells)
    bins = roi_pool_bins((20, 24, 80, 56), 2, 1 / 16, (6, 8))
    assert bins["cells"] == (1, 2, 5, 4)
    assert bins["cols"] == [(1, 4), (3, 6)]      # 2.5 cells per bin: floor / ceil overlap
    assert bins["rows"] == [(2, 4), (3, 5)]


def test_roi_pool_bins_reproduce_roi_pool():
    """Max over the returned bins == roi_pool, for random RoIs, sizes and off-map boxes."""
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(6, 8, generator=g)
    for _ in range(60):
        xy = torch.rand(2, generator=g) * torch.tensor([150.0, 110.0]) - 10
        wh = torch.rand(2, generator=g) * 90 + 1
        roi = torch.cat([xy, xy + wh])
        size = (int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g)))
        bins = roi_pool_bins(roi, size, 1 / 16, (6, 8))
        want = roi_pool(feature[None, None], [roi[None]], size, 1 / 16)[0, 0]
        for i, (t, b) in enumerate(bins["rows"]):
            for j, (le, r) in enumerate(bins["cols"]):
                value = feature[t:b, le:r].max() if b > t and r > le else torch.tensor(0.0)
                assert value == want[i, j]


def test_roi_pool_bins_bad_roi():
    with pytest.raises(ValueError, match="roi"):
        roi_pool_bins((10, 10, 5, 20), 2, 1 / 16, (6, 8))
    with pytest.raises(ValueError, match="roi"):
        roi_pool_bins((10, 10, 20), 2, 1 / 16, (6, 8))


def test_draw_roi_pooling_patches_and_result(axes):
    ax_map, ax_out = axes
    res = draw_roi_pooling(ax_map, ax_out, FEATURE, (20, 24, 80, 56), 2)
    loop = roi_pool_loop(FEATURE[None, None], [torch.tensor([[20.0, 24, 80, 56]])], 2, 1 / 16)
    assert torch.equal(res["pooled"], loop[0, 0])
    assert res["pooled"].tolist() == [[7.0, 9.0], [7.0, 9.0]]
    assert res["empty_bins"] == 0 and res["cells"] == (1, 2, 5, 4)
    # exact RoI, rounded cells, then 4 bins
    assert len(ax_map.patches) == 2 + 4
    exact, cells = ax_map.patches[:2]
    assert _same_color(exact.get_edgecolor(), ROI_COLORS["exact"]) and exact.get_linestyle() == "--"
    assert (exact.get_x(), exact.get_y(), exact.get_width(), exact.get_height()) == (1.25, 1.5, 3.75, 2.0)
    assert _same_color(cells.get_edgecolor(), ROI_COLORS["cells"])
    assert (cells.get_x(), cells.get_y(), cells.get_width(), cells.get_height()) == (1, 2, 5, 3)
    assert _same_color(ax_map.patches[2].get_facecolor(), BIN_COLORS[0])
    assert _same_color(ax_map.patches[3].get_facecolor(), BIN_COLORS[1])
    # the marked max cells hold the pooled values
    assert len(ax_map.lines) == 1 and len(res["max_cells"]) == 4
    for (r, c), v in zip(res["max_cells"], res["pooled"].flatten().tolist()):
        assert FEATURE[r, c] == v
    assert len(ax_map.texts) == FEATURE.numel() and len(ax_out.texts) == 4
    assert ax_out.get_title() == "pooled output 2 x 2"


def test_draw_roi_pooling_off_map_bins_and_no_output_axes(axes):
    res = draw_roi_pooling(axes[0], None, FEATURE[None], (100, 60, 200, 120), (2, 3),
                           show_values=False)
    assert res["empty_bins"] > 0
    assert len(axes[0].patches) == 2 + 6 - res["empty_bins"]
    assert len(axes[0].texts) == 0
    want = roi_pool(FEATURE[None, None], [torch.tensor([[100.0, 60, 200, 120]])], (2, 3), 1 / 16)
    assert torch.equal(res["pooled"], want[0, 0])


def test_draw_roi_pooling_bad_feature(axes):
    with pytest.raises(ValueError, match="one channel"):
        draw_roi_pooling(axes[0], axes[1], torch.zeros(2, 6, 8), (0, 0, 32, 32), 2)


def test_explorer_sliders_change_the_result():
    w = roi_pooling_explorer(FEATURE, stride=16, roi=(20, 24, 80, 56), output_size=2, fmt=".0f")
    x, y, wd, ht, size, values = w.children[:6]
    assert (x.value, y.value, wd.value, ht.value, size.value, values.value) == (20, 24, 60, 32, 2, True)
    w.update()
    assert w.result["pooled"].tolist() == [[7.0, 9.0], [7.0, 9.0]]
    size.value = 3
    assert w.result["pooled"].shape == (3, 3) and len(w.result["rows"]) == 3
    x.value = 0
    assert w.result["cells"][0] == 0
    want = roi_pool(FEATURE[None, None], [torch.tensor([[0.0, 24, 60, 56]])], 3, 1 / 16)
    assert torch.equal(w.result["pooled"], want[0, 0])


def test_explorer_with_image_draws_three_panels():
    image = torch.rand(3, 96, 128)
    w = roi_pooling_explorer(FEATURE, image=image, stride=16)
    w.update()
    assert w.result["pooled"].shape == (2, 2)
    fig = plt.gcf()
    assert len(fig.axes) == 3
    assert len(fig.axes[0].patches) == 2      # the RoI and the cells it is pooled from, in pixels
