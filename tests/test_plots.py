"""The plot checks of ``plots.py`` reject what a file-size check lets through: blank, uniform, noise, axes without
data, a panel left empty."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from plots import assert_drawn_plot, lines_by_label, saved_figures

T = np.linspace(0, 1, 50)


def _figure(panels: int = 1, with_data: tuple[bool, ...] = (True,), with_axes: bool = True) -> Figure:
    """A 6x4 inch figure of ``panels`` axes side by side; those flagged in ``with_data`` draw two labelled lines."""
    fig = Figure(figsize=(6, 4))
    if with_axes:
        for ax, draw in zip(fig.subplots(1, panels, squeeze=False)[0], with_data):
            if draw:
                ax.plot(T, np.sin(6 * T), label="sine")
                ax.plot(T, T**2, "--", label="square")
                ax.legend()
            ax.set_xlabel("time (ps)")
            ax.set_ylabel("energy (kJ/mol)")
    return fig


def _save(fig: Figure, path):
    fig.savefig(path, dpi=100)
    return path


def _save_pixels(pixels: np.ndarray, path):
    import matplotlib.image

    matplotlib.image.imsave(str(path), pixels)
    return path


def test_a_plot_passes_and_its_figure_is_captured(tmp_path):
    with saved_figures() as figures:
        path = _save(_figure(), tmp_path / "plot.png")
    assert_drawn_plot(path, size=(600, 400))
    with pytest.raises(AssertionError, match="600x400 pixels, expected 800x600"):
        assert_drawn_plot(path, size=(800, 600))
    (fig,) = figures
    lines = lines_by_label(fig.axes[0])
    assert list(lines) == ["sine", "square"]
    np.testing.assert_allclose(lines["square"][0], T)
    np.testing.assert_allclose(lines["square"][1], T**2)


def test_blank_uniform_noise_and_axes_only_images_fail(tmp_path):
    real = assert_drawn_plot(_save(_figure(), tmp_path / "plot.png"))
    for name, pixels, message in [
        ("white", np.ones_like(real), "0.00% of pixels are ink"),
        ("grey", np.full_like(real, 0.5), "100.00% of pixels are ink"),
        ("noise", np.random.default_rng(0).random(real.shape), r"9\d\.\d\d% of pixels are ink"),
    ]:
        with pytest.raises(AssertionError, match=message):
            assert_drawn_plot(_save_pixels(pixels, tmp_path / f"{name}.png"))
    with pytest.raises(AssertionError, match="0.00% of pixels are ink"):
        assert_drawn_plot(_save(_figure(with_axes=False), tmp_path / "empty_figure.png"))
    with pytest.raises(AssertionError, match=r"0.000% of pixels of panel \(0, 0\) are coloured"):
        assert_drawn_plot(_save(_figure(with_data=(False,)), tmp_path / "axes_only.png"))


def test_each_panel_must_show_data(tmp_path):
    path = _save(_figure(panels=2, with_data=(True, False)), tmp_path / "half.png")
    assert_drawn_plot(path)  # as a whole, it is a plot
    with pytest.raises(AssertionError, match=r"0.000% of pixels of panel \(0, 1\) are coloured"):
        assert_drawn_plot(path, panels=(1, 2))
    assert_drawn_plot(_save(_figure(panels=2, with_data=(True, True)), tmp_path / "full.png"), panels=(1, 2))
