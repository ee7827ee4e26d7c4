r"""The figures chapters share: one style, 1-D densities, 2-D sample clouds, panels, sliders,
images.

Used by every chapter.

Every helper draws on a Matplotlib ``Axes`` it is given (or makes a figure of panels) and labels its
axes, so that a chapter's figure cell is one or two lines. Each interactive slider of the book
(:func:`interact`, live only in a running notebook) stands next to a static figure of the same
drawing function at a few parameter values (:func:`small_multiples`), which is what the HTML book
and its tests show.

Tensors may live on any device and may require gradients: helpers detach them and copy them to
the CPU before drawing.

Example:
    >>> import matplotlib.pyplot as plt
    >>> from gdmlib import plot, toy
    >>> plot.style()
    >>> fig, axes = plot.small_multiples(
    ...     lambda ax, mu: plot.density_1d(ax, {"p": toy.two_gaussians(mu)}, xlim=(-6, 6)),
    ...     [0.5, 1.5, 3.0], name=r"$\mu$")
    >>> len(axes), axes[2].get_title()
    (3, '$\\mu$ = 3')
    >>> plt.close(fig)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from torch import Tensor
from torch.distributions import Distribution

__all__ = [
    "COLORS",
    "MAX_WIDTH",
    "density_1d",
    "image_grid",
    "interact",
    "samples_2d",
    "small_multiples",
    "style",
    "transport_plan",
]

ArrayLike = Tensor | np.ndarray | Sequence[Sequence[float]]

#: The book's colour cycle, the Okabe–Ito palette, distinguishable under colour-vision deficiencies.
COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

MAX_WIDTH: float = 10.0
"""The widest figure the chapters draw, in inches. At ``figure.dpi = 100`` the book's output column
(768 px in a 1400-px window) shows a figure this wide at about 75% of its size, so 10-point tick
labels stay above 10 px on screen; a wider figure is shrunk further and its text with it."""

_STYLE: dict[str, Any] = {
    "figure.dpi": 100,  # inline PNGs in stored notebooks stay small
    "savefig.dpi": 150,
    "figure.figsize": (6.0, 3.8),
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=list(COLORS)),
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def style(**overrides: Any) -> None:
    """Set Matplotlib's ``rcParams`` to the book's style.

    Readable font sizes, a light grid, the colour-blind-safe :data:`COLORS` cycle, constrained
    layout, and ``figure.dpi = 100`` so that figures stored in notebooks stay small (``savefig.dpi``
    is 150 for figures saved to files).

    Args:
        **overrides: ``rcParams`` entries that replace the book's (e.g. ``{"font.size": 12}``
            passed as ``**{"font.size": 12}``).

    Raises:
        KeyError: If an override is not a Matplotlib ``rcParams`` key.
    """
    unknown = sorted(key for key in overrides if key not in mpl.rcParams)
    if unknown:
        raise KeyError(f"not Matplotlib rcParams keys: {unknown}")
    mpl.rcParams.update({**_STYLE, **overrides})


# --------------------------------------------------------------------------------------------------
# Helpers


def _to_numpy(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a tensor or an array of numbers, got {type(value).__name__}"
        ) from error


def _check_axes(ax: Any) -> None:
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")


def _placement(dist: Distribution) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of a distribution's parameters (CPU and the default dtype if
    unknown)."""
    for name in ("mean", "loc", "low", "probs"):
        try:
            value = getattr(dist, name)
        except (NotImplementedError, AttributeError, ValueError):
            continue
        if isinstance(value, Tensor) and value.dtype.is_floating_point:
            return value.device, value.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _default_range(dists: Mapping[str, Distribution]) -> tuple[float, float]:
    """Mean +- 4.5 standard deviations of every distribution, or the union of bounded supports."""
    lows, highs = [], []
    for name, dist in dists.items():
        try:
            mean, std = float(dist.mean), float(dist.stddev)
        except (NotImplementedError, ValueError, TypeError, RuntimeError):
            mean, std = math.nan, math.nan
        if not (math.isfinite(mean) and math.isfinite(std)):
            raise ValueError(
                f"cannot choose a plotting range for {name!r} (it has no finite mean and standard "
                "deviation): pass x or xlim"
            )
        lows.append(mean - 4.5 * std)
        highs.append(mean + 4.5 * std)
    return min(lows), max(highs)


