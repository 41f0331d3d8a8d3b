"""RoI max pooling drawn and explored (lesson 02).

Fast R-CNN sec. 2.1: a region of interest is projected onto the conv feature map (stride 16),
rounded to whole cells, split into a ph x pw grid of bins, and each bin is max-pooled. The
drawing shows the three steps on one channel of a feature map: the exact projected box, the
cells it was rounded to, the bins (with their max cell) and the pooled ph x pw output.

    roi_pool_bins(roi, output_size, spatial_scale, feature_size)
        the rounded cell range of the RoI and the edges of every bin (``frcnn_edu.roi_ops``'s)
    draw_roi_pooling(ax_map, ax_out, feature, roi, output_size, spatial_scale, ...)
        feature map + RoI + bins on ``ax_map``, pooled output on ``ax_out``; returns a summary
    roi_pooling_explorer(feature, image=None, stride=16, ...)
        sliders for the RoI (x, y, w, h in image pixels) and the output size

Shape key:
    H, W    feature-map height and width (one channel)
    ph, pw  output size of the pooling (7 x 7 in the paper, small here to be readable)
"""
from __future__ import annotations

import torch
from matplotlib import colors as mcolors
from matplotlib import patches as mpatches

from frcnn_edu.roi_ops import pool_bins, pooled_size, roi_pool, round_half_away
from frcnn_edu.widgets.explorer import explorer, checkbox

__all__ = ["ROI_COLORS", "BIN_COLORS", "roi_pool_bins", "draw_roi_pooling",
           "roi_pooling_explorer"]

#: Colours of the exact (projected) RoI, the cells it is rounded to, and the max cells.
ROI_COLORS = {"exact": "#D55E00", "cells": "#0072B2", "max": "#000000"}
#: Colours of the bins: bin (i, j) takes BIN_COLORS[2 * (i % 2) + j % 2], so any two bins that
#: touch or overlap differ (Okabe-Ito).
BIN_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7")


def _one_roi(roi):
    t = torch.as_tensor(roi, dtype=torch.float64).reshape(-1)
    if t.numel() != 4 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"roi must be 4 finite numbers (x1, y1, x2, y2) in image pixels, got {roi!r}")
    if t[2] <= t[0] or t[3] <= t[1]:
        raise ValueError(f"roi must have x2 > x1 and y2 > y1, got {t.tolist()}")
    return t


def _feature_2d(feature):
    f = torch.as_tensor(feature).detach().float().cpu()
    if f.dim() == 3 and f.shape[0] == 1:
        f = f[0]
    if f.dim() != 2:
        raise ValueError(f"feature must be one channel, [H, W] or [1, H, W], got {list(f.shape)}")
    return f


def roi_pool_bins(roi, output_size, spatial_scale, feature_size):
    """Where RoI pooling looks, for one RoI: the rounded cells and the bin edges.

    roi: (x1, y1, x2, y2) in image pixels; feature_size: (H, W) of the feature map. Returns
    dict(cells=(x_start, y_start, x_end, y_end), the feature cells the RoI is rounded to,
    *inclusive* ends, before clipping to the map; rows=[(top, bottom), ...] (ph pairs) and
    cols=[(left, right), ...] (pw pairs), each bin's cell range with the end exclusive, clipped
    to the map, as ``frcnn_edu.roi_ops.roi_pool`` computes them; a bin with end <= start is
    empty (outside the map) and outputs 0).
    """
    box, (ph, pw) = _one_roi(roi), pooled_size(output_size)
    H, W = feature_size
    scaled = box.float() * torch.tensor(spatial_scale, dtype=torch.float32)  # as roi_pool does
    cells = tuple(int(v) for v in round_half_away(scaled))
    top, bottom = pool_bins(scaled[1:2], scaled[3:4], ph, H)
    left, right = pool_bins(scaled[0:1], scaled[2:3], pw, W)
    return dict(cells=cells, rows=list(zip(top[0].tolist(), bottom[0].tolist())),
                cols=list(zip(left[0].tolist(), right[0].tolist())))


