"""Checks on the plots the code writes: that a PNG shows a drawn plot, and what a saved matplotlib figure draws.

A file size says nothing about content: a blank figure of the same size compresses to a few kilobytes, and one
with axes but no data to tens. These checks read the pixels, and where the test runs the plotting in process,
capture the ``Figure`` at ``savefig`` to compare its axes and lines with the data.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

#: A pixel is ink when some channel is below this (white is 1).
INK_BELOW = 0.9
#: A pixel is coloured (drawn in matplotlib's colour cycle, not black/grey axes and text) when its channels
#: spread by more than this.
COLOURED_SPREAD = 0.25


def read_rgb(path: str | Path) -> np.ndarray:
    """The PNG at ``path`` as (height, width, 3) floats in [0, 1], transparency composited over white."""
    import matplotlib.image

    image = matplotlib.image.imread(str(path)).astype(np.float64)  # PNGs are read as floats in [0, 1]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:]
        image = image[..., :3] * alpha + (1 - alpha)
    return image[..., :3]


def assert_drawn_plot(
    path: str | Path,
    size: tuple[int, int] | None = None,
    panels: tuple[int, int] = (1, 1),
    min_ink: float = 0.01,
    max_ink: float = 0.6,
    min_colours: int = 32,
    min_coloured: float = 0.001,
) -> np.ndarray:
    """Assert that the PNG at ``path`` is a drawn plot, not a blank, uniform or noise image; returns its pixels.

    Args:
        size: expected (width, height) in pixels (figure size times dpi), if given.
        panels: (rows, columns) of the figure's grid of axes; each cell of the image must show data.
        min_ink, max_ink: bounds on the fraction of non-white pixels (axes, text and data; a full page of ink is
            not a plot either).
        min_colours: least number of distinct colours (anti-aliased lines and text give hundreds).
        min_coloured: least fraction of coloured pixels in each panel: the data, drawn in matplotlib's colour
            cycle, as opposed to axes, ticks and labels alone, which are black and grey.
    """
    rgb = read_rgb(path)
    height, width, _ = rgb.shape
    if size is not None:
        assert (width, height) == size, f"{path}: {width}x{height} pixels, expected {size[0]}x{size[1]}"
    ink = (rgb < INK_BELOW).any(axis=-1).mean()
    assert min_ink <= ink <= max_ink, f"{path}: {ink:.2%} of pixels are ink, expected {min_ink:.0%} to {max_ink:.0%}"
    colours = len(np.unique((rgb * 255).round().astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours >= min_colours, f"{path}: {colours} distinct colours, expected at least {min_colours}"
    coloured = np.ptp(rgb, axis=-1) > COLOURED_SPREAD
    for row, band in enumerate(np.array_split(coloured, panels[0], axis=0)):
        for column, cell in enumerate(np.array_split(band, panels[1], axis=1)):
            assert cell.mean() >= min_coloured, (
                f"{path}: {cell.mean():.3%} of pixels of panel ({row}, {column}) are coloured (data), expected at "
                f"least {min_coloured:.3%}"
            )
    return rgb


@contextlib.contextmanager
def saved_figures() -> Iterator[list]:
    """Collect every matplotlib ``Figure`` saved inside the block (in the order saved); it is saved as usual."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", savefig)
        yield figures


def lines_by_label(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The lines of a matplotlib ``Axes`` by label (unlabelled ones as ``_child<n>``): {label: (x, y)}."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
        for line in ax.get_lines()
    }
