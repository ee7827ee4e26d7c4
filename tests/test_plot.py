"""Tests of gdmlib.plot: every helper runs, labels its axes, returns its artists, rejects bad
input."""

from __future__ import annotations

import sys

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, Uniform

from gdmlib import plot, toy


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def ax():
    _, axes = plt.subplots()
    return axes


def test_style_sets_the_book_rcparams() -> None:
    with mpl.rc_context():
        plot.style(**{"font.size": 13})
        assert mpl.rcParams["figure.dpi"] == 100
        assert mpl.rcParams["savefig.dpi"] <= 200
        assert mpl.rcParams["axes.grid"] is True
        assert mpl.rcParams["figure.constrained_layout.use"] is True
        assert mpl.rcParams["font.size"] == 13
        assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(plot.COLORS)
        with pytest.raises(KeyError, match="not Matplotlib rcParams keys"):
            plot.style(**{"font.sizes": 13})


# ----------------------------------------------------------------------------------------------
# density_1d


def test_density_1d_draws_each_density(ax, device: torch.device) -> None:
    mixture = toy.two_gaussians(2.0, device=device)
    dists = {
        "data": mixture,
        "fit": Normal(torch.tensor(0.0, device=device), torch.tensor(2.0, device=device)),
    }
    lines = plot.density_1d(ax, dists, fill=["data"])
    assert len(lines) == 2
    assert [line.get_label() for line in lines] == ["data", "fit"]
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "density"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["data", "fit"]
    assert len(ax.collections) == 1  # only "data" is shaded
    x, y = lines[0].get_data()
    expected = (
        mixture.log_prob(torch.as_tensor(x, device=device, dtype=torch.float32)).exp().cpu().numpy()
    )
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
    # The default range holds the whole mixture: the density integrates to about 1 over it.
    assert ((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() == pytest.approx(1.0, abs=1e-3)


def test_density_1d_with_given_points_and_bounded_support(ax) -> None:
    x = torch.linspace(-1, 2, 301)
    (line,) = plot.density_1d(ax, {"U(0, 1)": Uniform(0.0, 1.0)}, x, fill=True)
    _, y = line.get_data()
    assert ax.get_xlim() == pytest.approx((-1.0, 2.0))
    inside = ((x >= 0) & (x < 1)).numpy()
    np.testing.assert_allclose(y[inside], 1.0)
    np.testing.assert_allclose(y[~inside], 0.0)
    assert len(ax.collections) == 1


def test_density_1d_rejects_bad_input(ax) -> None:
    with pytest.raises(ValueError, match="univariate"):
        plot.density_1d(ax, {"2-D": Independent(Normal(torch.zeros(2), torch.ones(2)), 1)})
    with pytest.raises(ValueError, match="univariate"):
        plot.density_1d(ax, {"batch": Normal(torch.zeros(3), torch.ones(3))})
    with pytest.raises(ValueError, match="univariate"):
        plot.density_1d(ax, {"ring": toy.ring()})
    with pytest.raises(ValueError, match="empty"):
        plot.density_1d(ax, {})
    with pytest.raises(TypeError, match="torch Distribution"):
        plot.density_1d(ax, {"p": 1.0})
    with pytest.raises(TypeError, match="mapping"):
        plot.density_1d(ax, [Normal(0.0, 1.0)])
    with pytest.raises(ValueError, match="1-D"):
        plot.density_1d(ax, {"p": Normal(0.0, 1.0)}, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="low < high"):
        plot.density_1d(ax, {"p": Normal(0.0, 1.0)}, xlim=(1.0, -1.0))
    with pytest.raises(ValueError, match="not in dists"):
        plot.density_1d(ax, {"p": Normal(0.0, 1.0)}, fill=["q"])
    with pytest.raises(TypeError, match="Axes"):
        plot.density_1d(None, {"p": Normal(0.0, 1.0)})


# ----------------------------------------------------------------------------------------------
# samples_2d


def test_samples_2d_scatter_and_centres(ax, device: torch.device) -> None:
    target = toy.grid(device=device)
    samples = target.sample((300,)).requires_grad_()
    artists = plot.samples_2d(ax, samples, centers=target.centers, label="data")
    assert len(artists) == 2
    assert artists[0].get_offsets().shape == (300, 2)
    assert artists[1].get_offsets().shape == (25, 2)
    assert ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$"
    assert ax.get_aspect() == 1.0
    assert ax.get_legend() is not None
    assert len(plot.samples_2d(ax, np.zeros((10, 2)))) == 1


@pytest.mark.parametrize("shape", [(10,), (10, 3), (2, 5, 2)])
def test_samples_2d_rejects_wrong_shapes(ax, shape) -> None:
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        plot.samples_2d(ax, torch.zeros(shape))
    with pytest.raises(ValueError, match=r"centers must have shape \(N, 2\)"):
        plot.samples_2d(ax, torch.zeros(4, 2), centers=torch.zeros(shape))


def test_samples_2d_rejects_bad_options(ax) -> None:
    with pytest.raises(ValueError, match="alpha"):
        plot.samples_2d(ax, torch.zeros(4, 2), alpha=2.0)
    with pytest.raises(ValueError, match="s must be > 0"):
        plot.samples_2d(ax, torch.zeros(4, 2), s=0)


# ----------------------------------------------------------------------------------------------
# small_multiples


@pytest.mark.parametrize(
    ("n_values", "ncols", "grid_shape"), [(1, None, (1, 1)), (3, None, (1, 3)), (5, 2, (3, 2))]
)
def test_small_multiples_panels_and_titles(n_values, ncols, grid_shape) -> None:
    values = np.linspace(0.5, 3.0, n_values)
    seen = []

    def draw(ax, mu):
        seen.append(mu)
        plot.density_1d(ax, {"p": toy.two_gaussians(mu)}, xlim=(-6, 6))

    fig, axes = plot.small_multiples(
        draw, values, name=r"$\mu$", ncols=ncols, panel_size=(2.0, 1.5)
    )
    assert len(axes) == n_values and len(fig.axes) == n_values
    assert seen == pytest.approx(list(values))
    assert [ax.get_title() for ax in axes] == [rf"$\mu$ = {value:g}" for value in values]
    assert tuple(fig.get_size_inches()) == pytest.approx((grid_shape[1] * 2.0, grid_shape[0] * 1.5))
    # Axis labels stay on the outer panels: the first panel of the last row keeps both.
    last_row_start = (n_values - 1) // grid_shape[1] * grid_shape[1]
    assert (
        axes[last_row_start].get_xlabel() == "x" and axes[last_row_start].get_ylabel() == "density"
    )
    if n_values == 5:
        # Panel 4 (row 2, column 2) sits above a removed cell: it keeps its x tick labels.
        assert axes[3].xaxis.get_tick_params()["labelbottom"] is True
        assert axes[1].get_ylabel() == "" and axes[0].get_xlabel() == ""


def test_small_multiples_shrinks_a_row_wider_than_the_column() -> None:
    fig, _ = plot.small_multiples(lambda ax, value: None, [1, 2, 3, 4, 5], name="a", ncols=5)
    width, height = fig.get_size_inches()
    # Five default panels (3.2 x 2.6 in) would be 16 in wide: shrunk to MAX_WIDTH, shape kept.
    assert width == pytest.approx(plot.MAX_WIDTH) and height == pytest.approx(2.6 * 10 / 16)
    plt.close(fig)


def test_small_multiples_rejects_bad_input() -> None:
    draw = lambda ax, value: None  # noqa: E731
    with pytest.raises(ValueError, match="values is empty"):
        plot.small_multiples(draw, [], name="a")
    with pytest.raises(TypeError, match="callable"):
        plot.small_multiples(None, [1.0], name="a")
    with pytest.raises(TypeError, match="real numbers"):
        plot.small_multiples(draw, ["x"], name="a")
    with pytest.raises(ValueError, match="ncols"):
        plot.small_multiples(draw, [1.0], name="a", ncols=0)
    with pytest.raises(ValueError, match="panel_size"):
        plot.small_multiples(draw, [1.0], name="a", panel_size=(0.0, 1.0))
    with pytest.raises(TypeError, match="name"):
        plot.small_multiples(draw, [1.0], name=None)


# ----------------------------------------------------------------------------------------------
# interact


def test_interact_builds_sliders_and_draws() -> None:
    pytest.importorskip("ipywidgets")
    calls = []

    def draw(ax, theta, n):
        calls.append((theta, n))
        ax.plot([0, 1], [theta, theta])

    widget = plot.interact(draw, theta=(-1.0, 1.0, 0.05), n=(1, 9, 2, 3))
    theta_slider, n_slider = widget.children[:2]
    assert type(theta_slider).__name__ == "FloatSlider" and type(n_slider).__name__ == "IntSlider"
    assert not theta_slider.continuous_update and not n_slider.continuous_update
    assert theta_slider.readout_format == ".2f"
    assert calls == [(pytest.approx(0.0), 3)]  # drawn once at the initial values
    theta_slider.value = 0.5
    assert calls[-1] == (0.5, 3)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ((0.0, 1.0), TypeError, "tuple"),
        ([0.0, 1.0, 0.1], TypeError, "tuple"),
        ((0.0, "1", 0.1), TypeError, "numbers"),
        ((1.0, 0.0, 0.1), ValueError, "min < max"),
        ((0.0, 1.0, 0.0), ValueError, "step > 0"),
        ((0.0, 1.0, 0.1, 2.0), ValueError, "outside"),
    ],
)
def test_interact_rejects_bad_sliders(spec, error, message) -> None:
    pytest.importorskip("ipywidgets")
    with pytest.raises(error, match=message):
        plot.interact(lambda ax, a: None, a=spec)