def _light_greys():
    """White to mid grey: dark enough to read the ranking, light enough for coloured bins."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    return ListedColormap(matplotlib.colormaps["Greys"](torch.linspace(0, 0.6, 256).numpy()))


def _show_values(ax, values, fontsize, fmt, cmap, vmin, vmax):
    """Write each value of a 2-D tensor at its cell centre, dark on light cells, light on dark."""
    import matplotlib

    colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    for (i, j), v in zip(torch.cartesian_prod(torch.arange(values.shape[0]),
                                              torch.arange(values.shape[1])).tolist(),
                         values.flatten().tolist()):
        r, g, b, _ = colormap((v - vmin) / (vmax - vmin) if vmax > vmin else 0.5)
        light = 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5
        ax.text(j + 0.5, i + 0.5, format(v, fmt), ha="center", va="center", fontsize=fontsize,
                color="black" if light else "white")


def draw_roi_pooling(ax_map, ax_out, feature, roi, output_size, spatial_scale=1 / 16,
                     show_values=True, fmt=".0f", fontsize=8, cmap=None):
    """Draw RoI max pooling of one RoI over one feature-map channel.

    ``ax_map``: the map [H, W] in cell units (cell (i, j) covers [j, j+1) x [i, i+1)), with
    these patches in order: the exact projected RoI (dashed, ``ROI_COLORS['exact']``), the cells
    it is rounded to (``ROI_COLORS['cells']``), then one lightly filled rectangle per non-empty
    bin (row by row, ``BIN_COLORS``; drawn slightly inset so overlapping bins stay visible); the max cell of each bin is marked by one line of
    markers. ``cmap`` defaults to light greys (dark = large). ``ax_out`` (may be None): the pooled ph x pw output from ``frcnn_edu.roi_ops.roi_pool``.
    Returns dict(pooled [ph, pw] tensor, rows, cols, cells (see `roi_pool_bins`),
    empty_bins, max_cells [(row, col) per non-empty bin]).
    """
    f = _feature_2d(feature)
    (ph, pw), (H, W) = pooled_size(output_size), f.shape
    cmap = cmap if cmap is not None else _light_greys()
    bins = roi_pool_bins(roi, (ph, pw), spatial_scale, (H, W))
    pooled = roi_pool(f[None, None], [_one_roi(roi)[None].float()], (ph, pw), spatial_scale)[0, 0]
    vmin, vmax = float(f.min()), float(f.max())
    ax_map.imshow(f.numpy(), cmap=cmap, extent=(0, W, H, 0), interpolation="nearest",
                  vmin=vmin, vmax=vmax)
    if show_values:
        _show_values(ax_map, f, fontsize, fmt, cmap, vmin, vmax)
    x1, y1, x2, y2 = (_one_roi(roi) * spatial_scale).tolist()
    ax_map.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                        linestyle="--", edgecolor=ROI_COLORS["exact"]))
    xs, ys, xe, ye = bins["cells"]
    ax_map.add_patch(mpatches.Rectangle((xs, ys), xe + 1 - xs, ye + 1 - ys, fill=False,
                                        linewidth=2.5, edgecolor=ROI_COLORS["cells"]))
    max_cells = []
    for i, (top, bottom) in enumerate(bins["rows"]):
        for j, (left, right) in enumerate(bins["cols"]):
            if bottom <= top or right <= left:
                continue
            color, inset = BIN_COLORS[2 * (i % 2) + j % 2], 0.04 + 0.05 * ((i + j) % 2)
            ax_map.add_patch(mpatches.Rectangle(
                (left + inset, top + inset), right - left - 2 * inset, bottom - top - 2 * inset,
                facecolor=mcolors.to_rgba(color, 0.25), edgecolor=color, linewidth=2.5))
            window = f[top:bottom, left:right]            # the bin's cells; roi_pool's max is here
            r, c = divmod(int(torch.nonzero(window.flatten() == pooled[i, j])[0]), right - left)
            max_cells.append((top + r, left + c))
    if max_cells:
        ax_map.plot([c + 0.5 for _, c in max_cells], [r + 0.5 for r, _ in max_cells], "o",
                    markersize=15, markerfacecolor="none", markeredgewidth=2,
                    color=ROI_COLORS["max"])
    ax_map.set_xlim(0, W)
    ax_map.set_ylim(H, 0)
    ax_map.set_xticks(range(W))
    ax_map.set_yticks(range(H))
    ax_map.grid(color="#888888", linewidth=0.5, alpha=0.4)
    if ax_out is not None:
        ax_out.imshow(pooled.numpy(), cmap=cmap, extent=(0, pw, ph, 0), interpolation="nearest",
                      vmin=vmin, vmax=vmax)
        _show_values(ax_out, pooled, fontsize + 2, fmt, cmap, vmin, vmax)
        ax_out.set_xticks([])
        ax_out.set_yticks([])
        ax_out.set_title(f"pooled output {ph} x {pw}", fontsize=fontsize + 2)
    empty = sum(b <= t or r <= le for t, b in bins["rows"] for le, r in bins["cols"])
    return dict(pooled=pooled, rows=bins["rows"], cols=bins["cols"], cells=bins["cells"],
                empty_bins=empty, max_cells=max_cells)


def _draw_image_roi(ax, image, roi, cells, stride):
    """The image with the RoI (dashed) and the pixels of the cells RoI pooling reads (solid)."""
    from frcnn_edu.viz import show_image

    show_image(ax, image)
    x1, y1, x2, y2 = _one_roi(roi).tolist()
    ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                    linestyle="--", edgecolor=ROI_COLORS["exact"]))
    xs, ys, xe, ye = cells
    ax.add_patch(mpatches.Rectangle((xs * stride, ys * stride), (xe + 1 - xs) * stride,
                                    (ye + 1 - ys) * stride, fill=False, linewidth=2,
                                    edgecolor=ROI_COLORS["cells"]))
    h, w = image.shape[-2:]
    for k in range(0, max(h, w) + 1, stride):                     # the feature-cell grid
        ax.axhline(k, color="white", linewidth=0.4, alpha=0.5)
        ax.axvline(k, color="white", linewidth=0.4, alpha=0.5)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def roi_pooling_explorer(feature, image=None, stride=16, roi=(40, 40, 104, 88), output_size=2,
                         show_values=True, fmt=".1f", figsize=None):
    """Interactive RoI pooling: sliders for the RoI (x, y, w, h in image pixels) and the output
    size, over one feature-map channel ``feature`` [H, W] of stride ``stride`` (and the
    ``image`` [3, H*stride, W*stride] it came from, drawn first when given).

    Children: 0 x, 1 y, 2 w, 3 h, 4 output size, 5 show values, then the output. The function
    returns the dict of `draw_roi_pooling` (``w.result``: pooled values, bin edges, ...).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    f = _feature_2d(feature)
    H, W = f.shape
    img_h, img_w = H * stride, W * stride
    panels = 3 if image is not None else 2
    figsize = figsize or (4.2 * panels, 4.4)

    def update(x, y, w, h, output_size, show_values):
        box = (x, y, x + w, y + h)
        fig, axes = plt.subplots(1, panels, figsize=figsize,
                                 gridspec_kw=dict(width_ratios=[1] * (panels - 1) + [0.7]))
        summary = draw_roi_pooling(axes[-2], axes[-1], f, box, output_size, 1 / stride,
                                   show_values, fmt, fontsize=6 if H * W > 64 else 8)
        xs, ys, xe, ye = summary["cells"]
        axes[-2].set_title(f"feature map: RoI / {stride} -> cells x {xs}..{xe}, y {ys}..{ye}",
                           fontsize=9)
        if image is not None:
            _draw_image_roi(axes[0], image, box, summary["cells"], stride)
            axes[0].set_title(f"image: RoI ({x}, {y}, {x + w}, {y + h})", fontsize=9)
        plt.show()
        return summary

    style = {"description_width": "initial"}
    x1, y1, x2, y2 = (int(v) for v in roi)
    return explorer(
        update,
        x=widgets.IntSlider(value=x1, min=0, max=img_w - 1, description="x (px)", style=style),
        y=widgets.IntSlider(value=y1, min=0, max=img_h - 1, description="y (px)", style=style),
        w=widgets.IntSlider(value=x2 - x1, min=1, max=img_w, description="w (px)", style=style),
        h=widgets.IntSlider(value=y2 - y1, min=1, max=img_h, description="h (px)", style=style),
        output_size=widgets.IntSlider(value=output_size, min=1, max=7,
                                      description="output size", style=style),
        show_values=checkbox(show_values, "show values"),
    )