# --------------------------------------------------------------------------------------------------
# 1-D densities


def density_1d(
    ax: Axes,
    dists: Mapping[str, Distribution],
    x: Tensor | np.ndarray | None = None,
    *,
    xlim: tuple[float, float] | None = None,
    fill: bool | Iterable[str] | None = None,
    n_points: int = 801,
) -> list[Line2D]:
    r"""Plot the densities :math:`p(x) = \exp \log p(x)` of univariate distributions.

    Args:
        ax: The axes to draw on.
        dists: Legend label :math:`\mapsto` distribution, each with ``batch_shape == ()`` and
            ``event_shape == ()``. Outside a distribution's support its density is drawn as 0.
        x: The points (a 1-D tensor or array) where densities are evaluated; by default
            ``n_points`` points spanning ``xlim``.
        xlim: The plotted range; by default the smallest range holding every distribution's mean
            :math:`\pm 4.5` standard deviations (or ``x``'s range when ``x`` is given).
        fill: Shade the area under the curve: ``True`` for every distribution, or the labels of
            those to shade (the data distribution, say); ``None`` or ``False`` for none.
        n_points: How many points to use when ``x`` is not given.

    Returns:
        The line drawn for each distribution, in the order of ``dists``.

    Raises:
        TypeError: If ``ax`` is not an ``Axes``, ``dists`` is not a mapping of distributions, or
            ``x`` is not numeric.
        ValueError: If ``dists`` is empty, a distribution is not univariate (or batched), ``x`` is
            not 1-D, ``xlim`` is not an increasing pair, ``fill`` names an unknown label, or no
            range can be chosen.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from torch.distributions import Normal
        >>> fig, ax = plt.subplots()
        >>> lines = density_1d(ax, {"N(0, 1)": Normal(0.0, 1.0), "N(2, 1/4)": Normal(2.0, 0.5)})
        >>> len(lines), ax.get_xlabel(), ax.get_ylabel()
        (2, 'x', 'density')
        >>> plt.close(fig)
    """
    _check_axes(ax)
    if not isinstance(dists, Mapping):
        raise TypeError(
            f"dists must be a mapping from labels to distributions, got {type(dists).__name__}"
        )
    if len(dists) == 0:
        raise ValueError("dists is empty: give at least one distribution to plot")
    for name, dist in dists.items():
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"dists[{name!r}] must be a torch Distribution, got {type(dist).__name__}"
            )
        if dist.event_shape != () or dist.batch_shape != ():
            raise ValueError(
                f"dists[{name!r}] must be univariate (batch_shape == event_shape == ()), got "
                f"batch_shape {tuple(dist.batch_shape)} and event_shape {tuple(dist.event_shape)}"
            )
    if fill is None or fill is False:
        filled: set[str] = set()
    elif fill is True:
        filled = set(dists)
    else:
        filled = set([fill] if isinstance(fill, str) else fill)
        unknown = sorted(filled - set(dists))
        if unknown:
            raise ValueError(f"fill names labels that are not in dists: {unknown}")

    if x is None:
        if xlim is None:
            xlim = _default_range(dists)
        grid = np.linspace(*_check_xlim(xlim), n_points)
    else:
        grid = _to_numpy("x", x).astype(float)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(f"x must be a non-empty 1-D array of points, got shape {grid.shape}")
        xlim = _check_xlim(xlim) if xlim is not None else (float(grid.min()), float(grid.max()))

    lines = []
    for name, dist in dists.items():
        device, dtype = _placement(dist)
        points = torch.as_tensor(grid, device=device, dtype=dtype)
        inside = dist.support.check(points)
        density = torch.zeros_like(points)
        with torch.no_grad():
            density[inside] = dist.log_prob(points[inside]).exp()
        values = density.cpu().numpy()
        (line,) = ax.plot(grid, values, label=name)
        if name in filled:
            ax.fill_between(grid, values, color=line.get_color(), alpha=0.2, linewidth=0)
        lines.append(line)
    ax.set_xlim(*xlim)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend()
    return lines


