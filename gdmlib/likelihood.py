r"""Likelihood as a yardstick: a kernel density estimate and mixtures of arbitrary distributions.

Used in chapters 02 and 03.

Theis, van den Oord & Bethge (2016) build two models that expose how little a log-likelihood says
about samples, and this module makes both concrete:

- :class:`KernelDensity`, the Gaussian kernel density estimate on training points
  :math:`x_1, \dots, x_n \in \mathbb{R}^d` (Parzen 1962),

  .. math::
      p_h(x) = \frac1n \sum_{i=1}^n \mathcal{N}(x;\, x_i,\, h^2 I_d),

  whose samples are the training points blurred by :math:`\mathcal{N}(0, h^2 I_d)` noise; its
  held-out log-likelihood is governed by the distance to the nearest training point and collapses
  as :math:`h \to 0` or as the dimension grows. :func:`select_bandwidth` picks :math:`h` by
  held-out likelihood.
- :class:`Mixture`, :math:`\sum_k w_k\, p_k(x)` for components of *any* families with a common
  event shape, e.g. :math:`0.01\, p + 0.99\, \text{noise}`, whose log-likelihood is never below
  :math:`\log p - \log 100` although 99% of its samples are noise.

Both are :class:`torch.distributions.Distribution` objects with ``sample`` and ``log_prob``,
living on the device of their parameters.

Example:
    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> g = torch.Generator().manual_seed(0)
    >>> train = torch.randn(500, 2, generator=g, dtype=torch.float64)
    >>> test = torch.randn(500, 2, generator=g, dtype=torch.float64)
    >>> kde = KernelDensity(train, bandwidth=0.3)
    >>> print(f"{kde.log_prob(test).mean().item():.2f}")  # N(0, I) itself scores -2.84 on average
    -2.86
    >>> truth = Independent(Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1)
    >>> noise = Independent(Normal(torch.zeros(2, dtype=torch.float64), 3.0), 1)
    >>> p2 = Mixture([truth, noise], [0.01, 0.99])
    >>> bool((p2.log_prob(test) >= truth.log_prob(test) + torch.log(torch.tensor(0.01))).all())
    True

References:
    Theis, van den Oord & Bethge (2016). A note on the evaluation of generative models. ICLR.

    Parzen (1962). On estimation of a probability density function and mode. Annals of
    Mathematical Statistics 33(3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from gdmlib._checks import check_bandwidth

__all__ = ["BandwidthSelection", "KernelDensity", "Mixture", "select_bandwidth"]

# Largest (test points x training points) block of squared distances built at once: 32 MiB in
# float64.
_MAX_BLOCK_ELEMENTS = 2**22


def _check_points(name: str, points: object) -> Tensor:
    if not isinstance(points, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (n, d), got {type(points).__name__}"
        )
    if not points.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {points.dtype}")
    if points.dim() != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} must contain only finite values")
    return points


def _working_dtype(points: Tensor) -> torch.dtype:
    # Squared distances by |a|^2 + |b|^2 - 2 a.b lose digits in float32, and a small bandwidth
    # multiplies the loss by 1/h^2: work in float64 wherever the device has it (MPS does not).
    return points.dtype if points.device.type == "mps" else torch.float64


def _nearest_squared_distances_blocks(queries: Tensor, points: Tensor) -> list[Tensor]:
    """Squared distances from each query to every point, in row blocks of bounded memory."""
    centre = points.mean(0)
    points = points - centre
    queries = queries - centre
    point_norms = (points * points).sum(1)
    rows = max(1, _MAX_BLOCK_ELEMENTS // points.shape[0])
    blocks = []
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows]
        squared = (block * block).sum(1, keepdim=True) + point_norms - 2.0 * (block @ points.T)
        blocks.append(squared.clamp_min(0.0))
    return blocks


class KernelDensity(Distribution):
    r"""The Gaussian kernel density estimate
    :math:`p_h(x) = \frac1n \sum_i \mathcal{N}(x; x_i, h^2 I_d)`.

    A mixture of :math:`n` isotropic Gaussians of standard deviation :math:`h` centred on the
    training points. Its log-density at :math:`x` is

    .. math::
        \log p_h(x) = \operatorname{logsumexp}_i\Bigl(-\frac{\lVert x - x_i\rVert^2}{2h^2}\Bigr)
        - \log n - \frac d2 \log(2\pi h^2),

    computed from squared distances in blocks of bounded memory (no :math:`(m, n, d)` tensor), in
    float64 where the device supports it, and returned in the points' dtype. Sampling picks a
    training point uniformly and adds :math:`\mathcal{N}(0, h^2 I_d)` noise, so as
    :math:`h \to 0` the samples are the training points themselves.

    Args:
        points: The training points, shape ``(n, d)``, finite, floating.
        bandwidth: The kernel's standard deviation :math:`h > 0`.
        validate_args: Passed to :class:`~torch.distributions.Distribution`.

    Attributes:
        points: The training points.
        bandwidth: :math:`h`, a Python float.

    Raises:
        TypeError: If ``points`` is not a floating tensor or ``bandwidth`` not a number.
        ValueError: If ``points`` is not ``(n, d)`` and finite, or ``bandwidth`` is not positive.

    References:
        Parzen (1962). On estimation of a probability density function and mode. Annals of
        Mathematical Statistics 33(3).

        Theis, van den Oord & Bethge (2016). A note on the evaluation of generative models. ICLR.

    Example:
        >>> import torch
        >>> kde = KernelDensity(torch.tensor([[0.0], [2.0]]), bandwidth=1.0)
        >>> kde.event_shape, round(kde.log_prob(torch.tensor([1.0])).item(), 4)  # log N(1; 0, 1)
        (torch.Size([1]), -1.4189)
        >>> kde.sample((5,)).shape
        torch.Size([5, 1])
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, points: Tensor, bandwidth: float, validate_args: bool | None = None) -> None:
        self.points = _check_points("points", points)
        self.bandwidth = check_bandwidth(bandwidth)
        super().__init__(
            batch_shape=torch.Size(), event_shape=points.shape[1:], validate_args=validate_args
        )

    @property
    def mean(self) -> Tensor:
        return self.points.mean(0)

    @property
    def variance(self) -> Tensor:
        return self.points.var(0, unbiased=False) + self.bandwidth**2

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        """Training points chosen uniformly, plus :math:`\\mathcal{N}(0, h^2 I)` noise."""
        shape = torch.Size(sample_shape)
        index = torch.randint(self.points.shape[0], shape, device=self.points.device)
        noise = torch.randn(
            shape + self.event_shape, dtype=self.points.dtype, device=self.points.device
        )
        return self.points[index] + self.bandwidth * noise

    def log_prob(self, value: Tensor) -> Tensor:
        """:math:`\\log p_h(x)` for ``value`` of shape ``(..., d)``; returns shape ``(...)``."""
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError("value must be a floating tensor of shape (..., d)")
        d = self.points.shape[1]
        if value.dim() < 1 or value.shape[-1] != d:
            raise ValueError(f"value must have shape (..., {d}), got {tuple(value.shape)}")
        if value.device != self.points.device:
            raise ValueError(
                f"value is on {value.device} but the training points are on {self.points.device}"
            )
        if self._validate_args:
            self._validate_sample(value)
        dtype = _working_dtype(self.points)
        queries = value.reshape(-1, d).to(dtype)
        blocks = _nearest_squared_distances_blocks(queries, self.points.to(dtype))
        h2 = self.bandwidth**2
        constant = math.log(self.points.shape[0]) + 0.5 * d * math.log(2 * math.pi * h2)
        log_density = (
            torch.cat([torch.logsumexp(-block / (2 * h2), dim=1) for block in blocks]) - constant
        )
        return log_density.reshape(value.shape[:-1]).to(value.dtype)

    def __repr__(self) -> str:
        n, d = self.points.shape
        return f"{type(self).__name__}(n={n}, d={d}, bandwidth={self.bandwidth:g})"