def test_interact_needs_a_slider() -> None:
    pytest.importorskip("ipywidgets")
    with pytest.raises(ValueError, match="at least one slider"):
        plot.interact(lambda ax: None)


def test_interact_without_ipywidgets_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        plot.interact(lambda ax, a: None, a=(0.0, 1.0, 0.1))


# ----------------------------------------------------------------------------------------------
# image_grid


@pytest.mark.parametrize(
    ("shape", "nrow", "expected"),
    [
        (
            (6, 4, 5),
            3,
            (2 * 4 + 3, 3 * 5 + 4),
        ),  # 2 rows of 3 grey images, 1-pixel padding around each
        ((6, 1, 4, 5), 4, (2 * 4 + 3, 4 * 5 + 5)),
        ((2, 3, 4, 5), 8, (4 + 2, 2 * 5 + 3, 3)),  # colour images, fewer than nrow
    ],
)
def test_image_grid_tiles_images(ax, shape, nrow, expected) -> None:
    images = torch.rand(shape)
    image = plot.image_grid(ax, images, nrow=nrow)
    canvas = np.asarray(image.get_array())
    assert canvas.shape == expected
    height, width = shape[-2:]
    first_tile = canvas[1 : 1 + height, 1 : 1 + width].reshape(height, width, -1)
    np.testing.assert_allclose(
        np.moveaxis(first_tile, -1, 0), images[0].reshape(-1, height, width).numpy(), rtol=1e-6
    )
    assert not ax.axison


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(4, 4), "shape"),
        (torch.rand(2, 2, 4, 4), "shape"),
        (torch.rand(0, 4, 4), "at least one"),
        (torch.rand(2, 4, 4) * 2, r"\[0, 1\]"),
        (torch.rand(2, 4, 4) - 1, r"\[0, 1\]"),
    ],
)
def test_image_grid_rejects_bad_images(ax, images, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot.image_grid(ax, images)


def test_image_grid_rejects_bad_options(ax) -> None:
    with pytest.raises(ValueError, match="nrow"):
        plot.image_grid(ax, torch.rand(2, 4, 4), nrow=0)
    with pytest.raises(ValueError, match="padding"):
        plot.image_grid(ax, torch.rand(2, 4, 4), padding=-1)
    with pytest.raises(ValueError, match="pad_value"):
        plot.image_grid(ax, torch.rand(2, 4, 4), pad_value=2.0)


def test_transport_plan_draws_weighted_segments(ax, device: torch.device) -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], device=device, requires_grad=True)
    y = torch.tensor([[0.0, 1.0], [2.0, 1.0]], device=device)
    plan = torch.tensor([[0.3, 0.0], [0.1, 0.2], [0.0, 0.4]], device=device)
    segments, sources, targets = plot.transport_plan(ax, x, y, plan, max_linewidth=4.0)
    drawn = segments.get_segments()
    assert len(drawn) == 4  # the zero entries are left out
    widths = np.asarray(segments.get_linewidths())
    np.testing.assert_allclose(sorted(widths), sorted(4.0 * np.array([0.3, 0.1, 0.2, 0.4]) / 0.4))
    assert len(sources.get_offsets()) == 3 and len(targets.get_offsets()) == 2
    assert ax.get_xlabel() == "$x_1$"
    # Tiny masses below the threshold are not drawn.
    segments, _, _ = plot.transport_plan(ax, x, y, plan + 1e-6, threshold=1e-3)
    assert len(segments.get_segments()) == 4


def test_transport_plan_rejects_bad_input(ax) -> None:
    x, y = torch.zeros(3, 2), torch.ones(2, 2)
    with pytest.raises(ValueError, match="shape"):
        plot.transport_plan(ax, x, y, torch.ones(2, 3))
    with pytest.raises(ValueError, match="shape"):
        plot.transport_plan(ax, torch.zeros(3), y, torch.ones(3, 2))
    with pytest.raises(ValueError, match="non-negative"):
        plot.transport_plan(ax, x, y, -torch.ones(3, 2))
    with pytest.raises(ValueError, match="no mass"):
        plot.transport_plan(ax, x, y, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="threshold"):
        plot.transport_plan(ax, x, y, torch.ones(3, 2), threshold=1.0)
    with pytest.raises(ValueError, match="point_size"):
        plot.transport_plan(ax, x, y, torch.ones(3, 2), point_size=0.0)
    with pytest.raises(TypeError, match="Axes"):
        plot.transport_plan(None, x, y, torch.ones(3, 2))