def _check_xlim(xlim: Any) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in xlim)
    except (TypeError, ValueError) as error:
        raise ValueError(f"xlim must be a pair (low, high) of numbers, got {xlim!r}") from error
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"xlim must be finite with low < high, got {xlim!r}")
    return low, high


# --------------------------------------------------------------------------------------------------
# 2-D sample clouds


def samples_2d(
    ax: Axes,
    samples: ArrayLike,
    *,
    centers: ArrayLike | None = None,
    label: str | None = None,
    s: float = 4.0,
    alpha: float = 0.5,
    color: str | None = None,
) -> list[PathCollection]:
    r"""Scatter points of the plane, with equal scales on both axes, optionally marking mode
    centres.

    Args:
        ax: The axes to draw on.
        samples: An :math:`N \times 2` tensor or array of points.
        centers: A :math:`K \times 2` tensor or array of mode centres (e.g.
            :attr:`gdmlib.toy.GaussianMixture2d.centers`), drawn as black crosses.
        label: A legend label for the points; a legend is drawn when it is given.
        s: Marker area of the points (points squared).
        alpha: Opacity of the points, in :math:`[0, 1]`.
        color: Colour of the points (by default the next colour of the cycle).

    Returns:
        The scatter of the samples, followed by the scatter of the centres if ``centers`` is given.

    Raises:
        TypeError: If ``ax`` is not an ``Axes`` or the points are not numeric.
        ValueError: If ``samples`` or ``centers`` is not of shape :math:`(\cdot, 2)`, or ``s`` or
            ``alpha`` is out of range.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from gdmlib import toy
        >>> target = toy.ring()
        >>> fig, ax = plt.subplots()
        >>> artists = samples_2d(ax, target.sample((500,)), centers=target.centers, label="data")
        >>> len(artists), ax.get_xlabel()
        (2, '$x_1$')
        >>> plt.close(fig)
    """
    _check_axes(ax)
    points = _check_points("samples", samples)
    if not (s > 0):
        raise ValueError(f"s must be > 0, got {s}")
    if not (0 <= alpha <= 1):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    artists = [
        ax.scatter(
            points[:, 0], points[:, 1], s=s, alpha=alpha, color=color, label=label, linewidths=0
        )
    ]
    if centers is not None:
        modes = _check_points("centers", centers)
        artists.append(
            ax.scatter(
                modes[:, 0],
                modes[:, 1],
                marker="x",
                s=30,
                color="black",
                linewidths=1.2,
                label="mode centres",
            )
        )
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if label is not None:
        legend = ax.legend()
        # Tiny, faint sample markers would be invisible in the legend: show every key at one size.
        for handle in legend.legend_handles:
            if isinstance(handle, PathCollection):
                handle.set_sizes([30.0])
                handle.set_alpha(1.0)
    return artists


def _check_points(name: str, value: ArrayLike) -> np.ndarray:
    points = _to_numpy(name, value)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {points.shape}")
    return points


# --------------------------------------------------------------------------------------------------
# Panels and sliders


