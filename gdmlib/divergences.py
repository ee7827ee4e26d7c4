r"""Divergences between probability distributions: KL, Jensen–Shannon, total variation.

Used in chapters 01 to 05.

Two families of functions:

- :func:`kl`, :func:`jsd` and :func:`tv` take two **univariate** ``torch.distributions`` objects and
  integrate numerically, in float64, to about 1e-9. They work in log space: the integrand
  :math:`p(x) \log \frac{p(x)}{q(x)}` is formed from :math:`\log p(x) - \log q(x)`, never from the
  ratio of two densities that underflow, so :math:`\mathrm{KL}(\mathcal{N}(0, 1) \,\|\,
  \mathcal{N}(3, 0.5^2)) = 18.806853` comes out right where a naive integral returns ``inf``.
- :func:`kl_mc`, :func:`jsd_mc` and :func:`tv_mc` estimate the same quantities by Monte Carlo in any
  dimension and return an :class:`Estimate` with its standard error.

All values are in nats.

.. math::
    \mathrm{KL}(p \,\|\, q) = \int p \log \frac{p}{q}, \qquad
    \mathrm{JSD}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
    \quad m = \tfrac12 (p + q), \qquad
    \mathrm{TV}(p, q) = \sup_A |P(A) - Q(A)| = \tfrac12 \int |p - q|.

Example:
    >>> from torch.distributions import Normal
    >>> round(kl(Normal(0.0, 1.0), Normal(3.0, 0.5)), 6)
    18.806853
    >>> round(tv(Normal(0.0, 1.0), Normal(1.0, 1.0)), 6)  # 2 Phi(1/2) - 1
    0.382925

References:
    Cover & Thomas (2006). Elements of Information Theory, 2nd ed. Wiley.

    Lin (1991). Divergence measures based on the Shannon entropy. IEEE Trans. Inf. Theory 37(1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.distributions import Distribution, MixtureSameFamily, constraints

from gdmlib._checks import check_positive_int, check_seed
from gdmlib.estimate import Estimate, _mean_se_tensor

__all__ = ["Estimate", "NormalFit", "fit_normal", "jsd", "jsd_mc", "kl", "kl_mc", "tv", "tv_mc"]

# Gauss–Legendre rule used on every panel of the integration grid.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
# Panels span this many scales either side of each location; beyond it, panels grow geometrically
# so heavy tails (Cauchy) are integrated too.
_CORE_HALF_WIDTH = 20.0
_CORE_STEP = 1.0
_TAIL_DOUBLINGS = 40
# KL is declared infinite when, on an unbounded side of p's support, the integral over the outer
# half of the integration range is at least this fraction of that over the quarter before it and
# not negligible: a convergent integrand decays at least like 1/x^2 there (ratio 1/2 per doubling),
# while E_p[log p/q] = inf for heavy-tailed p and light-tailed q grows (Cauchy || Normal: ratio 2).
_DIVERGENT_TAIL_RATIO = 0.9
_DIVERGENT_TAIL_FLOOR = 1e-6


# ---------------------------------------------------------------------------------------------
# Quadrature for univariate distributions
# ---------------------------------------------------------------------------------------------


def _check_univariate(*dists: Distribution) -> None:
    for name, dist in zip("pq", dists):
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"{name} must be a torch.distributions.Distribution, got {type(dist).__name__}"
            )
        if tuple(dist.event_shape) != () or tuple(dist.batch_shape) != ():
            raise ValueError(
                f"{name} must be univariate with no batch (event_shape () and batch_shape ()), got "
                f"event_shape {tuple(dist.event_shape)} and batch_shape {tuple(dist.batch_shape)}; "
                "use the Monte Carlo estimators (kl_mc, jsd_mc, tv_mc) in higher dimension"
            )


def _support_bounds(dist: Distribution) -> tuple[float, float]:
    """Lower and upper end of the support (infinite when unbounded)."""
    support = dist.support
    while isinstance(support, constraints.independent):  # pragma: no cover - univariate only
        support = support.base_constraint
    lower = getattr(support, "lower_bound", -math.inf)
    upper = getattr(support, "upper_bound", math.inf)
    lower = float(lower) if not torch.is_tensor(lower) else float(lower.double())
    upper = float(upper) if not torch.is_tensor(upper) else float(upper.double())
    if support is constraints.positive or support is constraints.nonnegative:
        lower = 0.0
    return lower, upper


def _locations_and_scales(dist: Distribution) -> list[tuple[float, float]]:
    """Where the distribution's mass lies: (centre, scale) pairs, one per mixture component."""
    if isinstance(dist, MixtureSameFamily):
        components = dist.component_distribution
    else:
        components = dist
    try:
        probs = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
        shape = (3,) + (1,) * len(components.batch_shape)
        probs = probs.reshape(shape).to(
            device=_param_device(components), dtype=_param_dtype(components)
        )
        quartiles = components.icdf(probs).cpu()
        quartiles = quartiles.double().reshape(3, -1)
        centres = quartiles[1]
        scales = (quartiles[2] - quartiles[0]) / 1.349  # interquartile range of N(0, 1)
    except (NotImplementedError, AttributeError, ValueError, RuntimeError):
        try:
            centres = components.mean.double().reshape(-1).cpu()
            scales = components.stddev.double().reshape(-1).cpu()
        except (NotImplementedError, AttributeError) as error:
            raise TypeError(
                f"cannot tell where {type(dist).__name__} has its mass: it implements neither icdf "
                "nor mean and stddev"
            ) from error
    pairs = []
    for centre, scale in zip(centres.tolist(), scales.tolist()):
        if math.isfinite(centre) and math.isfinite(scale) and scale > 0:
            pairs.append((centre, scale))
    if not pairs:
        raise ValueError(
            f"{type(dist).__name__} has no finite location and positive scale to integrate around"
        )
    return pairs


