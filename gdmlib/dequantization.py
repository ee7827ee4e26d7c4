r"""Dequantization: continuous densities as models of discrete data, and the bounds that train them.

Used in chapter 11.

Discrete data :math:`x \in \mathbb{Z}^d` (pixel levels :math:`0, \dots, K-1`, say) have no density
on :math:`\mathbb{R}^d`: a continuous density fitted to them collapses onto the points. A continuous
density :math:`p` on :math:`\mathbb{R}^d` does define a discrete model by integrating over unit
cells,

.. math::
    P(x) = \int_{[0, 1)^d} p(x + u)\, du , \qquad \sum_{x \in \mathbb{Z}^d} P(x) = 1 ,

and two lower bounds on :math:`\log P(x)` let us train :math:`p` on dequantized data
:math:`x + u` (Uria et al. 2013; Theis et al. 2016; Ho et al. 2019):

.. math::
    \underbrace{\mathbb{E}_{u \sim \mathcal{U}[0,1)^d} \log p(x + u)}_{\text{uniform}}
    \;\le\; \log P(x), \qquad
    \underbrace{\mathbb{E}_{u \sim q(u \mid x)}\bigl[\log p(x + u) - \log q(u \mid
    x)\bigr]}_{\text{variational}}
    \;\le\; \log P(x),

both by Jensen's inequality. The variational bound's gap is
:math:`\mathrm{KL}\bigl(q(u \mid x) \,\|\, p(x + u)/P(x)\bigr)`, zero if and only if :math:`q` is
the model's own conditional of the noise in the cell; the uniform bound is the special case
:math:`q = \mathcal{U}[0, 1)^d` (:math:`\log q = 0`).

This module holds

- :func:`uniform_dequantization_bound` and :func:`variational_dequantization_bound`, Monte Carlo
  estimates per data point with their standard errors (:class:`DequantizationBound`);
- :class:`VariationalDequantizer`, a trainable :math:`q(u \mid x)` on :math:`(0, 1)^d`: a
  conditional Gaussian, an optional conditional inverse autoregressive flow, and a sigmoid;
- :class:`ExactDequantizer`, the optimal :math:`q` of a density with independent coordinates (the
  equality case);
- :func:`discrete_log_prob`, :math:`\log P(x)` by tensor-product Gauss–Legendre quadrature over the
  cell, the exact reference in low dimension.

Example:
    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> p = Independent(Normal(torch.zeros(2), 2 * torch.ones(2)), 1)
    >>> x = torch.tensor([[0, 0], [1, -3]])
    >>> exact = discrete_log_prob(p.log_prob, x)
    >>> bound = uniform_dequantization_bound(
    ...     p.log_prob, x, 1000, generator=torch.Generator().manual_seed(0)
    ... )
    >>> bool((bound.value <= exact + 4 * bound.stderr).all())
    True

References:
    Uria, Murray, Larochelle. RNADE: the real-valued neural autoregressive density-estimator.
    NeurIPS 2013.

    Theis, van den Oord, Bethge. A note on the evaluation of generative models. ICLR 2016.

    Ho, Chen, Srinivas, Duan, Abbeel. Flow++: improving flow-based generative models with
    variational dequantization and architecture design. ICML 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.flows import iaf
from gdmlib.nets import MLP, Activation

__all__ = [
    "DequantizationBound",
    "ExactDequantizer",
    "VariationalDequantizer",
    "discrete_log_prob",
    "uniform_dequantization_bound",
    "variational_dequantization_bound",
]

_MAX_QUADRATURE_POINTS = 1_000_000
LogDensity = Callable[[Tensor], Tensor]


class DequantizationBound(NamedTuple):
    """A Monte Carlo lower bound on :math:`\\log P(x)`, one value per data point.

    Attributes:
        value: The mean over the draws, shape ``(B,)`` (differentiable: minimise ``-value.mean()``).
        stderr: Its standard error, shape ``(B,)`` (``nan`` with a single draw).
    """

    value: Tensor
    stderr: Tensor


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_discrete(x: object, features: int | None = None) -> Tensor:
    """A ``(B, d)`` tensor of integers (any dtype that holds them)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor of integer levels, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"x must have shape (batch, features) with both positive, got {tuple(x.shape)}"
        )
    if features is not None and x.shape[1] != features:
        raise ValueError(f"x must have {features} features, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"x must hold integer levels, got dtype {x.dtype}")
    if x.is_floating_point() and not (torch.isfinite(x).all() and torch.equal(x, x.round())):
        raise ValueError("x must hold integers (the discrete data), got non-integer values")
    return x


def _float_dtype(x: Tensor, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return x.dtype if x.is_floating_point() else torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _evaluate(log_density: LogDensity, points: Tensor) -> Tensor:
    if not callable(log_density):
        raise TypeError(
            "log_density must be a callable mapping (..., d) points to (...) log-densities, got "
            f"{type(log_density).__name__}"
        )
    values = log_density(points)
    if not isinstance(values, Tensor) or values.shape != points.shape[:-1]:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"log_density must map points of shape {tuple(points.shape)} to shape "
            f"{tuple(points.shape[:-1])}, got {shape}"
        )
    return values


def _mean_and_stderr(values: Tensor) -> DequantizationBound:
    """Mean over the draws (dimension 0) and its standard error."""
    count = values.shape[0]
    mean = values.mean(0)
    if count == 1:
        return DequantizationBound(mean, torch.full_like(mean.detach(), float("nan")))
    return DequantizationBound(mean, values.detach().std(0, unbiased=True) / math.sqrt(count))


# ---------------------------------------------------------------------------------------------
# The exact discrete model and the two bounds
# ---------------------------------------------------------------------------------------------


def discrete_log_prob(
    log_density: LogDensity, x: Tensor, *, nodes: int = 32, dtype: torch.dtype | None = None
) -> Tensor:
    r"""The discrete model :math:`\log P(x) = \log \int_{[0,1)^d} p(x + u)\, du`, by quadrature.

    A tensor product of ``nodes`` Gauss–Legendre nodes per dimension over the cell, summed in log
    space (a logsumexp of :math:`\log w_j + \log p(x + u_j)`), so that tiny cell probabilities keep
    their relative accuracy. The rule is exact for polynomials of degree :math:`2\,\text{nodes} - 1`
    in each coordinate and converges exponentially for densities analytic on the cell (Gaussians,
    their mixtures, smooth flows); it costs :math:`\text{nodes}^d` evaluations per point, so it is
    meant for :math:`d \le 3`.

    Args:
        log_density: Maps points of shape ``(..., d)`` to :math:`\log p`, shape ``(...)``.
        x: Integer data, shape ``(B, d)``.
        nodes: Gauss–Legendre nodes per dimension.
        dtype: Floating dtype of the points (default: ``x``'s if floating, else torch's default).

    Returns:
        :math:`\log P(x)`, shape ``(B,)``.

    Raises:
        ValueError: If ``x`` is not a ``(B, d)`` tensor of integers, or ``nodes ** d`` exceeds
            :math:`10^6`.

    Example:
        >>> from torch.distributions import Normal
        >>> p = Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
        >>> x = torch.tensor([[0], [-1], [2]])
        >>> quadrature = discrete_log_prob(
        ...     lambda v: p.log_prob(v).squeeze(-1), x, dtype=torch.float64
        ... )
        >>> closed_form = torch.log(p.cdf(x + 1.0) - p.cdf(x)).squeeze(-1)
        >>> bool(torch.allclose(quadrature, closed_form, atol=1e-12))
        True
    """
    x = _check_discrete(x)
    nodes = _check_positive_int("nodes", nodes)
    features = x.shape[1]
    if nodes**features > _MAX_QUADRATURE_POINTS:
        raise ValueError(
            f"nodes ** d = {nodes}**{features} exceeds {_MAX_QUADRATURE_POINTS} quadrature points: "
            "use fewer nodes or Monte Carlo"
        )
    dtype = _float_dtype(x, dtype)
    points_1d, weights_1d = np.polynomial.legendre.leggauss(nodes)
    points_1d = torch.as_tensor((points_1d + 1) / 2, dtype=dtype, device=x.device)
    log_weights_1d = torch.as_tensor(np.log(weights_1d / 2), dtype=dtype, device=x.device)
    grid = torch.cartesian_prod(*([points_1d] * features)).reshape(-1, features)
    log_weights = torch.cartesian_prod(*([log_weights_1d] * features)).reshape(-1, features).sum(-1)
    base = x.to(dtype)
    chunk = max(1, _MAX_QUADRATURE_POINTS // grid.shape[0])
    out = []
    for start in range(0, base.shape[0], chunk):
        cell_points = base[start : start + chunk, None, :] + grid  # (b, n^d, d)
        out.append(torch.logsumexp(_evaluate(log_density, cell_points) + log_weights, dim=-1))
    return torch.cat(out)


def uniform_dequantization_bound(
    log_density: LogDensity,
    x: Tensor,
    num_samples: int = 100,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> DequantizationBound:
    r"""Uniform dequantization:
    :math:`\mathbb{E}_{u \sim \mathcal{U}[0,1)^d} \log p(x + u) \le \log P(x)`.

    Jensen's inequality for the concave logarithm,
    :math:`\mathbb{E}_u \log p(x + u) \le \log \mathbb{E}_u\, p(x + u) = \log P(x)`, with gap
    :math:`\mathrm{KL}\bigl(\mathcal{U}[0,1)^d \,\|\, p(x + \cdot)/P(x)\bigr)`: zero only where the
    density is constant on the cell (Uria et al. 2013; Theis et al. 2016). Maximising it over
    :math:`p` is maximum likelihood on the dequantized data :math:`x + u`.

    Args:
        log_density: Maps points of shape ``(..., d)`` to :math:`\log p`, shape ``(...)``.
        x: Integer data, shape ``(B, d)``.
        num_samples: Draws of :math:`u` per data point.
        generator: For the draws (on ``x``'s device).
        dtype: Floating dtype of the points (default: ``x``'s if floating, else torch's default).

    Returns:
        The per-point Monte Carlo mean and standard error, each of shape ``(B,)``.

    Example:
        >>> from torch.distributions import Normal
        >>> p = Normal(torch.tensor(0.0), 1.0)
        >>> x = torch.tensor([[0], [3]])
        >>> bound = uniform_dequantization_bound(lambda v: p.log_prob(v).squeeze(-1), x, 10_000,
        ...                                      generator=torch.Generator().manual_seed(0))
        >>> # exact: -(1/3 + log 2 pi)/2, -(37/3 + log 2 pi)/2
        >>> [round(v, 1) for v in bound.value.tolist()]
        [-1.1, -7.1]
    """
    x = _check_discrete(x)
    num_samples = _check_positive_int("num_samples", num_samples)
    dtype = _float_dtype(x, dtype)
    u = torch.rand((num_samples, *x.shape), generator=generator, device=x.device, dtype=dtype)
    return _mean_and_stderr(_evaluate(log_density, x.to(dtype) + u))


def variational_dequantization_bound(
    log_density: LogDensity,
    x: Tensor,
    dequantizer: nn.Module,
    num_samples: int = 100,
    *,
    generator: torch.Generator | None = None,
) -> DequantizationBound:
    r"""Variational dequantization (Ho et al. 2019):
    :math:`\mathbb{E}_{u \sim q(u \mid x)}\bigl[\log p(x + u) - \log q(u \mid x)\bigr] \le \log
    P(x)`.

    For any density :math:`q(\cdot \mid x)` on :math:`[0, 1)^d`, Jensen's inequality gives
    :math:`\mathbb{E}_q \log \frac{p(x + u)}{q(u \mid x)} \le \log \mathbb{E}_q \frac{p(x + u)}{q(u
    \mid
    x)} = \log P(x)`, and the gap is :math:`\mathrm{KL}\bigl(q(u \mid x) \,\|\, p(x +
    u)/P(x)\bigr)`: the bound is exact if and only if :math:`q(u \mid x) = p(x +
    u)/P(x)`. The uniform bound is :math:`q =
    \mathcal{U}[0,1)^d`. The draws are reparametrised, so ``-value.mean()`` trains both :math:`p`
    and :math:`q` (e.g. with ``gdmlib.training.fit(dequantizer, data, loss=...)``).

    Args:
        log_density: Maps points of shape ``(..., d)`` to :math:`\log p`, shape ``(...)``.
        x: Integer data, shape ``(B, d)``.
        dequantizer: :math:`q(u \mid x)`: any module with
            ``rsample_and_log_prob(x, num_samples, generator=None) -> (u (S, B, d), log_q (S, B))``
            whose draws lie in :math:`[0, 1]^d`, e.g. a :class:`VariationalDequantizer`.
        num_samples: Draws of :math:`u` per data point.
        generator: For the draws.

    Returns:
        The per-point Monte Carlo mean and standard error, each of shape ``(B,)``.

    Raises:
        ValueError: If the dequantizer's draws leave the unit cell or have the wrong shape.

    Example:
        >>> from torch.distributions import Independent, Normal
        >>> _ = torch.manual_seed(0)
        >>> p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
        >>> q = VariationalDequantizer(2, hidden=(8,), num_layers=1, flow_hidden=(8,))
        >>> bound = variational_dequantization_bound(p.log_prob, torch.tensor([[0, 1]]), q, 1000)
        >>> exact = discrete_log_prob(p.log_prob, torch.tensor([[0, 1]]))
        >>> bool(bound.value <= exact + 4 * bound.stderr)
        True
    """
    x = _check_discrete(x)
    num_samples = _check_positive_int("num_samples", num_samples)
    if not hasattr(dequantizer, "rsample_and_log_prob"):
        raise TypeError(
            "dequantizer must have rsample_and_log_prob(x, num_samples), got "
            f"{type(dequantizer).__name__}"
        )
    u, log_q = dequantizer.rsample_and_log_prob(x, num_samples, generator=generator)
    if u.shape != (num_samples, *x.shape) or log_q.shape != (num_samples, x.shape[0]):
        raise ValueError(
            f"the dequantizer must return u of shape {(num_samples, *x.shape)} and log_q of shape "
            f"{(num_samples, x.shape[0])}, got {tuple(u.shape)} and {tuple(log_q.shape)}"
        )
    if not ((u >= 0) & (u <= 1)).all():
        raise ValueError("the dequantizer's draws must lie in the unit cell [0, 1]^d")
    return _mean_and_stderr(_evaluate(log_density, x.to(u.dtype) + u) - log_q)


# ---------------------------------------------------------------------------------------------
# A trainable q(u | x)
# ---------------------------------------------------------------------------------------------


class VariationalDequantizer(nn.Module):
    r"""A dequantization distribution :math:`q(u \mid x)` on :math:`(0, 1)^d` (Ho et al. 2019).

    An MLP of :math:`x` gives a Gaussian :math:`\mathcal{N}(\mu(x), \mathrm{diag}\,\sigma^2(x))` and
    a context :math:`h(x)`; ``num_layers`` inverse autoregressive layers conditioned on :math:`h(x)`
    reshape it; a sigmoid squashes the result into the unit cell:

    .. math::
        v_0 = \mu(x) + \sigma(x) \odot \varepsilon, \quad v = T(v_0; h(x)), \quad u =
        \mathrm{sigmoid}(v),

    .. math::
        \log q(u \mid x) = \log \mathcal{N}(v_0; \mu, \sigma^2)
        - \log\left|\det \frac{\partial T}{\partial v_0}\right|
        - \sum_{i=1}^d \log \mathrm{sigmoid}'(v_i), \qquad
        \log \mathrm{sigmoid}'(v) = \log \mathrm{sigmoid}(v) + \log \mathrm{sigmoid}(-v).

    Sampling with the density of the samples takes one pass per layer
    (:meth:`rsample_and_log_prob`); the density of an arbitrary :math:`u` (:meth:`log_prob`) takes
    :math:`d` passes per layer. With ``num_layers=0`` :math:`q` is a logit-normal per data point.

    Args:
        features: The dimension :math:`d` of :math:`x` and :math:`u`.
        hidden: Hidden widths of the MLP of :math:`x`.
        activation: Its nonlinearity.
        num_layers: Inverse autoregressive layers (0: none).
        flow_hidden: Hidden widths of each layer's MADE.
        context_features: Size of :math:`h(x)` (ignored without layers).
        input_shift, input_scale: The network reads ``(x - input_shift) / input_scale``: centre
            and scale the integer levels, e.g. ``(K - 1) / 2`` and ``K / 2`` for :math:`K` levels.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> q = VariationalDequantizer(2, hidden=(8,), num_layers=1, flow_hidden=(8,))
        >>> x = torch.tensor([[0, 3], [2, 1]])
        >>> u, log_q = q.rsample_and_log_prob(x, num_samples=5)
        >>> u.shape, log_q.shape, bool(((u > 0) & (u < 1)).all())
        (torch.Size([5, 2, 2]), torch.Size([5, 2]), True)
        >>> torch.allclose(q.log_prob(u, x), log_q, atol=1e-4)
        True

    References:
        Ho, Chen, Srinivas, Duan, Abbeel. Flow++: improving flow-based generative models with
        variational dequantization and architecture design. ICML 2019.
    """

    def __init__(
        self,
        features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        num_layers: int = 2,
        flow_hidden: Sequence[int] = (32, 32),
        context_features: int = 8,
        input_shift: float = 0.0,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.features = _check_positive_int("features", features)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative int, got {num_layers!r}")
        self.context_features = (
            _check_positive_int("context_features", context_features) if num_layers else 0
        )
        if not (
            isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0
        ):
            raise ValueError(f"input_scale must be positive and finite, got {input_scale!r}")
        if not (isinstance(input_shift, (int, float)) and math.isfinite(input_shift)):
            raise ValueError(f"input_shift must be a finite number, got {input_shift!r}")
        self.input_shift, self.input_scale = float(input_shift), float(input_scale)
        self.net = MLP(features, 2 * features + self.context_features, hidden, activation)
        self.flow = (
            iaf(
                features,
                num_layers,
                hidden=flow_hidden,
                activation=activation,
                context_features=self.context_features,
            )
            if num_layers
            else None
        )

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        x = _check_discrete(x, self.features)
        weight = self.net.net[0].weight
        out = self.net((x.to(weight.dtype) - self.input_shift) / self.input_scale)
        loc, log_scale = out[:, : self.features], out[:, self.features : 2 * self.features]
        context = out[:, 2 * self.features :] if self.flow is not None else None
        return loc, torch.exp(log_scale), context

    @staticmethod
    def _log_sigmoid_derivative(v: Tensor) -> Tensor:
        return (F.logsigmoid(v) + F.logsigmoid(-v)).sum(-1)

    def rsample_and_log_prob(
        self, x: Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reparametrised draws :math:`u`, shape ``(S, B, d)``, and :math:`\\log q(u \\mid x)`,
        shape ``(S, B)``."""
        num_samples = _check_positive_int("num_samples", num_samples)
        loc, scale, context = self._params(x)
        v0 = gaussian.rsample(loc, scale, num_samples, generator)
        log_q = gaussian.log_prob(v0, loc, scale)
        v = v0
        if self.flow is not None:
            v, ladj = self.flow.inverse(v0, context)
            log_q = log_q - ladj
        return torch.sigmoid(v), log_q - self._log_sigmoid_derivative(v)

    def log_prob(self, u: Tensor, x: Tensor) -> Tensor:
        """:math:`\\log q(u \\mid x)` for ``u`` of shape ``(..., B, d)`` in :math:`(0, 1)^d`;
        returns ``(..., B)``."""
        loc, scale, context = self._params(x)
        if (
            not isinstance(u, Tensor)
            or not u.is_floating_point()
            or u.dim() < 2
            or u.shape[-2:] != loc.shape
        ):
            raise ValueError(
                f"u must be a floating tensor of shape (..., {loc.shape[0]}, {self.features})"
            )
        if not ((u > 0) & (u < 1)).all():
            raise ValueError("u must lie in the open unit cell (0, 1)^d")
        v = torch.logit(u)
        v0, log_q = v, -self._log_sigmoid_derivative(v)
        if self.flow is not None:
            v0, ladj = self.flow(v, context)
            log_q = log_q + ladj
        return log_q + gaussian.log_prob(v0, loc, scale)


# ---------------------------------------------------------------------------------------------
# The optimal q for a density with independent coordinates
# ---------------------------------------------------------------------------------------------


class ExactDequantizer:
    r"""The optimal dequantizer :math:`q(u \mid x) = p(x + u) / P(x)` of a density with independent
    coordinates.

    For :math:`p(y) = \prod_j p_j(y_j)` with CDFs :math:`F_j`, the cell probability factorises,
    :math:`P(x) = \prod_j \bigl(F_j(x_j + 1) - F_j(x_j)\bigr)`, and :math:`q` is sampled by
    inverting the CDF in each coordinate:

    .. math::
        u_j = F_j^{-1}\bigl(F_j(x_j) + w_j\,(F_j(x_j + 1) - F_j(x_j))\bigr) - x_j, \qquad w \sim
        \mathcal{U}[0, 1)^d .

    With it the variational bound is exact, draw by draw:
    :math:`\log p(x + u) - \log q(u \mid x) = \log P(x)`. The inversion loses accuracy in far tails,
    where :math:`F_j(x_j + 1) - F_j(x_j)` underflows.

    Args:
        marginals: A ``torch.distributions`` distribution with ``batch_shape`` ``(d,)`` and scalar
            events that implements ``cdf`` and ``icdf``, e.g. ``Normal(loc, scale)`` with ``loc`` of
            shape ``(d,)``; its dtype and device are those of the draws.

    Example:
        >>> from torch.distributions import Normal
        >>> q = ExactDequantizer(Normal(torch.tensor([0.0, 1.0], dtype=torch.float64), 1.5))
        >>> x = torch.tensor([[0, 1], [-2, 3]])
        >>> bound = variational_dequantization_bound(q.log_density, x, q, 10)
        >>> bool(torch.allclose(bound.value, q.cell_log_prob(x), atol=1e-10))
        True
    """

    def __init__(self, marginals: torch.distributions.Distribution) -> None:
        if not isinstance(marginals, torch.distributions.Distribution):
            raise TypeError(
                "marginals must be a torch.distributions.Distribution, got "
                f"{type(marginals).__name__}"
            )
        if len(marginals.batch_shape) != 1 or marginals.event_shape != torch.Size():
            raise ValueError(
                "marginals must have batch_shape (d,) and scalar events (one univariate law per "
                f"coordinate), got batch_shape {tuple(marginals.batch_shape)} and event_shape "
                f"{tuple(marginals.event_shape)}"
            )
        probe = marginals.mean
        try:
            marginals.icdf(marginals.cdf(probe))
        except NotImplementedError as error:
            raise TypeError(
                f"marginals must implement cdf and icdf; {type(marginals).__name__} does not"
            ) from error
        self.marginals = marginals
        self.features = marginals.batch_shape[0]
        self.dtype, self.device = probe.dtype, probe.device

    def log_density(self, y: Tensor) -> Tensor:
        r""":math:`\log p(y) = \sum_j \log p_j(y_j)` for ``y`` of shape ``(..., d)``."""
        return self.marginals.log_prob(y).sum(-1)

    def _cell_bounds(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = _check_discrete(x, self.features).to(self.dtype)
        return x, self.marginals.cdf(x), self.marginals.cdf(x + 1)

    def cell_log_prob(self, x: Tensor) -> Tensor:
        r"""The closed form :math:`\log P(x) = \sum_j \log\bigl(F_j(x_j + 1) - F_j(x_j)\bigr)`,
        shape ``(B,)``."""
        _, low, high = self._cell_bounds(x)
        return torch.log(high - low).sum(-1)

    def rsample_and_log_prob(
        self, x: Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws :math:`u \\sim p(x + u)/P(x)`, shape ``(S, B, d)``, and :math:`\\log q(u \\mid x)`,
        shape ``(S, B)``."""
        num_samples = _check_positive_int("num_samples", num_samples)
        x, low, high = self._cell_bounds(x)
        w = torch.rand((num_samples, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        u = (self.marginals.icdf(low + w * (high - low)) - x).clamp(0, 1)
        return u, self.log_density(x + u) - torch.log(high - low).sum(-1)
