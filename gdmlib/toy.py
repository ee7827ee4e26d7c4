r"""Toy distributions on the line and in the plane, as :mod:`torch.distributions` objects.

Every toy of the book is a :class:`torch.distributions.Distribution`: it has ``sample`` (and
``rsample`` where that makes sense), ``log_prob`` wherever a density exists, ``batch_shape``,
``event_shape`` and ``support``, and it lives on the device it was built on.

- :func:`gaussian_mixture_1d` and :func:`two_gaussians`: mixtures on :math:`\mathbb{R}`
  (mode covering vs mode seeking, chapter 1).
- :class:`GaussianMixture2d`, built by :func:`ring` and :func:`grid`: equal-weight mixtures of
  isotropic Gaussians, the standard mode-collapse benchmarks (chapters 4 and 8).
- :class:`SwissRoll` (:func:`swiss_roll`): a noisy spiral with an exact density.
- :class:`ParallelLines` (:func:`parallel_lines`): the law of :math:`(\theta, Z)`,
  :math:`Z \sim \mathcal{U}(0, 1)`, which has no density (chapter 5).

References:
    Metz, Poole, Pfau and Sohl-Dickstein (2017). Unrolled generative adversarial networks. ICLR.

    Srivastava, Valkov, Russell, Gutmann and Sutton (2017). VEEGAN: reducing mode collapse in GANs
    using implicit variational learning. NeurIPS.

    Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville (2017). Improved training of Wasserstein
    GANs. NeurIPS.

    Arjovsky, Chintala and Bottou (2017). Wasserstein generative adversarial networks. ICML.

Example:
    >>> import torch
    >>> from gdmlib import toy
    >>> target = toy.ring(n_modes=8, radius=2.0, std=0.02)
    >>> x = target.sample((1000,))
    >>> tuple(x.shape), tuple(target.centers.shape)
    ((1000, 2), (8, 2))
    >>> round(target.centers.norm(dim=1).max().item(), 4)
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)

__all__ = [
    "GaussianMixture2d",
    "ParallelLines",
    "SwissRoll",
    "gaussian_mixture_1d",
    "grid",
    "parallel_lines",
    "ring",
    "swiss_roll",
    "two_gaussians",
]

ArrayLike = Tensor | Sequence[float] | float
DeviceLike = torch.device | str | None

_WEIGHT_SUM_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------------
# Input checks shared by the constructors


def _positive_float(name: str, value: float | Tensor) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _resolve_dtype(dtype: torch.dtype | None) -> torch.dtype:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


# --------------------------------------------------------------------------------------------------
# 1-D mixtures


def gaussian_mixture_1d(
    means: ArrayLike,
    stds: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> MixtureSameFamily:
    r"""A mixture of univariate Gaussians
    :math:`p(x) = \sum_k w_k\, \mathcal{N}(x; \mu_k, \sigma_k^2)`.

    Args:
        means: The :math:`K` component means :math:`\mu_k` (list, tuple or 1-D tensor).
        stds: The :math:`K` standard deviations :math:`\sigma_k > 0`.
        weights: The :math:`K` mixture weights :math:`w_k \ge 0` with :math:`\sum_k w_k = 1`
            (checked to :math:`10^{-6}`, never silently renormalised); uniform by default.
        device: Where the parameters live; by default the device of the tensors given, else the CPU.
        dtype: Floating dtype of the parameters; by default that of the floating tensors given,
            else :func:`torch.get_default_dtype`.

    Returns:
        A :class:`~torch.distributions.MixtureSameFamily` of a
        :class:`~torch.distributions.Categorical` and a :class:`~torch.distributions.Normal`, with
        ``batch_shape == ()`` and ``event_shape == ()``. Tensor parameters keep their autograd
        graph.

    Raises:
        ValueError: If the lengths differ, are zero, a value is not finite, a standard deviation is
            not positive, a weight is negative, the weights do not sum to one, or tensors are given
            on different devices.
        TypeError: If ``dtype`` is not a floating dtype.

    Example:
        >>> p = gaussian_mixture_1d([-2.0, 2.0], [0.5, 0.5], [0.25, 0.75])
        >>> round(p.mean.item(), 3), round(p.log_prob(torch.tensor(2.0)).item(), 3)
        (1.0, -0.513)
    """
    given = {"means": means, "stds": stds}
    if weights is not None:
        given["weights"] = weights
    tensors = [value for value in given.values() if isinstance(value, Tensor)]
    if device is None:
        devices = {value.device for value in tensors}
        if len(devices) > 1:
            raise ValueError(
                f"means, stds and weights are on different devices: {sorted(map(str, devices))}"
            )
        device = devices.pop() if devices else torch.device("cpu")
    if dtype is None:
        floating = [value.dtype for value in tensors if value.dtype.is_floating_point]
        dtype = floating[0] if floating else None
        for other in floating[1:]:
            dtype = torch.promote_types(dtype, other)
    dtype = _resolve_dtype(dtype)

    params: dict[str, Tensor] = {}
    for name, value in given.items():
        tensor = torch.as_tensor(value, dtype=dtype, device=device)
        if tensor.ndim != 1 or tensor.numel() == 0:
            raise ValueError(
                f"{name} must be a non-empty 1-D sequence, got shape {tuple(tensor.shape)}"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
        params[name] = tensor
    n_components = params["means"].numel()
    lengths = {name: tensor.numel() for name, tensor in params.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"means, stds and weights must have the same length, got lengths {lengths}"
        )
    if (params["stds"] <= 0).any():
        raise ValueError(f"stds must all be > 0, got {params['stds'].tolist()}")
    if "weights" in params:
        probs = params["weights"]
        if (probs < 0).any():
            raise ValueError(f"weights must be >= 0, got {probs.tolist()}")
        total = probs.detach().double().sum().item()
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                f"weights must sum to 1 (within {_WEIGHT_SUM_TOLERANCE:g}), "
                f"got a sum of {total:.8g}; "
                "normalise them first (weights / weights.sum())"
            )
    else:
        probs = torch.full((n_components,), 1.0 / n_components, dtype=dtype, device=device)
    return MixtureSameFamily(Categorical(probs=probs), Normal(params["means"], params["stds"]))


def two_gaussians(
    mu: float | Tensor,
    std: float = 1.0,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> MixtureSameFamily:
    r"""The symmetric mixture
    :math:`\tfrac12\mathcal{N}(-\mu, \sigma^2) + \tfrac12\mathcal{N}(\mu, \sigma^2)`.

    The target of chapter 1: as :math:`\mu/\sigma` grows the two modes separate, and fitting one
    Gaussian by forward KL (mode covering) and by reverse KL (mode seeking) gives different answers.

    Args:
        mu: Half the distance between the modes (a number or a 0-dim tensor, kept differentiable).
        std: The common standard deviation :math:`\sigma > 0`.
        device: Where the parameters live (by default that of ``mu`` if it is a tensor, else CPU).
        dtype: Floating dtype (by default that of ``mu`` if it is a floating tensor, else the
            default).

    Raises:
        ValueError: If ``mu`` is not a single finite number or ``std <= 0``.

    Example:
        >>> p = two_gaussians(3.0, std=1.0)
        >>> round(p.mean.item(), 3), round(p.variance.item(), 3)
        (0.0, 10.0)
    """
    std = _positive_float("std", std)
    if isinstance(mu, Tensor):
        device = mu.device if device is None else device
        dtype = (mu.dtype if mu.dtype.is_floating_point else None) if dtype is None else dtype
    dtype = _resolve_dtype(dtype)
    mu_tensor = torch.as_tensor(mu, dtype=dtype, device=device)
    if mu_tensor.numel() != 1:
        raise ValueError(f"mu must be a single number, got shape {tuple(mu_tensor.shape)}")
    mu_tensor = mu_tensor.reshape(())
    means = torch.stack((-mu_tensor, mu_tensor))
    stds = torch.full((2,), std, dtype=dtype, device=mu_tensor.device)
    return gaussian_mixture_1d(means, stds)


# --------------------------------------------------------------------------------------------------
# 2-D mixtures of isotropic Gaussians


class GaussianMixture2d(MixtureSameFamily):
    r"""An equal-weight mixture of isotropic Gaussians in the plane.

    .. math::
        p(x) = \frac{1}{K} \sum_{k=1}^{K} \mathcal{N}\bigl(x;\, c_k,\, \sigma^2 I_2\bigr),
        \qquad
        \log p(x) = \operatorname{logsumexp}_k \Bigl(-\frac{\lVert x - c_k\rVert^2}{2\sigma^2}\Bigr)
                    - \log(2\pi\sigma^2) - \log K.

    Args:
        centers: The :math:`K \times 2` tensor of mode centres :math:`c_k` (its device and dtype are
            those of the distribution).
        std: The common standard deviation :math:`\sigma > 0` of every coordinate.
        validate_args: Passed to :class:`~torch.distributions.Distribution`.

    Attributes:
        centers: The :math:`K \times 2` centres.
        std: :math:`\sigma`, a Python float.

    Raises:
        TypeError: If ``centers`` is not a floating tensor.
        ValueError: If ``centers`` is not :math:`K \times 2` with :math:`K \ge 1` and finite, or
            ``std <= 0``.
    """

    def __init__(self, centers: Tensor, std: float, validate_args: bool | None = None) -> None:
        if not isinstance(centers, Tensor) or not centers.dtype.is_floating_point:
            raise TypeError(
                f"centers must be a floating-point tensor, got {type(centers).__name__}"
            )
        if centers.ndim != 2 or centers.shape[1] != 2 or centers.shape[0] < 1:
            raise ValueError(
                f"centers must have shape (K, 2) with K >= 1, got {tuple(centers.shape)}"
            )
        if not torch.isfinite(centers).all():
            raise ValueError("centers must be finite")
        self.centers = centers
        self.std = _positive_float("std", std)
        n_modes = centers.shape[0]
        mixture = Categorical(
            logits=torch.zeros(n_modes, dtype=centers.dtype, device=centers.device)
        )
        components = Independent(Normal(centers, torch.full_like(centers, self.std)), 1)
        super().__init__(mixture, components, validate_args=validate_args)

    @property
    def n_modes(self) -> int:
        """The number :math:`K` of modes."""
        return self.centers.shape[0]

    def expand(
        self, batch_shape: torch.Size, _instance: GaussianMixture2d | None = None
    ) -> GaussianMixture2d:
        new = self._get_checked_instance(GaussianMixture2d, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.centers = self.centers
        new.std = self.std
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_modes={self.n_modes}, std={self.std:g})"


def ring(
    n_modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> GaussianMixture2d:
    r"""Gaussians of equal weight whose centres sit evenly on a circle.

    The centres are :math:`c_k = r\,(\cos(2\pi k/K), \sin(2\pi k/K))`, :math:`k = 0, \dots, K-1`;
    the defaults (:math:`K = 8`, :math:`r = 2`, :math:`\sigma = 0.02`) are the ring of Metz et al.
    (2017), on which a collapsing GAN visits one mode after another.

    Args:
        n_modes: The number :math:`K \ge 1` of modes.
        radius: The radius :math:`r > 0` of the circle.
        std: The standard deviation :math:`\sigma > 0` of each isotropic component.
        device: Where the centres live (CPU by default).
        dtype: Floating dtype (by default :func:`torch.get_default_dtype`).

    Raises:
        ValueError: If ``n_modes < 1``, ``radius <= 0`` or ``std <= 0``.

    Example:
        >>> p = ring(n_modes=4, radius=1.0, std=0.1)
        >>> p.centers.round(decimals=3).abs().tolist()
        [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    """
    n_modes = _positive_int("n_modes", n_modes)
    radius = _positive_float("radius", radius)
    std = _positive_float("std", std)
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    centers = radius * torch.stack((torch.cos(angles), torch.sin(angles)), dim=1)
    return GaussianMixture2d(centers.to(device=device, dtype=_resolve_dtype(dtype)), std)


def grid(
    n_per_side: int = 5,
    spacing: float = 2.0,
    std: float = 0.05,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> GaussianMixture2d:
    r"""Gaussians of equal weight whose centres form a square lattice centred on the origin.

    The centres are :math:`(s\,(i - \tfrac{n-1}{2}),\, s\,(j - \tfrac{n-1}{2}))` for
    :math:`i, j = 0, \dots, n-1`; the defaults give the 25 modes :math:`\{-4,-2,0,2,4\}^2` with
    :math:`\sigma = 0.05` used as a mode-collapse benchmark since Srivastava et al. (2017).
    Centres are ordered row by row (the first coordinate varies slowest).

    Args:
        n_per_side: The number :math:`n \ge 1` of modes along each axis (:math:`K = n^2`).
        spacing: The distance :math:`s > 0` between neighbouring centres.
        std: The standard deviation :math:`\sigma > 0` of each isotropic component.
        device: Where the centres live (CPU by default).
        dtype: Floating dtype (by default :func:`torch.get_default_dtype`).

    Raises:
        ValueError: If ``n_per_side < 1``, ``spacing <= 0`` or ``std <= 0``.

    Example:
        >>> p = grid()
        >>> p.n_modes, sorted(set(p.centers[:, 0].tolist()))
        (25, [-4.0, -2.0, 0.0, 2.0, 4.0])
    """
    n_per_side = _positive_int("n_per_side", n_per_side)
    spacing = _positive_float("spacing", spacing)
    std = _positive_float("std", std)
    ticks = spacing * (torch.arange(n_per_side, dtype=torch.float64) - (n_per_side - 1) / 2)
    first, second = torch.meshgrid(ticks, ticks, indexing="ij")
    centers = torch.stack((first.reshape(-1), second.reshape(-1)), dim=1)
    return GaussianMixture2d(centers.to(device=device, dtype=_resolve_dtype(dtype)), std)


# --------------------------------------------------------------------------------------------------
# Swiss roll


class SwissRoll(Distribution):
    r"""A noisy two-dimensional Swiss roll (spiral) with an exact density.

    A point is drawn as

    .. math::
        t \sim \mathcal{U}\bigl(\tfrac{3\pi}{2}, \tfrac{9\pi}{2}\bigr), \qquad
        \varepsilon \sim \mathcal{N}(0, I_2), \qquad
        x = \frac{(t\cos t,\; t\sin t) + \eta\,\varepsilon}{s},

    which is the 2-D toy of Gulrajani et al. (2017): scikit-learn's ``make_swiss_roll`` with
    noise :math:`\eta` (in the roll's own units), keeping two coordinates, divided by
    :math:`s = 7.5` so that the roll lies in about :math:`[-1.3, 1.7] \times [-1.5, 1.9]`, the
    same scale as :func:`ring` and :func:`grid`. In the plane the noise is isotropic with standard
    deviation :math:`\sigma = \eta / s`.

    The density marginalises :math:`t` out,

    .. math::
        p(x) = \frac{1}{b - a} \int_a^b \mathcal{N}\bigl(x;\, m(t),\, \sigma^2 I_2\bigr)\,dt,
        \qquad m(t) = \frac{(t\cos t,\, t\sin t)}{s},

    computed in log space (``logsumexp``) by composite Gauss–Legendre quadrature with three nodes
    per panel. As a function of :math:`t` the integrand is a bump of width about
    :math:`\eta / \sqrt{1 + t^2}` (the noise over the speed of the curve), so panels are made no
    wider than :math:`\eta / \sqrt{1 + b^2}`. In float64 ``log_prob`` then agrees with adaptive
    quadrature to about :math:`10^{-9}`; in float32 rounding limits it to a few :math:`10^{-4}`
    (absolute, on the log scale). It costs about :math:`1600` Gaussian evaluations per point at the
    default noise, and proportionally more for smaller noise.

    Args:
        noise: The noise :math:`\eta > 0`, in the roll's units (before division by ``scale``).
        scale: The divisor :math:`s > 0`.
        device: Where samples and densities are computed (CPU by default).
        dtype: Floating dtype of samples (by default :func:`torch.get_default_dtype`).
        validate_args: Passed to :class:`~torch.distributions.Distribution`.

    Raises:
        ValueError: If ``noise <= 0`` or ``scale <= 0``.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    t_low = 1.5 * math.pi
    t_high = 4.5 * math.pi
    _NODES_PER_PANEL = 3
    _MAX_CHUNK_ELEMENTS = 2**22

    def __init__(
        self,
        noise: float = 0.25,
        scale: float = 7.5,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.noise = _positive_float("noise", noise)
        self.scale = _positive_float("scale", scale)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.dtype = _resolve_dtype(dtype)
        widest_panel = self.noise / math.sqrt(1.0 + self.t_high**2)
        n_panels = math.ceil((self.t_high - self.t_low) / widest_panel)
        unit_nodes, unit_weights = np.polynomial.legendre.leggauss(self._NODES_PER_PANEL)
        panel_width = (self.t_high - self.t_low) / n_panels
        panel_starts = self.t_low + panel_width * np.arange(n_panels)
        # Quadrature nodes in t and the weights of the uniform law on [t_low, t_high] (they sum
        # to 1).
        self._t_nodes = (panel_starts[:, None] + panel_width * (unit_nodes + 1) / 2).reshape(-1)
        self._log_t_weights = np.log(np.tile(unit_weights / 2, n_panels) / n_panels)
        super().__init__(
            batch_shape=torch.Size(), event_shape=torch.Size([2]), validate_args=validate_args
        )

    @property
    def sigma(self) -> float:
        r"""The standard deviation :math:`\sigma = \eta / s` of the noise in the plane."""
        return self.noise / self.scale

    @property
    def n_quadrature_nodes(self) -> int:
        """The number of nodes in :math:`t` that ``log_prob`` sums over."""
        return self._t_nodes.size

    def _curve(self, t: Tensor) -> Tensor:
        return torch.stack((t * torch.cos(t), t * torch.sin(t)), dim=-1) / self.scale

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        """Draw points; ``sample_shape + (2,)`` of them, on ``self.device``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        t = self.t_low + (self.t_high - self.t_low) * torch.rand(
            shape[:-1], device=self.device, dtype=self.dtype
        )
        noise = torch.randn(shape, device=self.device, dtype=self.dtype)
        return self._curve(t) + self.sigma * noise

    def log_prob(self, value: Tensor) -> Tensor:
        r"""The exact log-density :math:`\log p(x)` (up to quadrature error), shape
        ``value.shape[:-1]``.

        Computed on ``value``'s device and in its dtype (float64 for the highest accuracy).
        """
        if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[-1] != 2:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"value must be a tensor of points of shape (..., 2), got {shape}")
        if self._validate_args:
            self._validate_sample(value)
        if not value.dtype.is_floating_point:
            value = value.to(self.dtype)
        points = value.reshape(-1, 2)
        t = torch.as_tensor(self._t_nodes, device=value.device, dtype=value.dtype)
        log_weights = torch.as_tensor(self._log_t_weights, device=value.device, dtype=value.dtype)
        curve = self._curve(t)
        curve_norms = curve.square().sum(dim=1)
        sigma = self.sigma
        log_normaliser = math.log(2 * math.pi * sigma**2)
        chunk = max(1, self._MAX_CHUNK_ELEMENTS // t.numel())
        pieces = []
        for start in range(0, points.shape[0], chunk):
            block = points[start : start + chunk]
            # |x - m|^2 = |x|^2 + |m|^2 - 2 x.m as one matrix product: 2-3 times faster than
            # broadcasting differences, at a cancellation error of ~1e-4 in float32 (1e-12 in
            # float64).
            squared = torch.addmm(
                block.square().sum(dim=1, keepdim=True) + curve_norms, block, curve.T, alpha=-2
            )
            pieces.append(
                torch.logsumexp(log_weights - squared.clamp_min(0) / (2 * sigma**2), dim=1)
            )
        log_density = torch.cat(pieces) if pieces else points.new_empty(0)
        return (log_density - log_normaliser).reshape(value.shape[:-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self.noise:g}, scale={self.scale:g})"


def swiss_roll(
    noise: float = 0.25,
    scale: float = 7.5,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> SwissRoll:
    r"""The Swiss roll of Gulrajani et al. (2017); see :class:`SwissRoll`.

    Example:
        >>> p = swiss_roll()
        >>> x = p.sample((5000,))
        >>> bool(x.abs().max() < 2.1), tuple(p.log_prob(x[:3]).shape)
        (True, (3,))
    """
    return SwissRoll(noise, scale, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Parallel lines


class _VerticalSegment(constraints.Constraint):
    r"""The segment :math:`\{\theta\} \times [0, 1]` (one per batch element)."""

    event_dim = 1

    def __init__(self, theta: Tensor) -> None:
        self.theta = theta
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        on_line = value[..., 0] == self.theta
        return on_line & (value[..., 1] >= 0) & (value[..., 1] <= 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(theta={self.theta})"


class ParallelLines(Distribution):
    r"""The law :math:`\mathbb{P}_\theta` of :math:`(\theta, Z)`, :math:`Z \sim \mathcal{U}(0, 1)`.

    The example of Arjovsky et al. (2017): :math:`\mathbb{P}_0` and :math:`\mathbb{P}_\theta` live
    on two parallel segments. For :math:`\theta \ne 0` their supports are disjoint, so

    .. math::
        \mathrm{KL}(\mathbb{P}_0 \,\|\, \mathbb{P}_\theta) = +\infty, \qquad
        \mathrm{JSD}(\mathbb{P}_0, \mathbb{P}_\theta) = \log 2, \qquad
        \mathrm{TV}(\mathbb{P}_0, \mathbb{P}_\theta) = 1, \qquad
        W_1(\mathbb{P}_0, \mathbb{P}_\theta) = |\theta|,

    and only the Wasserstein distance goes to zero continuously as :math:`\theta \to 0`.

    The law is concentrated on a segment, a set of Lebesgue measure zero in :math:`\mathbb{R}^2`:
    it has no density, and :meth:`log_prob` raises. Samples are differentiable in :math:`\theta`
    (``rsample``), which is what a generator :math:`g_\theta(z) = (\theta, z)` needs.

    Args:
        theta: The horizontal position :math:`\theta` (a number, or a tensor whose shape becomes the
            ``batch_shape``; a tensor keeps its autograd graph, device and dtype).
        device: Where samples live when ``theta`` is a number (CPU by default).
        dtype: Floating dtype when ``theta`` is a number (by default the default dtype).
        validate_args: Passed to :class:`~torch.distributions.Distribution`.

    Raises:
        ValueError: If ``theta`` is not finite.
    """

    arg_constraints = {"theta": constraints.real}
    has_rsample = True

    def __init__(
        self,
        theta: float | Tensor,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if isinstance(theta, Tensor):
            if not theta.dtype.is_floating_point:
                theta = theta.to(_resolve_dtype(dtype))
        else:
            if isinstance(theta, bool) or not isinstance(
                theta, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"theta must be a number or a tensor, got {type(theta).__name__}")
            theta = torch.tensor(float(theta), device=device, dtype=_resolve_dtype(dtype))
        if not torch.isfinite(theta).all():
            raise ValueError(f"theta must be finite, got {theta}")
        self.theta = theta
        super().__init__(
            batch_shape=theta.shape, event_shape=torch.Size([2]), validate_args=validate_args
        )

    @property
    def support(self) -> constraints.Constraint:
        r"""The segment :math:`\{\theta\} \times [0, 1]`."""
        return _VerticalSegment(self.theta)

    @property
    def mean(self) -> Tensor:
        return torch.stack((self.theta, torch.full_like(self.theta, 0.5)), dim=-1)

    @property
    def variance(self) -> Tensor:
        return torch.stack(
            (torch.zeros_like(self.theta), torch.full_like(self.theta, 1 / 12)), dim=-1
        )

    def expand(
        self, batch_shape: torch.Size, _instance: ParallelLines | None = None
    ) -> ParallelLines:
        new = self._get_checked_instance(ParallelLines, _instance)
        new.theta = self.theta.expand(torch.Size(batch_shape))
        Distribution.__init__(
            new,
            batch_shape=torch.Size(batch_shape),
            event_shape=self.event_shape,
            validate_args=False,
        )
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        """Draw ``sample_shape + batch_shape + (2,)`` points :math:`(\\theta, Z)`."""
        shape = self._extended_shape(torch.Size(sample_shape))
        z = torch.rand(shape[:-1], device=self.theta.device, dtype=self.theta.dtype)
        return torch.stack((self.theta.expand(shape[:-1]), z), dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """Always raises: the law has no density with respect to Lebesgue measure on the plane."""
        raise NotImplementedError(
            "ParallelLines has no density: the law of (theta, Z) lives on the segment "
            "{theta} x [0, 1], a set of Lebesgue measure zero in R^2, so it is singular with "
            "respect to Lebesgue measure and log_prob is undefined (this is why "
            "KL(P_0 || P_theta) is infinite for theta != 0). "
            "Compare such laws through samples, e.g. with the Wasserstein distance."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(theta={self.theta})"


def parallel_lines(
    theta: float | Tensor,
    *,
    device: DeviceLike = None,
    dtype: torch.dtype | None = None,
) -> ParallelLines:
    r"""The law of :math:`(\theta, Z)` with :math:`Z \sim \mathcal{U}(0, 1)`; see
    :class:`ParallelLines`.

    Example:
        >>> p = parallel_lines(0.5)
        >>> x = p.sample((3,))
        >>> x[:, 0].tolist(), bool(((0 <= x[:, 1]) & (x[:, 1] <= 1)).all())
        ([0.5, 0.5, 0.5], True)
    """
    return ParallelLines(theta, device=device, dtype=dtype)