def _param_tensors(dist: Distribution) -> list[torch.Tensor]:
    """The floating-point parameter tensors of a distribution and of the ones it wraps."""
    found: list[torch.Tensor] = []
    for value in vars(dist).values():
        if torch.is_tensor(value) and value.is_floating_point():
            found.append(value)
        elif isinstance(value, Distribution):
            found.extend(_param_tensors(value))
    return found


def _param_dtype(dist: Distribution) -> torch.dtype:
    tensors = _param_tensors(dist)
    return tensors[0].dtype if tensors else torch.get_default_dtype()


def _param_device(dist: Distribution) -> torch.device:
    tensors = _param_tensors(dist)
    return tensors[0].device if tensors else torch.device("cpu")


def _breakpoints(p: Distribution, q: Distribution) -> np.ndarray:
    """Panel edges: fine around every location of p and q, geometric in the tails, clipped to p's
    support."""
    lower, upper = _support_bounds(p)
    points = [lower, upper]
    for dist in (p, q):
        points.extend(_support_bounds(dist))
        for centre, scale in _locations_and_scales(dist):
            core = centre + scale * np.arange(
                -_CORE_HALF_WIDTH, _CORE_HALF_WIDTH + _CORE_STEP, _CORE_STEP
            )
            tail = scale * _CORE_HALF_WIDTH * 2.0 ** np.arange(1, _TAIL_DOUBLINGS + 1)
            points.extend(core)
            points.extend(centre + tail)
            points.extend(centre - tail)
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points) & (points >= lower) & (points <= upper)]
    return np.unique(points)