def small_multiples(
    draw: Callable[[Axes, Any], Any],
    values: Sequence[float],
    *,
    name: str,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (3.2, 2.6),
    sharex: bool = True,
    sharey: bool = True,
) -> tuple[Figure, np.ndarray]:
    r"""One panel per parameter value: the static twin of an interactive slider.

    Calls ``draw(ax, value)`` on a fresh panel for each value, titles it ``f"{name} = {value:g}"``
    and, where axes are shared, keeps axis labels on the outer panels only.

    Args:
        draw: Draws one panel, given its axes and the parameter value.
        values: The parameter values (numbers), one panel each, in reading order.
        name: The parameter's name in titles (LaTeX allowed, e.g. ``r"$\theta$"``).
        ncols: Panels per row; by default ``min(len(values), 4)``.
        panel_size: Width and height of one panel, in inches; both shrink in proportion when a
            row would be wider than :data:`MAX_WIDTH`.
        sharex: Share the x axis between panels.
        sharey: Share the y axis between panels.

    Returns:
        The figure and a 1-D array of the ``len(values)`` axes drawn on (unused grid cells are
        removed).

    Raises:
        TypeError: If ``draw`` is not callable, ``name`` not a string or a value not a number.
        ValueError: If ``values`` is empty or ``ncols`` or ``panel_size`` is not positive.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable as draw(ax, value), got {type(draw).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    values = list(values.tolist() if isinstance(values, (Tensor, np.ndarray)) else values)
    if not values:
        raise ValueError("values is empty: give at least one parameter value")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"values must be real numbers, got {value!r}")
    ncols = min(len(values), 4) if ncols is None else ncols
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    width, height = panel_size
    if not (width > 0 and height > 0):
        raise ValueError(f"panel_size must be two positive numbers (inches), got {panel_size!r}")

    ncols = min(int(ncols), len(values))
    nrows = math.ceil(len(values) / ncols)
    shrink = min(1.0, MAX_WIDTH / (ncols * width))
    width, height = width * shrink, height * shrink
    fig, grid_axes = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * width, nrows * height),
        sharex=sharex,
        sharey=sharey,
        squeeze=False,
    )
    cells = grid_axes.ravel()
    for ax in cells[len(values) :]:
        fig.delaxes(ax)
    axes = cells[: len(values)]
    for index, (ax, value) in enumerate(zip(axes, values)):
        draw(ax, value)
        ax.set_title(f"{name} = {value:g}")
        col = index % ncols
        has_panel_below = index + ncols < len(values)
        if sharex:
            # plt.subplots hid the tick labels of every panel but the bottom row; a panel above a
            # removed cell is now the bottom of its column.
            ax.xaxis.set_tick_params(labelbottom=not has_panel_below)
            if has_panel_below:
                ax.set_xlabel("")
        if sharey and col > 0:
            ax.set_ylabel("")
    return fig, axes


def interact(
    draw: Callable[..., Any], *, figsize: tuple[float, float] | None = None, **sliders: tuple
) -> Any:
    r"""Sliders that redraw one Matplotlib figure: ``draw(ax, **values)`` on each change.

    A thin wrapper around :func:`ipywidgets.interactive` with ``continuous_update=False`` (the
    figure is redrawn when a slider is released, not while it moves). It only does something in a
    running notebook; the HTML book shows :func:`small_multiples` of the same ``draw`` instead.

    Args:
        draw: Draws the figure, given fresh axes and one keyword argument per slider.
        figsize: The figure's size in inches (by default ``rcParams["figure.figsize"]``).
        **sliders: ``name=(min, max, step)`` or ``name=(min, max, step, initial)``; an integer
            slider when all entries are integers, a float slider otherwise. The initial value
            defaults to the middle of the range, rounded to the step grid.

    Returns:
        The displayed :class:`ipywidgets.interactive` widget (its ``children`` are the sliders and
        the output area).

    Raises:
        ImportError: If ipywidgets is not installed (``pip install ipywidgets``).
        TypeError: If ``draw`` is not callable or a slider is not a tuple of numbers.
        ValueError: If no slider is given, or one has ``min >= max``, ``step <= 0`` or an initial
            value outside ``[min, max]``.
    """
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "gdmlib.plot.interact needs ipywidgets for its sliders: install it with "
            "`pip install ipywidgets` (or `pip install gdmlib[widgets]`)"
        ) from error
    from IPython.display import display

    if not callable(draw):
        raise TypeError(f"draw must be callable as draw(ax, **values), got {type(draw).__name__}")
    if not sliders:
        raise ValueError("give at least one slider, e.g. interact(draw, theta=(-1.0, 1.0, 0.1))")
    widgets = {name: _slider(ipywidgets, name, spec) for name, spec in sliders.items()}

    fig = plt.figure(figsize=figsize)
    # Shown only through the widget's output area, not again by the inline backend at cell end.
    plt.close(fig)

    def redraw(**values: Any) -> None:
        fig.clear()
        draw(fig.add_subplot(), **values)
        display(fig)

    widget = ipywidgets.interactive(redraw, **widgets)
    display(widget)
    return widget


def _slider(ipywidgets: Any, name: str, spec: Any) -> Any:
    if not isinstance(spec, tuple) or len(spec) not in (3, 4):
        raise TypeError(
            f"slider {name!r} must be a tuple (min, max, step) or (min, max, step, initial), got "
            f"{spec!r}"
        )
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in spec):
        raise TypeError(f"slider {name!r} must hold numbers, got {spec!r}")
    low, high, step = spec[:3]
    if not low < high:
        raise ValueError(f"slider {name!r} needs min < max, got {spec!r}")
    if not step > 0:
        raise ValueError(f"slider {name!r} needs step > 0, got {spec!r}")
    initial = spec[3] if len(spec) == 4 else low + round((high - low) / 2 / step) * step
    if not low <= initial <= high:
        raise ValueError(f"slider {name!r} has initial value {initial} outside [{low}, {high}]")
    common = dict(
        min=low, max=high, step=step, value=initial, description=name, continuous_update=False
    )
    if all(isinstance(v, numbers.Integral) for v in spec):
        return ipywidgets.IntSlider(**common)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    decimals += 0 if math.isclose(step * 10**decimals, round(step * 10**decimals)) else 1
    return ipywidgets.FloatSlider(readout_format=f".{decimals}f", **common)


# --------------------------------------------------------------------------------------------------
# Images


def image_grid(
    ax: Axes,
    images: ArrayLike,
    nrow: int = 8,
    *,
    padding: int = 1,
    pad_value: float = 1.0,
) -> AxesImage:
    r"""Tile images into one picture, like ``torchvision.utils.make_grid``, and show it.

    Args:
        ax: The axes to draw on (its frame and ticks are turned off).
        images: :math:`(N, H, W)` grey-level or :math:`(N, C, H, W)` images with :math:`C \in
            \{1, 3\}`, values in :math:`[0, 1]`.
        nrow: Images per row of the grid (the last row may be shorter), as in torchvision.
        padding: Pixels between images.
        pad_value: The grey level of the padding, in :math:`[0, 1]`.

    Returns:
        The image drawn.

    Raises:
        TypeError: If ``ax`` is not an ``Axes`` or the images are not numeric.
        ValueError: If the shape is not one of the above, there are no images, a value lies
            outside :math:`[0, 1]`, or ``nrow``, ``padding`` or ``pad_value`` is out of range.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> image = image_grid(ax, torch.rand(10, 8, 8), nrow=5, padding=1)
        >>> image.get_array().shape
        (19, 46)
        >>> plt.close(fig)
    """
    _check_axes(ax)
    array = _to_numpy("images", images).astype(float)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, H, W) or (N, C, H, W) with C in (1, 3), got {array.shape}"
        )
    n_images, channels, height, width = array.shape
    if n_images == 0 or height == 0 or width == 0:
        raise ValueError(f"images must hold at least one non-empty image, got shape {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"image values must lie in [0, 1], got values in [{np.nanmin(array):.3g}, "
            f"{np.nanmax(array):.3g}]; rescale them first (e.g. (x + 1) / 2 for images in [-1, 1])"
        )
    if isinstance(nrow, bool) or not isinstance(nrow, numbers.Integral) or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if not 0 <= pad_value <= 1:
        raise ValueError(f"pad_value must be in [0, 1], got {pad_value}")

    columns = min(int(nrow), n_images)
    rows = math.ceil(n_images / columns)
    canvas = np.full(
        (rows * height + (rows + 1) * padding, columns * width + (columns + 1) * padding, channels),
        float(pad_value),
    )
    for index in range(n_images):
        row, col = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        canvas[top : top + height, left : left + width] = array[index].transpose(1, 2, 0)
    if channels == 1:
        image = ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        image = ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    return image


# --------------------------------------------------------------------------------------------------
# Transport plans


def transport_plan(
    ax: Axes,
    x: ArrayLike,
    y: ArrayLike,
    plan: ArrayLike,
    *,
    threshold: float = 1e-3,
    max_linewidth: float = 3.0,
    point_size: float = 60.0,
    color: str = "0.2",
    labels: tuple[str, str] = ("source $x_i$", "target $y_j$"),
) -> tuple[Any, PathCollection, PathCollection]:
    r"""Draw a transport plan between two clouds of the plane: one segment per pair, weighted by
    mass.

    The segment from :math:`x_i` to :math:`y_j` has a width and an opacity proportional to
    :math:`P_{ij} / \max P` (so a plan spread thinly over many pairs looks faint); pairs carrying
    less than ``threshold`` times the largest mass are not drawn, so that a blurred (entropic) plan
    stays readable. Points are drawn with an area proportional to their mass, the row and column
    sums of the plan.

    Args:
        ax: The axes to draw on.
        x: The source points, :math:`n \times 2`.
        y: The target points, :math:`m \times 2`.
        plan: The :math:`n \times m` plan, non-negative.
        threshold: The smallest drawn mass, relative to the largest, in :math:`[0, 1)`.
        max_linewidth: The width of the heaviest segment, in points.
        point_size: The marker area (points squared) of the heaviest point.
        color: The colour of the segments.
        labels: The legend labels of the source and target points.

    Returns:
        The segments (a ``LineCollection``), and the scatters of the sources and of the targets.

    Raises:
        TypeError: If ``ax`` is not an ``Axes`` or an input is not numeric.
        ValueError: If the shapes do not match, the plan has a negative or non-finite entry or no
            mass, or ``threshold`` or ``max_linewidth`` is out of range.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> x, y = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
        >>> segments, _, _ = transport_plan(ax, x, y, torch.eye(2) / 2)
        >>> len(segments.get_segments())  # the two zero entries are not drawn
        2
        >>> plt.close(fig)
    """
    from matplotlib.collections import LineCollection

    _check_axes(ax)
    sources, targets = _check_points("x", x), _check_points("y", y)
    weights = _to_numpy("plan", plan).astype(float)
    if weights.shape != (len(sources), len(targets)):
        raise ValueError(
            f"plan must have shape (n, m) = ({len(sources)}, {len(targets)}), got {weights.shape}"
        )
    if not np.isfinite(weights).all() or weights.min() < 0:
        raise ValueError("plan must hold finite, non-negative masses")
    largest = float(weights.max())
    if not largest > 0:
        raise ValueError("plan carries no mass: every entry is zero")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0 <= threshold < 1
    ):
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if not (isinstance(max_linewidth, numbers.Real) and max_linewidth > 0):
        raise ValueError(f"max_linewidth must be > 0, got {max_linewidth!r}")
    if not (isinstance(point_size, numbers.Real) and point_size > 0):
        raise ValueError(f"point_size must be > 0, got {point_size!r}")

    relative = weights / largest
    rows, cols = np.nonzero((relative > threshold) & (weights > 0))
    strength = relative[rows, cols]
    segments = LineCollection(
        np.stack([sources[rows], targets[cols]], axis=1),
        linewidths=max_linewidth * strength,
        colors=[mpl.colors.to_rgba(color, alpha=float(s)) for s in strength],
        zorder=1,
    )
    ax.add_collection(segments)
    row_mass, col_mass = weights.sum(1), weights.sum(0)
    heaviest = max(float(row_mass.max()), float(col_mass.max()))
    # A floor of a fifth of the largest area keeps light points visible.
    source_scatter = ax.scatter(
        sources[:, 0],
        sources[:, 1],
        s=point_size * (0.2 + 0.8 * row_mass / heaviest),
        color=COLORS[0],
        label=labels[0],
        zorder=2,
    )
    target_scatter = ax.scatter(
        targets[:, 0],
        targets[:, 1],
        s=point_size * (0.2 + 0.8 * col_mass / heaviest),
        color=COLORS[1],
        marker="s",
        label=labels[1],
        zorder=2,
    )
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return segments, source_scatter, target_scatter
