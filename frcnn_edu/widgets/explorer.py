"""What every explorer shares: the `interactive` container and its labelled checkboxes.

`explorer(update, **controls)` is ``ipywidgets.interactive`` with one change: its plain-text
form, which JupyterLab shows for a saved lesson before its cells have run (and a terminal shows
always), is a one-line note instead of the controls' repr
(``interactive(children=(IntSlider(...``). `checkbox` gives its label the room it needs.
"""
from __future__ import annotations

NOT_RUN_NOTE = "Interactive explorer: run this cell (after the cells above it) to use it."


def explorer(update, **controls):
    """``ipywidgets.interactive(update, **controls)`` whose text form is `NOT_RUN_NOTE`."""
    import ipywidgets as widgets

    class Explorer(widgets.interactive):
        def __repr__(self):
            return NOT_RUN_NOTE

    return Explorer(update, **controls)


def checkbox(value, description):
    """A Checkbox whose whole label shows: not indented, as wide as its text needs."""
    import ipywidgets as widgets

    return widgets.Checkbox(value=value, description=description, indent=False,
                            layout=widgets.Layout(width="auto"))