def _nodes(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on every panel between consecutive edges."""
    left, right = edges[:-1, None], edges[1:, None]
    half = (right - left) / 2
    x = left + half * (_GL_NODES[None, :] + 1)
    w = half * _GL_WEIGHTS[None, :]
    return x.reshape(-1), w.reshape(-1)


def _log_density(dist: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log p(x) in float64 for float64 x, −inf outside the support (where log_prob may raise
    instead)."""
    # Evaluate in float64 even for float32 parameters: type promotion upcasts them, and log
    # densities of far-apart narrow components stay finite instead of overflowing to -inf.
    # The nodes live on the CPU; a distribution on a GPU is evaluated there and brought back
    # (MPS has no float64, so it computes in float32).
    device = _param_device(dist)
    x_dist = x.to(device=device, dtype=torch.float32 if device.type == "mps" else x.dtype)
    inside = dist.support.check(x_dist)
    if not bool(inside.any()):
        return torch.full_like(x, -math.inf)
    safe = torch.where(inside, x_dist, x_dist[inside][0])
    log_p = dist.log_prob(safe)
    log_p = torch.where(inside, log_p, torch.full_like(log_p, -math.inf))
    return log_p.to(device=x.device, dtype=torch.float64)


def _tail_diverges(
    x: torch.Tensor, contributions: torch.Tensor, centre: float, side: float
) -> bool:
    """Whether the integral's contributions on one side (``side`` = +1 or -1) grow with the
    distance."""
    distance = side * (x - centre)
    reach = float(distance.max())
    if not reach > 0:
        return False
    outer = float(contributions[(distance > reach / 2)].sum())
    inner = float(contributions[(distance > reach / 4) & (distance <= reach / 2)].sum())
    return outer > _DIVERGENT_TAIL_FLOOR and outer >= _DIVERGENT_TAIL_RATIO * inner


def _expectation(
    p: Distribution,
    q: Distribution,
    integrand: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    extra: np.ndarray | None = None,
    check_tails: bool = False,
) -> float:
    r"""Compute :math:`\int p(x)\, g(\log p(x), \log q(x))\, dx` by Gauss–Legendre panels.

    Terms where :math:`p(x) = 0` contribute zero whatever :math:`g` is (the convention
    :math:`0 \log 0 = 0`); an infinite :math:`g` where :math:`p > 0` makes the result infinite.
    With ``check_tails``, an integral whose contributions grow towards an unbounded end of p's
    support (the panels reach 2^40 scales out) is infinite too.
    """
    edges = _breakpoints(p, q)
    if extra is not None and extra.size:
        edges = np.unique(np.concatenate([edges, extra]))
    x, w = _nodes(edges)
    x_t = torch.from_numpy(x)
    log_p = _log_density(p, x_t)
    log_q = _log_density(q, x_t)
    values = integrand(log_p, log_q)
    has_mass = log_p > -math.inf
    if bool((torch.isinf(values) & (values > 0) & has_mass).any()):
        return math.inf
    terms = torch.where(has_mass, torch.exp(log_p) * values, torch.zeros_like(values))
    contributions = torch.from_numpy(w) * terms
    if check_tails:
        lower, upper = _support_bounds(p)
        centre = _locations_and_scales(p)[0][0]
        for side, bound in ((1.0, upper), (-1.0, lower)):
            if math.isinf(bound) and _tail_diverges(x_t, contributions, centre, side):
                return math.inf
    return float(contributions.sum())


def _kl_integrand(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return log_p - log_q


def kl(p: Distribution, q: Distribution) -> float:
    r"""Kullback–Leibler divergence
    :math:`\mathrm{KL}(p \,\|\, q) = \int p(x) \log \frac{p(x)}{q(x)}\, dx`.

    Args:
        p: A univariate distribution with ``log_prob`` (and ``icdf`` or ``mean``/``stddev``, used to
            place the quadrature nodes; mixtures are placed component by component).
        q: Another univariate distribution.

    Returns:
        The divergence in nats, a Python float; ``math.inf`` when p puts mass where q has none,
        or when p's tails are too heavy for q's (the integrand's contributions grow towards an
        unbounded end of the support: :math:`\mathrm{KL}(\text{Cauchy} \,\|\, \mathcal{N}) =
        \infty`, while :math:`\mathrm{KL}(\mathcal{N} \,\|\, \text{Cauchy})` is finite).

    Raises:
        TypeError: If p or q is not a ``torch.distributions.Distribution``.
        ValueError: If p or q is not univariate.

    Example:
        >>> from torch.distributions import Normal, Uniform
        >>> round(kl(Normal(0.0, 1.0), Normal(1.0, 2.0)), 6)  # log 2 + (1 + 1) / 8 - 1/2
        0.443147
        >>> kl(Uniform(0.0, 2.0), Uniform(0.0, 1.0))
        inf
        >>> from torch.distributions import Cauchy
        >>> kl(Cauchy(0.0, 1.0), Normal(0.0, 1.0)), round(kl(Normal(0.0, 1.0), Cauchy(0.0, 1.0)), 6)
        (inf, 0.259244)
    """
    _check_univariate(p, q)
    return max(_expectation(p, q, _kl_integrand, check_tails=True), 0.0)


def jsd(p: Distribution, q: Distribution) -> float:
    r"""Jensen–Shannon divergence, in nats: between 0 and :math:`\log 2`.

    .. math::
        \mathrm{JSD}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
        \qquad m = \tfrac12 (p + q),

    with :math:`\log m = \operatorname{logaddexp}(\log p, \log q) - \log 2`.

    Args:
        p: A univariate distribution.
        q: Another univariate distribution.

    Returns:
        The divergence in nats, a Python float in :math:`[0, \log 2]`.

    Example:
        >>> from torch.distributions import Uniform
        >>> round(jsd(Uniform(0.0, 1.0), Uniform(2.0, 3.0)), 6)  # disjoint supports: log 2
        0.693147
    """
    _check_univariate(p, q)

    def half_kl_to_mixture(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
        log_m = torch.logaddexp(log_a, log_b) - math.log(2.0)
        return log_a - log_m

    value = 0.5 * _expectation(p, q, half_kl_to_mixture) + 0.5 * _expectation(
        q, p, half_kl_to_mixture
    )
    return min(max(value, 0.0), math.log(2.0))


def _crossings(p: Distribution, q: Distribution) -> np.ndarray:
    """Points where log p − log q changes sign, refined by bisection: kinks of |p − q|."""
    edges = np.unique(np.concatenate([_breakpoints(p, q), _breakpoints(q, p)]))
    x, _ = _nodes(edges)
    x = np.unique(np.concatenate([edges, x]))
    x_t = torch.from_numpy(x)
    diff = _log_density(p, x_t) - _log_density(q, x_t)
    sign = torch.sign(torch.nan_to_num(diff, nan=0.0))
    change = (sign[:-1] * sign[1:] < 0).nonzero().reshape(-1)
    if change.numel() == 0:
        return np.empty(0)
    lo, hi = x_t[change].clone(), x_t[change + 1].clone()
    sign_lo = sign[change]
    for _ in range(48):  # halves a panel (at most one scale wide) down to ~1e-14 of it
        mid = (lo + hi) / 2
        d = _log_density(p, mid) - _log_density(q, mid)
        same = torch.sign(d) == sign_lo
        lo = torch.where(same, mid, lo)
        hi = torch.where(same, hi, mid)
    return ((lo + hi) / 2).numpy()


def tv(p: Distribution, q: Distribution) -> float:
    r"""Total variation distance :math:`\sup_A |P(A) - Q(A)| = \tfrac12 \int |p - q|`, in
    :math:`[0, 1]`.

    Computed as :math:`\int p \,(1 - q/p)_+` with :math:`q/p = \exp(\log q - \log p)`, on panels
    that break where :math:`p = q` so the kink of :math:`|p - q|` does not cost accuracy.

    Args:
        p: A univariate distribution.
        q: Another univariate distribution.

    Returns:
        The distance, a Python float in :math:`[0, 1]`.

    Example:
        >>> from torch.distributions import Uniform
        >>> round(tv(Uniform(0.0, 1.0), Uniform(0.5, 1.5)), 6)
        0.5
    """
    _check_univariate(p, q)

    def excess(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        return torch.clamp(-torch.expm1(log_q - log_p), min=0.0)

    value = _expectation(p, q, excess, extra=_crossings(p, q))
    return min(max(value, 0.0), 1.0)


# ---------------------------------------------------------------------------------------------
# Monte Carlo estimators, any dimension
# ---------------------------------------------------------------------------------------------


def _check_mc(p: Distribution, q: Distribution, n: int, seed: int | None) -> None:
    for name, dist in zip("pq", (p, q)):
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"{name} must be a torch.distributions.Distribution, got {type(dist).__name__}"
            )
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ValueError(
            f"p and q must have the same event_shape, got {tuple(p.event_shape)} and "
            f"{tuple(q.event_shape)}"
        )
    if tuple(p.batch_shape) != () or tuple(q.batch_shape) != ():
        raise ValueError("p and q must have batch_shape (); got a batch of distributions")
    check_positive_int("n", n, minimum=2)
    check_seed(seed)


def _sample(dist: Distribution, n: int, seed: int | None) -> torch.Tensor:
    if seed is None:
        return dist.sample((n,))
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return dist.sample((n,))


def kl_mc(
    p: Distribution, q: Distribution, n: int = 10_000, *, seed: int | None = None
) -> Estimate:
    r"""Monte Carlo estimate of
    :math:`\mathrm{KL}(p \,\|\, q) = \mathbb{E}_{x \sim p}[\log p(x) - \log q(x)]`.

    Args:
        p: A distribution with ``sample`` and ``log_prob``, of any event shape.
        q: A distribution with ``log_prob`` and the same event shape.
        n: Number of samples from p.
        seed: Seed of the samples, a non-negative int (the global random state is left
            untouched); ``None`` draws from the global state.

    Returns:
        The :class:`Estimate` (value and standard error). An infinite value means a sample of p fell
        where q has no density.

    Raises:
        TypeError: If p or q is not a distribution, ``n`` not an int or ``seed`` not an int
            (``seed=1.5`` is refused, not truncated).
        ValueError: If the event shapes differ, a distribution is batched, ``n < 2`` or
            ``seed < 0``.

    Example:
        >>> from torch.distributions import MultivariateNormal
        >>> p = MultivariateNormal(torch.zeros(3), torch.eye(3))
        >>> q = MultivariateNormal(torch.ones(3), torch.eye(3))
        >>> est = kl_mc(p, q, 20_000, seed=0)  # exact value 3/2
        >>> abs(est.value - 1.5) < 4 * est.stderr
        True
    """
    _check_mc(p, q, n, seed)
    x = _sample(p, n, seed)
    return _mean_se_tensor(p.log_prob(x) - q.log_prob(x))


def jsd_mc(
    p: Distribution, q: Distribution, n: int = 10_000, *, seed: int | None = None
) -> Estimate:
    r"""Monte Carlo estimate of the Jensen–Shannon divergence, n samples from each of p and q.

    .. math::
        \mathrm{JSD}(p, q) = \tfrac12 \mathbb{E}_p\!\left[\log \tfrac{p}{m}\right]
        + \tfrac12 \mathbb{E}_q\!\left[\log \tfrac{q}{m}\right], \qquad m = \tfrac12 (p + q).

    The two halves are independent, so the standard error is
    :math:`\tfrac12 \sqrt{s_p^2 + s_q^2}` from the halves' own standard errors.
    """
    _check_mc(p, q, n, seed)
    seed_q = None if seed is None else seed + 1
    x, y = _sample(p, n, seed), _sample(q, n, seed_q)
    log_m_x = torch.logaddexp(p.log_prob(x), q.log_prob(x)) - math.log(2.0)
    log_m_y = torch.logaddexp(p.log_prob(y), q.log_prob(y)) - math.log(2.0)
    mean_p, se_p = _mean_se_tensor(p.log_prob(x) - log_m_x)
    mean_q, se_q = _mean_se_tensor(q.log_prob(y) - log_m_y)
    return Estimate(0.5 * (mean_p + mean_q), 0.5 * math.hypot(se_p, se_q))


def tv_mc(
    p: Distribution, q: Distribution, n: int = 10_000, *, seed: int | None = None
) -> Estimate:
    r"""Monte Carlo estimate of the total variation distance, :math:`\mathbb{E}_p[(1 - q/p)_+]`.

    Example:
        >>> from torch.distributions import MultivariateNormal
        >>> p = MultivariateNormal(torch.zeros(2), torch.eye(2))
        >>> est = tv_mc(p, p, 1_000, seed=0)
        >>> est.value, est.stderr
        (0.0, 0.0)
    """
    _check_mc(p, q, n, seed)
    x = _sample(p, n, seed)
    ratio_excess = torch.clamp(-torch.expm1(q.log_prob(x) - p.log_prob(x)), min=0.0)
    return _mean_se_tensor(ratio_excess)


# ---------------------------------------------------------------------------------------------
# Fitting a Gaussian by minimising a divergence
# ---------------------------------------------------------------------------------------------

FitObjective = Literal["forward_kl", "reverse_kl", "jsd"]
_OBJECTIVES = ("forward_kl", "reverse_kl", "jsd")
# E_{z ~ N(0,1)} f(z) on Gauss–Legendre panels over |z| <= 40. (A Gauss–Hermite rule converges
# slowly here: log pi of a two-mode mixture has complex singularities close to the real axis.)
_STD_NODES, _STD_WEIGHTS = _nodes(
    np.arange(-_CORE_HALF_WIDTH, _CORE_HALF_WIDTH + _CORE_STEP, _CORE_STEP)
)
_STD_WEIGHTS = _STD_WEIGHTS * np.exp(-0.5 * _STD_NODES**2) / math.sqrt(2 * math.pi)


class NormalFit(NamedTuple):
    """The Gaussian :math:`\\mathcal{N}(\\text{loc}, \\text{scale}^2)` found by :func:`fit_normal`.

    Attributes:
        loc: Its mean.
        scale: Its standard deviation.
        value: The divergence at the fit, in nats.
    """

    loc: float
    scale: float
    value: float


def fit_normal(
    target: Distribution,
    objective: FitObjective,
    *,
    init: tuple[float, float] = (0.0, 1.0),
    loc: float | None = None,
) -> NormalFit:
    r"""Fit :math:`q = \mathcal{N}(m, s^2)` to a univariate target :math:`\pi` by minimising a
    divergence.

    .. math::
        \text{forward\_kl}: \mathrm{KL}(\pi \,\|\, q), \qquad
        \text{reverse\_kl}: \mathrm{KL}(q \,\|\, \pi), \qquad
        \text{jsd}: \mathrm{JSD}(q, \pi).

    Expectations under :math:`\pi` use the same fixed panels as :func:`kl`; expectations under
    :math:`q` use Gauss–Legendre panels in the standardised variable :math:`z`, at
    :math:`m + s z_i`, so the objective is smooth in :math:`(m, \log s)` and minimised by L-BFGS.
    This is a *local* search from ``init``: the reverse KL and the JSD can have several local
    minima (mode seeking), so compare fits from several starts.

    Args:
        target: A univariate distribution (the data :math:`\pi`).
        objective: ``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"``.
        init: Starting mean and standard deviation.
        loc: If given, the mean is held at this value and only the scale is fitted (a profile of the
            objective along the mean).

    Returns:
        The :class:`NormalFit`.

    Raises:
        TypeError: If ``init`` is not a pair of numbers or ``loc`` not a number.
        ValueError: For an unknown objective, a non-finite ``init`` or ``loc``, a non-positive
            initial scale, a non-univariate target, or a search that ends on NaN.

    Example:
        >>> from torch.distributions import Normal
        >>> fit = fit_normal(Normal(1.0, 2.0), "forward_kl")
        >>> round(fit.loc, 6), round(fit.scale, 6), abs(fit.value) < 1e-6
        (1.0, 2.0, True)
    """
    _check_univariate(target, target)
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise TypeError(f"init must be a pair (mean, standard deviation), got {init!r}")
    for name, value in (
        ("init[0] (the initial mean)", init[0]),
        ("init[1] (the initial scale)", init[1]),
        ("loc", 0.0 if loc is None else loc),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not init[1] > 0:
        raise ValueError(f"the initial scale must be positive, got {init[1]}")

    x, w = _nodes(_breakpoints(target, target))
    x_pi = torch.from_numpy(x)
    log_pi_at_x = _log_density(target, x_pi)
    weight_pi = torch.from_numpy(w) * torch.exp(log_pi_at_x)
    # Nodes whose weight is below 1e-40 of the largest change no digit of the result: drop them
    # (most of the tail panels), which makes every L-BFGS step several times cheaper.
    keep = weight_pi > 1e-40 * weight_pi.max()
    x_pi, log_pi_at_x, weight_pi = x_pi[keep], log_pi_at_x[keep], weight_pi[keep]
    keep_q = torch.from_numpy(_STD_WEIGHTS > 1e-40 * _STD_WEIGHTS.max())
    z = torch.from_numpy(_STD_NODES)[keep_q]
    weight_q = torch.from_numpy(_STD_WEIGHTS)[keep_q]
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log_q(points: torch.Tensor, m: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((points - m) / torch.exp(log_s)) ** 2 - log_s - half_log_2pi

    def divergence(m: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        if objective == "forward_kl":
            return (weight_pi * (log_pi_at_x - log_q(x_pi, m, log_s))).sum()
        x_q = m + torch.exp(log_s) * z
        log_q_at_q = -0.5 * z**2 - log_s - half_log_2pi
        log_pi_at_q = _log_density(target, x_q)
        if objective == "reverse_kl":
            return (weight_q * (log_q_at_q - log_pi_at_q)).sum()
        log_m_at_q = torch.logaddexp(log_q_at_q, log_pi_at_q) - math.log(2.0)
        log_m_at_pi = torch.logaddexp(log_q(x_pi, m, log_s), log_pi_at_x) - math.log(2.0)
        return (
            0.5 * (weight_q * (log_q_at_q - log_m_at_q)).sum()
            + 0.5 * (weight_pi * (log_pi_at_x - log_m_at_pi)).sum()
        )

    m0 = float(init[0]) if loc is None else float(loc)
    params = torch.tensor([m0, math.log(init[1])], dtype=torch.float64, requires_grad=True)
    fixed_loc = torch.tensor(m0, dtype=torch.float64)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        m = params[0] if loc is None else fixed_loc
        value = divergence(m, params[1])
        value.backward()
        return value

    optimizer = torch.optim.LBFGS(
        [params],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-11,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(closure)
    with torch.no_grad():
        m = params[0] if loc is None else fixed_loc
        value = float(divergence(m, params[1]))
        fit = NormalFit(float(m), float(torch.exp(params[1])), value)
    if not all(math.isfinite(number) for number in fit[:2]) or math.isnan(fit.value):
        raise ValueError(
            f"fit_normal({objective!r}) did not converge from init={tuple(init)}: got {fit}; "
            "start closer to the target's mass or with a larger scale"
        )
    return fit