class BandwidthSelection(NamedTuple):
    """The outcome of :func:`select_bandwidth`.

    Attributes:
        bandwidth: The candidate with the highest mean held-out log-likelihood.
        bandwidths: Every candidate, in the order given.
        log_likelihoods: The mean held-out log-likelihood of each candidate (nats per point).
    """

    bandwidth: float
    bandwidths: tuple[float, ...]
    log_likelihoods: tuple[float, ...]


def select_bandwidth(
    points: Tensor, validation: Tensor, candidates: Sequence[float]
) -> BandwidthSelection:
    r"""The bandwidth that maximises the held-out log-likelihood of :class:`KernelDensity`.

    .. math::
        \hat h = \arg\max_{h \in \text{candidates}} \frac1m \sum_{j=1}^m \log p_h(y_j),

    with :math:`p_h` built on ``points`` and :math:`y_1, \dots, y_m` the ``validation`` points,
    which must not be training points (on its own training points :math:`p_h` is maximised by
    :math:`h \to 0`). The squared distances are computed once for all candidates.

    Args:
        points: Training points, shape ``(n, d)``.
        validation: Held-out points, shape ``(m, d)``, same dtype and device.
        candidates: The bandwidths to try, positive numbers.

    Returns:
        A :class:`BandwidthSelection`.

    Raises:
        TypeError, ValueError: On ill-shaped or mismatched inputs, or an empty or non-positive
            candidate list.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> train, valid = torch.randn(400, 1, generator=g), torch.randn(400, 1, generator=g)
        >>> select_bandwidth(train, valid, [0.01, 0.3, 10.0]).bandwidth  # neither spiky nor flat
        0.3
    """
    points = _check_points("points", points)
    validation = _check_points("validation", validation)
    if points.shape[1] != validation.shape[1]:
        raise ValueError(
            f"points and validation must have the same dimension, got {points.shape[1]} and "
            f"{validation.shape[1]}"
        )
    if points.dtype != validation.dtype or points.device != validation.device:
        raise ValueError("points and validation must share dtype and device")
    if (
        isinstance(candidates, (str, bytes))
        or not isinstance(candidates, Sequence)
        or len(candidates) == 0
    ):
        raise ValueError("candidates must be a non-empty sequence of positive bandwidths")
    bandwidths = tuple(check_bandwidth(h, "every candidate bandwidth") for h in candidates)
    dtype = _working_dtype(points)
    blocks = _nearest_squared_distances_blocks(validation.to(dtype), points.to(dtype))
    n, d = points.shape
    # Every block sum stays on the device; one transfer at the end (not one host sync per block).
    block_sums = torch.stack(
        [
            torch.stack([torch.logsumexp(-block / (2 * h * h), dim=1).sum() for block in blocks])
            for h in bandwidths
        ]
    ).tolist()
    scores = []
    for h, sums in zip(bandwidths, block_sums):
        constant = math.log(n) + 0.5 * d * math.log(2 * math.pi * h * h)
        total = sum(sums)  # summed in the same order as before, so the scores are unchanged
        scores.append(total / validation.shape[0] - constant)
    best = max(range(len(bandwidths)), key=scores.__getitem__)
    return BandwidthSelection(bandwidths[best], bandwidths, tuple(scores))


def _log_density_or_minus_inf(component: Distribution, value: Tensor) -> Tensor:
    """``component.log_prob(value)``, and -inf outside its support (where log_prob may raise)."""
    inside = component.support.check(value)
    if bool(inside.all()):
        return component.log_prob(value)
    event_dims = len(component.event_shape)
    batch_shape = value.shape[: value.dim() - event_dims]
    flat_values = value.reshape(-1, *component.event_shape)
    flat_inside = inside.reshape(-1)
    if not bool(flat_inside.any()):
        return torch.full(batch_shape, -math.inf, dtype=value.dtype, device=value.device)
    # Evaluate a point inside the support in place of each outside one, then mask the result.
    stand_in = flat_values[flat_inside.nonzero()[0, 0]]
    mask = flat_inside.reshape(-1, *([1] * event_dims))
    safe = torch.where(mask, flat_values, stand_in)
    log_p = component.log_prob(safe).reshape(batch_shape)
    return torch.where(inside, log_p, torch.full_like(log_p, -math.inf))


class Mixture(Distribution):
    r"""A finite mixture :math:`p(x) = \sum_k w_k\, p_k(x)` of distributions of any families.

    Unlike :class:`torch.distributions.MixtureSameFamily`, the components may be different
    distributions (a model and a noise distribution, say); they must share their event shape and
    have no batch shape. The log-density is

    .. math::
        \log p(x) = \operatorname{logsumexp}_k\bigl(\log w_k + \log p_k(x)\bigr)
        \ \ge\ \log w_k + \log p_k(x) \quad \text{for every } k,

    the bound of Theis et al. (2016): a mixture scores at most :math:`-\log w_k` nats below its
    component :math:`k`, whatever the others are. Sampling draws a component index from the
    weights and a sample of that component (every component is sampled, then one is kept per draw).

    Args:
        components: The distributions :math:`p_1, \dots, p_K`, with ``sample`` and ``log_prob``.
        weights: The weights :math:`w_k \ge 0`, summing to 1 (within 1e-6, never renormalised).
        validate_args: Passed to :class:`~torch.distributions.Distribution`.

    Attributes:
        components: The components, a tuple.
        weights: The weights, a float64 CPU tensor.

    Raises:
        TypeError: If a component is not a ``Distribution``.
        ValueError: If the lists are empty or of different lengths, the event shapes differ, a
            component has a batch shape, or the weights are negative or do not sum to 1.

    References:
        Theis, van den Oord & Bethge (2016). A note on the evaluation of generative models. ICLR,
        section 3.2.

    Example:
        >>> import math, torch
        >>> from torch.distributions import Normal, Uniform
        >>> p = Mixture([Normal(0.0, 1.0), Uniform(-1.0, 1.0)], [0.5, 0.5])
        >>> round(p.log_prob(torch.tensor(0.0)).item(), 4)  # log(0.5 * 0.3989 + 0.5 * 0.5)
        -0.7997
        >>> # outside the uniform's support: the bound log w_1 + log p_1 is attained
        >>> x = torch.tensor(3.0)
        >>> gap = p.log_prob(x).item() - Normal(0.0, 1.0).log_prob(x).item()
        >>> round(gap, 4), round(math.log(0.5), 4)
        (-0.6931, -0.6931)
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        components: Sequence[Distribution],
        weights: Sequence[float] | Tensor,
        validate_args: bool | None = None,
    ) -> None:
        components = tuple(components)
        if not components:
            raise ValueError("components is empty: give at least one distribution")
        for index, component in enumerate(components):
            if not isinstance(component, Distribution):
                raise TypeError(
                    f"components[{index}] must be a torch Distribution, "
                    f"got {type(component).__name__}"
                )
            if component.batch_shape != torch.Size():
                raise ValueError(
                    f"components[{index}] has batch_shape {tuple(component.batch_shape)}; "
                    "expected ()"
                )
            if component.event_shape != components[0].event_shape:
                raise ValueError(
                    "every component must have the event shape of the first, "
                    f"{tuple(components[0].event_shape)}; "
                    f"components[{index}] has {tuple(component.event_shape)}"
                )
        weights = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if weights.dim() != 1 or weights.numel() != len(components):
            raise ValueError(
                f"weights must hold one weight per component ({len(components)}), "
                f"got shape {tuple(weights.shape)}"
            )
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"weights must be finite and non-negative, got {weights.tolist()}")
        if abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(
                f"weights must sum to 1 (within 1e-6), got a sum of {float(weights.sum()):.8g}"
            )
        self.components = components
        self.weights = weights
        super().__init__(
            batch_shape=torch.Size(),
            event_shape=components[0].event_shape,
            validate_args=validate_args,
        )

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        # The union of the components' supports has no torch constraint; outside every support
        # the density is simply zero (log_prob returns -inf).
        event_dims = len(self.event_shape)
        return (
            constraints.independent(constraints.real, event_dims)
            if event_dims
            else constraints.real
        )

    @property
    def mean(self) -> Tensor:
        return sum(float(w) * component.mean for w, component in zip(self.weights, self.components))

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            draws = torch.stack([component.sample(shape) for component in self.components])
            index = torch.multinomial(self.weights, max(shape.numel(), 1), replacement=True)[
                : shape.numel()
            ]
            index = index.reshape(shape).to(draws.device)
            event_dims = len(self.event_shape)
            gather_index = index.reshape(1, *shape, *([1] * event_dims)).expand(1, *draws.shape[1:])
            return draws.gather(0, gather_index).squeeze(0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_densities = []
        for weight, component in zip(self.weights.tolist(), self.components):
            log_weight = math.log(weight) if weight > 0 else -math.inf
            log_densities.append(_log_density_or_minus_inf(component, value) + log_weight)
        return torch.logsumexp(torch.stack(log_densities), dim=0)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{w:g}·{type(c).__name__}" for w, c in zip(self.weights.tolist(), self.components)
        )
        return f"{type(self).__name__}({parts})"
