r"""Optimal transport: exact discrete OT, closed forms, Sinkhorn, the Kantorovich–Rubinstein dual.

For two discrete measures :math:`\mu = \sum_{i=1}^n a_i \delta_{x_i}` and
:math:`\nu = \sum_{j=1}^m b_j \delta_{y_j}` on :math:`\mathbb{R}^d` (weights :math:`a, b \ge 0`
summing to one, uniform when not given) and :math:`p \ge 1`, the :math:`p`-Wasserstein distance is

.. math::
    W_p(\mu, \nu)
    = \Big( \min_{P \in \Pi(a, b)} \sum_{i, j} P_{ij} \lVert x_i - y_j \rVert^p \Big)^{1/p},
    \qquad \Pi(a, b)
    = \{ P \in \mathbb{R}_+^{n \times m} : P \mathbf{1} = a,\ P^\top \mathbf{1} = b \}.

- :func:`wasserstein` solves this linear programme exactly (POT's network simplex) and returns
  :math:`W_p`, not :math:`W_p^p`.
- :func:`wasserstein_1d` uses the quantile formula of the real line,
  :math:`W_p^p = \int_0^1 \lvert F^{-1}(t) - G^{-1}(t) \rvert^p \, dt`.
- :func:`gaussian_w2` is the closed form of :math:`W_2` between two Gaussians.
- :func:`sinkhorn` solves the entropy-regularised problem in the log domain, batched, on any device.
- :func:`kr_dual` solves the Kantorovich–Rubinstein dual linear programme of :math:`W_1` and returns
  the optimal 1-Lipschitz potential.
- :func:`coupling_through_latent` solves the transport problem of a deterministic decoder over
  couplings of data and latent (Theorem 1 of the Wasserstein autoencoder), and
  :func:`stochastic_decoder_bound` both sides of :math:`W_c \le W_c^\dagger` for a stochastic
  decoder (chapter 9).
- :func:`energy_distance` is the unbiased estimator of the energy distance, a differentiable
  alternative with unbiased sample gradients (the Cramér-GAN critique of minibatch Wasserstein).

Devices and dtypes. Every function takes tensors on any device and returns tensors on that device
and in that dtype. The exact solvers (:func:`wasserstein`, :func:`kr_dual`) run on the CPU in
float64: the cost matrix is built on the inputs' device in float64, copied to the CPU for the
solver, and the result is rebuilt on the inputs' device from the optimal plan, so it keeps its
device and its gradient (unlike ``ot.emd2`` with CUDA tensors, POT issue #679, which returns a CPU
tensor).

Example:
    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> y = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    >>> float(wasserstein(x, y, p=2))
    2.0
    >>> round(float(sinkhorn(x, y, eps=0.01)), 4)  # cost <P, C> with C = |x - y|^2, near W_2^2 = 4
    4.0
    >>> result = kr_dual(x, y)
    >>> round(result.value, 6), result.potential.shape
    (2.0, torch.Size([4]))

References:
    Villani (2009). Optimal Transport: Old and New. Springer.

    Peyré & Cuturi (2019). Computational optimal transport. Foundations and Trends in Machine
    Learning 11(5-6).

    Bonneel, van de Panne, Paris & Heidrich (2011). Displacement interpolation using Lagrangian mass
    transport. ACM Transactions on Graphics 30(6).

    Flamary et al. (2021). POT: Python Optimal Transport. JMLR 22(78).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gdmlib._checks import check_positive_int, check_positive_number, check_same_dtype_and_device

__all__ = [
    "DecoderBound",
    "KRDual",
    "LatentCoupling",
    "SinkhornConvergenceWarning",
    "coupling_through_latent",
    "energy_distance",
    "gaussian_w2",
    "kr_dual",
    "sinkhorn",
    "stochastic_decoder_bound",
    "wasserstein",
    "wasserstein_1d",
]

# POT's default of 1e5 network-simplex pivots stops short of the optimum from about 3000 points per
# side; the solver ends far sooner on any problem this library meets, so the cap only guards loops.
_EMD_MAX_ITER = 2_000_000_000
# kr_dual writes one constraint per ordered pair of support points: 1000 points is a million rows.
_KR_MAX_SUPPORT = 1000
# On a GPU, reading the Sinkhorn stopping criterion synchronises with the host: read it this often.
_SINKHORN_CHECK_EVERY_CUDA = 10
# torch's CPU exp takes a slow path when its result underflows (measured: 20 times slower in
# float32 on exponents below -87). Log-sum-exp terms this far below the largest one cannot change
# the sum in that precision (n e^-80 is 1e-26 relative for n = 1e9), so exponents are clamped here.
_EXP_FLOOR = {torch.float32: -80.0, torch.bfloat16: -80.0, torch.float64: -700.0}


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if not torch.isfinite(value.detach()).all():
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return value


def _check_point_clouds(x: Tensor, y: Tensor, *, batched: bool = False) -> tuple[Tensor, Tensor]:
    """Validate two point clouds and return them as (n, d) and (m, d), or (B, n, d) and
    (B, m, d)."""
    x, y = _check_tensor("x", x), _check_tensor("y", y)
    allowed = (1, 2, 3) if batched else (1, 2)
    expected = "(n, d), (n,) for points on the line" + (
        ", or (B, n, d) for a batch" if batched else ""
    )
    for name, points in (("x", x), ("y", y)):
        if points.dim() not in allowed:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(points.shape)}")
    check_same_dtype_and_device(x, y)
    if x.dim() != y.dim():
        raise ValueError(
            "x and y must both be batched or both unbatched, "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.dim() == 1:
        x, y = x.unsqueeze(-1), y.unsqueeze(-1)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x and y must have the same dimension d, got {x.shape[-1]} and {y.shape[-1]}"
        )
    if x.dim() == 3 and x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[-2] == 0 or y.shape[-2] == 0:
        raise ValueError(
            f"x and y need at least one point each, got {x.shape[-2]} and {y.shape[-2]}"
        )
    return x, y


def _check_weights(
    name: str, weights: Tensor | None, shape: torch.Size, like: Tensor
) -> Tensor | None:
    """Validate a probability vector (or a batch of them) of the given shape on ``like``'s
    device."""
    if weights is None:
        return None
    weights = _check_tensor(name, weights)
    if weights.device != like.device:
        raise ValueError(
            f"{name} must be on the points' device {like.device}, got {weights.device}"
        )
    if weights.shape != shape and weights.shape != shape[-1:]:
        expected = f"{tuple(shape)} or {tuple(shape[-1:])}" if len(shape) > 1 else f"{tuple(shape)}"
        raise ValueError(
            f"{name} must have shape {expected} (one weight per point), got {tuple(weights.shape)}"
        )
    values = weights.detach()
    if (values < 0).any():
        raise ValueError(f"{name} must be non-negative, got a minimum of {float(values.min()):.3g}")
    totals = values.sum(-1)
    # Rounding in the caller's own normalisation stays far below sqrt(machine epsilon).
    tolerance = math.sqrt(torch.finfo(weights.dtype).eps)
    worst = float((totals - 1).abs().max())
    if worst > tolerance:
        raise ValueError(
            f"{name} must sum to 1 (a probability vector), got a sum off by {worst:.3g}; "
            f"normalise it first, e.g. {name} / {name}.sum(-1, keepdim=True)"
        )
    return weights.to(like.dtype)


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number >= 1, got {type(p).__name__}")
    if not (math.isfinite(p) and p >= 1):
        raise ValueError(
            f"p must be a finite number >= 1 (W_p is a distance only for p >= 1), got {p}"
        )
    return float(p)


def _ground_cost(x: Tensor, y: Tensor, p: float) -> Tensor:
    r"""The matrix :math:`\lVert x_i - y_j \rVert^p`, batched if the inputs are."""
    # The matrix-product shortcut of cdist loses all digits of nearby pairs (|x|^2 + |y|^2 - 2 x.y).
    distances = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return distances if p == 1 else distances**p


def _probabilities(weights: Tensor | None, count: int) -> np.ndarray:
    """A float64 probability vector on the CPU, renormalised exactly for the solvers."""
    if weights is None:
        return np.full(count, 1.0 / count)
    values = weights.detach().to(device="cpu", dtype=torch.float64).numpy()
    return values / values.sum()


# ---------------------------------------------------------------------------------------------
# Exact discrete optimal transport
# ---------------------------------------------------------------------------------------------


def wasserstein(
    x: Tensor, y: Tensor, p: float = 1, a: Tensor | None = None, b: Tensor | None = None
) -> Tensor:
    r"""The exact :math:`p`-Wasserstein distance between two weighted point clouds.

    .. math::
        W_p(\mu, \nu) = \Big( \min_{P \in \Pi(a, b)} \sum_{i, j} P_{ij}
        \lVert x_i - y_j \rVert_2^p \Big)^{1/p}

    The linear programme is solved by POT's network simplex (Bonneel et al., 2011) on the CPU in
    float64; for :math:`n = m = 1500` points in the plane it takes about 0.4 s on one CPU core
    (``benchmarks/RESULTS.md``). For uniform weights and equal sizes the problem is an assignment,
    but ``scipy.optimize.linear_sum_assignment`` was measured eight times slower on this Euclidean
    cost (4 s against 0.5 s at :math:`n = 1500`), so it is not used.

    When an input requires a gradient, the result is rebuilt on the inputs' device from the
    support of the optimal plan :math:`P^\star` (at most :math:`n + m - 1` pairs), which makes it
    differentiable: the gradient in :math:`x, y` is that of
    :math:`\sum_{ij} P^\star_{ij} \lVert x_i - y_j \rVert^p` at fixed plan, and the gradient in
    :math:`a, b` is given by the optimal dual potentials (the envelope theorem; both are gradients
    wherever the optimum is unique, and subgradients elsewhere).

    Args:
        x: The support of :math:`\mu`, shape ``(n, d)``, or ``(n,)`` for points on the line.
        y: The support of :math:`\nu`, shape ``(m, d)`` or ``(m,)``, same dtype and device.
        p: The order :math:`p \ge 1`.
        a: The weights of :math:`\mu`, shape ``(n,)``, non-negative, summing to one; uniform when
            ``None``.
        b: The weights of :math:`\nu`, shape ``(m,)``; uniform when ``None``.

    Returns:
        :math:`W_p(\mu, \nu)` as a 0-dim tensor on the inputs' device, in their dtype.

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: If shapes, devices or dimensions do not match, a weight vector is negative or
            does not sum to one, or ``p < 1``.
        RuntimeError: If the network simplex stops before the optimum.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 2.0])
        >>> float(wasserstein(x, x + 0.5))
        0.5
        >>> round(float(wasserstein(x, torch.tensor([1.0]), p=2) ** 2), 4)  # the variance of x
        0.6667

    References:
        Bonneel, van de Panne, Paris & Heidrich (2011). Displacement interpolation using Lagrangian
        mass transport. ACM Transactions on Graphics 30(6).
    """
    x, y = _check_point_clouds(x, y)
    p = _check_p(p)
    a = _check_weights("a", a, x.shape[:1], x)
    b = _check_weights("b", b, y.shape[:1], y)
    import ot as pot  # imported here: POT takes seconds to import and only this function needs it

    cost = _ground_cost(x.detach().double(), y.detach().double(), p).cpu().numpy()
    a_np, b_np = _probabilities(a, x.shape[0]), _probabilities(b, y.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # POT's own non-convergence warning: raised below
        plan, log = pot.emd(a_np, b_np, cost, numItermax=_EMD_MAX_ITER, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"the network simplex did not reach the optimum: {log['warning']}")

    device = x.device
    tracked = [t for t in (x, y, a, b) if t is not None and t.requires_grad]
    if not (tracked and torch.is_grad_enabled()):
        cost_p = torch.tensor(log["cost"], dtype=torch.float64, device=device)
        return cost_p.clamp_min(0).pow(1 / p).to(x.dtype)

    # The plan has at most n + m - 1 non-zero entries: the cost is rebuilt from those alone.
    flat = np.flatnonzero(plan)
    mass = torch.from_numpy(plan.ravel()[flat]).to(device)
    flat_t = torch.from_numpy(flat).to(device)
    rows_t, cols_t = flat_t // plan.shape[1], flat_t % plan.shape[1]
    pair_cost = torch.linalg.vector_norm(x[rows_t].double() - y[cols_t].double(), dim=-1) ** p
    cost_p = (mass * pair_cost).sum()
    # Zero-valued terms whose gradient in the weights is the optimal dual potential.
    for weights, potential in ((a, log["u"]), (b, log["v"])):
        if weights is not None and weights.requires_grad:
            weights64 = weights.double()
            cost_p = (
                cost_p
                + ((weights64 - weights64.detach()) * torch.from_numpy(potential).to(device)).sum()
            )
    return cost_p.clamp_min(0).pow(1 / p).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------------


def _cumulative_levels(values: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sorted values and the cumulative weights at them, the last level exactly one."""
    sorted_values, order = torch.sort(values, dim=-1)
    count = values.shape[-1]
    if weights is None:
        levels = torch.arange(1, count + 1, dtype=values.dtype, device=values.device) / count
        return sorted_values, levels.expand(values.shape)
    levels = torch.cumsum(weights.expand(values.shape).gather(-1, order), dim=-1)
    return sorted_values, levels / levels[..., -1:]


def wasserstein_1d(
    u: Tensor, v: Tensor, p: float = 1, a: Tensor | None = None, b: Tensor | None = None
) -> Tensor:
    r"""The :math:`p`-Wasserstein distance between two weighted samples on the real line.

    On :math:`\mathbb{R}` the optimal plan is the monotone rearrangement, so

    .. math::
        W_p(\mu, \nu)^p = \int_0^1 \big\lvert F_\mu^{-1}(t) - F_\nu^{-1}(t) \big\rvert^p \, dt,

    with :math:`F^{-1}(t) = \inf\{x : F(x) \ge t\}` the quantile functions. For empirical measures
    both are step functions; the integral is an exact finite sum over the merged steps
    (Villani, 2009, Remark 2.19; Peyré & Cuturi, 2019, Remark 2.30). With equal sizes and uniform
    weights it is :math:`\frac1n \sum_i \lvert u_{(i)} - v_{(i)} \rvert^p` over the sorted samples.
    Sample sizes may differ. Differentiable in the samples (and in the weights); batched over
    leading dimensions.

    Args:
        u: Samples of :math:`\mu`, shape ``(..., n)``; leading dimensions index independent
            problems.
        v: Samples of :math:`\nu`, shape ``(..., m)``, the same leading dimensions.
        p: The order :math:`p \ge 1`.
        a: Weights of ``u``, shape ``(..., n)`` or ``(n,)``, non-negative, summing to one over
            the last dimension; uniform when ``None``.
        b: Weights of ``v``, shape ``(..., m)`` or ``(m,)``; uniform when ``None``.

    Returns:
        :math:`W_p`, shape ``(...)`` (0-dim for 1-D inputs), on the inputs' device and dtype.

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: If the leading dimensions differ, a weight vector is invalid, or ``p < 1``.

    Example:
        >>> u = torch.tensor([0.0, 1.0, 3.0])
        >>> round(float(wasserstein_1d(u, u + 2)), 4)
        2.0
        >>> round(float(wasserstein_1d(u, torch.tensor([1.0, 2.0]), p=2)), 4)
        0.9129

    References:
        Villani (2009). Optimal Transport: Old and New. Springer.

        Peyré & Cuturi (2019). Computational optimal transport. Foundations and Trends in
        Machine Learning 11(5-6).
    """
    u, v = _check_tensor("u", u), _check_tensor("v", v)
    p = _check_p(p)
    if u.dim() == 0 or v.dim() == 0:
        raise ValueError(
            f"u and v must have shape (..., n), got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    if u.dtype != v.dtype:
        raise TypeError(f"u and v must have the same dtype, got {u.dtype} and {v.dtype}")
    if u.device != v.device:
        raise ValueError(f"u and v must be on the same device, got {u.device} and {v.device}")
    if u.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            "u and v must have the same leading (batch) dimensions, "
            f"got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    if u.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError(
            f"u and v need at least one sample each, got {u.shape[-1]} and {v.shape[-1]}"
        )
    a = _check_weights("a", a, u.shape, u)
    b = _check_weights("b", b, v.shape, v)

    u_sorted, u_levels = _cumulative_levels(u, a)
    v_sorted, v_levels = _cumulative_levels(v, b)
    # Between two consecutive merged levels both quantile functions are constant: evaluate them at
    # the midpoint, where no rounding of the levels can pick the neighbouring step.
    levels = torch.sort(torch.cat([u_levels, v_levels], dim=-1), dim=-1).values
    widths = torch.diff(levels, dim=-1, prepend=torch.zeros_like(levels[..., :1]))
    midpoints = (levels - widths / 2).contiguous()
    u_index = torch.searchsorted(u_levels.contiguous(), midpoints).clamp_max(u.shape[-1] - 1)
    v_index = torch.searchsorted(v_levels.contiguous(), midpoints).clamp_max(v.shape[-1] - 1)
    gaps = (u_sorted.gather(-1, u_index) - v_sorted.gather(-1, v_index)).abs()
    return (widths * gaps**p).sum(-1).clamp_min(0).pow(1 / p)


def _symmetric_psd(name: str, matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Check a (batch of) covariance matrices; return its eigenvalues (clamped at 0) and vectors."""
    matrix = _check_tensor(name, matrix)
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must have shape (..., d, d), got {tuple(matrix.shape)}")
    values = matrix.detach()
    scale = max(1.0, float(values.abs().max()))
    tolerance = math.sqrt(torch.finfo(matrix.dtype).eps) * scale
    asymmetry = float((values - values.mT).abs().max())
    if asymmetry > tolerance:
        raise ValueError(f"{name} must be symmetric, got |{name} - {name}^T| up to {asymmetry:.3g}")
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.mT) / 2)
    if float(eigenvalues.min()) < -tolerance:
        raise ValueError(
            f"{name} must be positive semi-definite, "
            f"got an eigenvalue of {float(eigenvalues.min()):.3g}"
        )
    return eigenvalues.clamp_min(0), eigenvectors


def gaussian_w2(m1: Tensor, S1: Tensor, m2: Tensor, S2: Tensor, *, squared: bool = False) -> Tensor:
    r"""The 2-Wasserstein distance between two Gaussians, in closed form.

    .. math::
        W_2\big(\mathcal N(m_1, \Sigma_1), \mathcal N(m_2, \Sigma_2)\big)^2
        = \lVert m_1 - m_2 \rVert^2
        + \operatorname{tr}\Big(\Sigma_1 + \Sigma_2
        - 2 \big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}\Big),

    the second term being the squared Bures distance between the covariances (Dowson & Landau,
    1982; Olkin & Pukelsheim, 1982). When the covariances commute it reduces to
    :math:`\lVert m_1 - m_2 \rVert^2 + \lVert \Sigma_1^{1/2} - \Sigma_2^{1/2} \rVert_F^2`. The
    symmetric square roots come from ``torch.linalg.eigh``, with eigenvalues clamped at zero, so
    singular covariances are allowed. Differentiable (the gradient of the square root is infinite
    at a zero eigenvalue of :math:`\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}`, and that of
    :math:`W_2` at :math:`W_2 = 0`: use ``squared=True`` there). Batched over leading dimensions.

    Args:
        m1: Mean of the first Gaussian, shape ``(..., d)``.
        S1: Its covariance, shape ``(..., d, d)``, symmetric positive semi-definite.
        m2: Mean of the second Gaussian, shape ``(..., d)``.
        S2: Its covariance, shape ``(..., d, d)``.
        squared: Return :math:`W_2^2` instead of :math:`W_2`.

    Returns:
        :math:`W_2` (or :math:`W_2^2`), shape ``(...)``, on the inputs' device and dtype.

    Raises:
        TypeError: If an input is not a floating-point tensor or the dtypes differ.
        ValueError: If the shapes do not match, or a covariance is not symmetric positive
            semi-definite.

    Example:
        >>> m = torch.zeros(2)
        >>> shift = torch.tensor([3.0, 0.0])
        >>> # 9 + 2 (2 - 1)^2
        >>> round(float(gaussian_w2(m, torch.eye(2), shift, 4 * torch.eye(2), squared=True)), 4)
        11.0

    References:
        Dowson & Landau (1982). The Fréchet distance between multivariate normal distributions.
        Journal of Multivariate Analysis 12(3).

        Olkin & Pukelsheim (1982). The distance between two random vectors with given dispersion
        matrices. Linear Algebra and its Applications 48.
    """
    m1, m2 = _check_tensor("m1", m1), _check_tensor("m2", m2)
    eigenvalues1, eigenvectors1 = _symmetric_psd("S1", S1)
    _symmetric_psd("S2", S2)
    tensors = {"m1": m1, "S1": S1, "m2": m2, "S2": S2}
    if len({t.dtype for t in tensors.values()}) > 1:
        raise TypeError(
            f"all inputs must have the same dtype, got {[str(t.dtype) for t in tensors.values()]}"
        )
    if len({t.device for t in tensors.values()}) > 1:
        raise ValueError(
            "all inputs must be on the same device, "
            f"got {[str(t.device) for t in tensors.values()]}"
        )
    for mean_name, mean, cov in (("m1", m1, S1), ("m2", m2, S2)):
        if mean.dim() < 1 or mean.shape[-1] != cov.shape[-1]:
            raise ValueError(
                f"{mean_name} must have shape (..., d) with d = {cov.shape[-1]} as its covariance, "
                f"got {tuple(mean.shape)}"
            )
    if S1.shape[-1] != S2.shape[-1]:
        raise ValueError(
            f"the two Gaussians must have the same dimension, got {S1.shape[-1]} and {S2.shape[-1]}"
        )

    root1 = eigenvectors1 @ (eigenvalues1.sqrt().unsqueeze(-1) * eigenvectors1.mT)
    middle = root1 @ S2 @ root1
    middle_eigenvalues = torch.linalg.eigvalsh((middle + middle.mT) / 2).clamp_min(0)
    bures2 = torch.diagonal(S1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(
        S2, dim1=-2, dim2=-1
    ).sum(-1)
    bures2 = bures2 - 2 * middle_eigenvalues.sqrt().sum(-1)
    w2_squared = ((m1 - m2) ** 2).sum(-1) + bures2
    w2_squared = w2_squared.clamp_min(0)  # rounding can leave it a hair below zero
    return w2_squared if squared else w2_squared.sqrt()


# ---------------------------------------------------------------------------------------------
# Entropic optimal transport
# ---------------------------------------------------------------------------------------------


class SinkhornConvergenceWarning(RuntimeWarning):
    """:func:`sinkhorn` stopped at ``n_iters`` with a marginal error above ``tol``.

    The value returned is then the cost of the iterate *rounded onto the marginals* (a feasible
    plan, hence never below the exact optimum); turn the warning into an error with
    ``warnings.simplefilter("error", SinkhornConvergenceWarning)``.
    """


def _round_to_marginals(plan: Tensor, a: Tensor, b: Tensor) -> Tensor:
    r"""The rounding of Altschuler, Weed & Rigollet (2017, Algorithm 2): a plan in
    :math:`\Pi(a, b)`.

    Scale the rows down to at most :math:`a`, then the columns down to at most :math:`b`, and add
    the rank-one correction :math:`e_r e_c^\top / \lVert e_r \rVert_1` of the missing mass. The
    result has the marginals :math:`a, b` exactly (up to rounding) and is non-negative; it differs
    from ``plan`` by at most twice the marginal error in :math:`\ell_1`.
    """
    rows = plan.sum(-1)
    plan = plan * torch.where(rows > a, a / rows, torch.ones_like(rows)).unsqueeze(-1)
    columns = plan.sum(-2)
    plan = plan * torch.where(columns > b, b / columns, torch.ones_like(columns)).unsqueeze(-2)
    missing_rows, missing_columns = a - plan.sum(-1), b - plan.sum(-2)
    total = missing_rows.sum(-1, keepdim=True).unsqueeze(-1)
    correction = missing_rows.unsqueeze(-1) * missing_columns.unsqueeze(-2)
    return plan + torch.where(total > 0, correction / total, torch.zeros_like(correction))


def _logsumexp(exponents: Tensor, dim: int) -> Tensor:
    """``torch.logsumexp`` of a freshly built tensor, which it may overwrite.

    On the CPU the exponents are clamped at :data:`_EXP_FLOOR` below the maximum first.
    """
    floor = _EXP_FLOOR.get(exponents.dtype) if exponents.device.type == "cpu" else None
    if floor is None:
        return torch.logsumexp(exponents, dim=dim)
    # The maximum is a constant shift: its gradient cancels, so it is left out of the graph.
    maximum = exponents.detach().amax(dim, keepdim=True)
    if exponents.requires_grad:
        terms = (exponents - maximum).clamp_min(floor).exp()
    else:
        terms = exponents.sub_(maximum).clamp_(min=floor).exp_()
    return maximum.squeeze(dim) + terms.sum(dim).log()


def sinkhorn(
    x: Tensor,
    y: Tensor,
    eps: float,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    p: float = 2,
    n_iters: int = 1000,
    tol: float = 1e-5,
    return_plan: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Entropic optimal transport by Sinkhorn's algorithm in the log domain, batched, on any
    device.

    With the cost :math:`C_{ij} = \lVert x_i - y_j \rVert^p` (squared Euclidean by default), the
    entropy-regularised problem

    .. math::
        \min_{P \in \Pi(a, b)} \langle P, C \rangle + \varepsilon \sum_{ij} P_{ij}
        \Big(\log \frac{P_{ij}}{a_i b_j} - 1\Big)

    has the solution :math:`P_{ij} = a_i b_j \exp\big((f_i + g_j - C_{ij}) / \varepsilon\big)`,
    whose potentials are found by alternating the exact marginal fits (Cuturi, 2013)

    .. math::
        f_i \leftarrow -\varepsilon \log \sum_j b_j e^{(g_j - C_{ij}) / \varepsilon}, \qquad
        g_j \leftarrow -\varepsilon \log \sum_i a_i e^{(f_i - C_{ij}) / \varepsilon},

    computed as log-sum-exps, shifted by their largest term, so no kernel
    :math:`e^{-C/\varepsilon}` under- or overflows however small :math:`\varepsilon` is (Peyré &
    Cuturi, 2019, Section 4.4; Schmitzer, 2019). (On the CPU, terms more than
    :math:`e^{80}` (float32) or :math:`e^{700}` (float64) below the largest are rounded up to that
    bound, which cannot change the sums in that precision and avoids the slow path of the CPU
    exponential on underflowing results.) After a :math:`g` update the column marginals are exact;
    the iterations stop once the row marginals are within ``tol`` in :math:`\ell_1`, read for free
    from the next :math:`f` update (every 10th iteration on a GPU, to avoid synchronising).

    The returned value is the *transport cost of the entropic plan*, :math:`\langle P_\varepsilon,
    C \rangle`, without the entropy term. As :math:`\varepsilon \to 0` it decreases to the exact
    :math:`\min_P \langle P, C \rangle = W_p^p` (note: the :math:`p`-th power, not :math:`W_p`).
    :math:`\varepsilon` is in the units of the cost (squared distances for ``p=2``): it blurs the
    plan over distances of about :math:`\varepsilon^{1/p}`, and the number of iterations needed
    grows roughly like :math:`1/\varepsilon`.

    Gradients flow through the unrolled iterations (exact for the computed value, at the price of
    storing every iteration's ``(B, n, m)`` matrix: detach the inputs when only the value is
    needed).

    Args:
        x: Source points, ``(n, d)`` or a batch ``(B, n, d)`` (``(n,)`` for points on the line).
        y: Target points, ``(m, d)`` or ``(B, m, d)``, the same dtype, device and batching.
        eps: The regularisation :math:`\varepsilon > 0`.
        a: Source weights, ``(n,)`` or ``(B, n)``, non-negative, summing to one; uniform if
            ``None``.
        b: Target weights, ``(m,)`` or ``(B, m)``; uniform if ``None``.
        p: The exponent of the cost :math:`\lVert x - y \rVert^p`, :math:`p \ge 1`.
        n_iters: The maximum number of (double) iterations.
        tol: Stop when :math:`\lVert P^\top \mathbf 1 - b \rVert_1 <` ``tol`` (for every problem
            of a batch). ``0`` runs exactly ``n_iters`` iterations. In float32 the attainable
            accuracy is about :math:`10^{-7} \max C / \varepsilon`.
        return_plan: Also return the plan :math:`P_\varepsilon`.

    Returns:
        :math:`\langle P_\varepsilon, C \rangle`, shape ``()`` (or ``(B,)`` for a batch), in the
        inputs' dtype and device; with ``return_plan=True`` the pair (cost, plan), the plan of
        shape ``(n, m)`` (or ``(B, n, m)``).

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: On mismatched shapes, devices or batch sizes, invalid weights, ``eps <= 0``,
            ``p < 1``, ``n_iters < 1`` or ``tol < 0``.

    Warns:
        SinkhornConvergenceWarning: A ``RuntimeWarning``, if ``tol > 0`` was not reached within
        ``n_iters`` iterations. The last iterate is then not a transport plan (its column sums
        are off by the marginal error) and its cost can lie *below* the exact optimum, so it is
        not returned: the plan is rounded onto :math:`\Pi(a, b)` (Altschuler, Weed & Rigollet,
        2017, Algorithm 2) and the cost and plan returned are those of the rounded, feasible plan,
        never below :math:`W_p^p`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g) + 1
        >>> exact = float(wasserstein(x, y, p=2)) ** 2
        >>> [round(float(sinkhorn(x, y, eps)) - exact, 3) for eps in (1.0, 0.3, 0.1)]
        [0.688, 0.183, 0.042]

    References:
        Cuturi (2013). Sinkhorn distances: lightspeed computation of optimal transport. NeurIPS.

        Schmitzer (2019). Stabilized sparse scaling algorithms for entropy regularized transport
        problems. SIAM Journal on Scientific Computing 41(3).

        Peyré & Cuturi (2019). Computational optimal transport. Foundations and Trends in
        Machine Learning 11(5-6).

        Altschuler, Weed & Rigollet (2017). Near-linear time approximation algorithms for optimal
        transport via Sinkhorn iteration. NeurIPS, Algorithm 2.
    """
    x, y = _check_point_clouds(x, y, batched=True)
    eps = check_positive_number("eps", eps)
    p = _check_p(p)
    n_iters = check_positive_int("n_iters", n_iters)
    tol = check_positive_number("tol", tol, allow_zero=True)
    if not isinstance(return_plan, bool):
        raise TypeError(f"return_plan must be a bool, got {type(return_plan).__name__}")
    a = _check_weights("a", a, x.shape[:-1], x)
    b = _check_weights("b", b, y.shape[:-1], y)

    unbatched = x.dim() == 2
    if unbatched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    batch, n, m = x.shape[0], x.shape[1], y.shape[1]
    log_a = (a.log() if a is not None else x.new_full((n,), -math.log(n))).expand(batch, n)
    log_b = (b.log() if b is not None else y.new_full((m,), -math.log(m))).expand(batch, m)

    cost = _ground_cost(x, y, p)
    scaled_cost = cost / eps
    # The potentials divided by eps: phi = f / eps, psi = g / eps.
    phi = x.new_zeros(batch, n)
    psi = y.new_zeros(batch, m)
    check_every = 1 if x.device.type == "cpu" else _SINKHORN_CHECK_EVERY_CUDA
    error = math.inf
    # Columns first, as POT does: the same iterates as ot.sinkhorn2(method="sinkhorn_log").
    for iteration in range(n_iters):
        new_psi = -_logsumexp((phi + log_a).unsqueeze(-1) - scaled_cost, dim=-2)
        if tol > 0 and iteration > 0 and (iteration % check_every == 0 or iteration == n_iters - 1):
            with torch.no_grad():
                # The plan of (phi, psi) has column sums b_j exp(psi_j - new_psi_j).
                column_error = (log_b.exp() * torch.expm1(psi - new_psi).abs()).sum(-1)
                error = float(column_error.max())
        psi = new_psi
        phi = -_logsumexp((psi + log_b).unsqueeze(-2) - scaled_cost, dim=-1)
        if error < tol:
            break
    plan = torch.exp(
        phi.unsqueeze(-1)
        + psi.unsqueeze(-2)
        - scaled_cost
        + log_a.unsqueeze(-1)
        + log_b.unsqueeze(-2)
    )
    if tol > 0 and not error < tol:
        # The last iterate violates the column marginals, and its cost can lie below the exact
        # optimum: project it onto Pi(a, b) so that the value returned is that of a feasible plan.
        plan = _round_to_marginals(plan, log_a.exp(), log_b.exp())
        warnings.warn(
            f"sinkhorn did not converge: the marginal error {error:.2e} is above tol={tol:g} after "
            f"n_iters={n_iters} iterations; the plan was rounded onto the marginals (Altschuler et "
            "al. 2017), so the cost is that of a feasible plan, above the exact optimum but not "
            "the entropic one; raise n_iters or eps, or pass tol=0 to run a fixed number of "
            "iterations",
            SinkhornConvergenceWarning,
            stacklevel=2,
        )
    transport_cost = (plan * cost).sum((-2, -1))
    if unbatched:
        transport_cost, plan = transport_cost.squeeze(0), plan.squeeze(0)
    return (transport_cost, plan) if return_plan else transport_cost


# ---------------------------------------------------------------------------------------------
# Kantorovich–Rubinstein duality
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KRDual:
    r"""The solution of the Kantorovich–Rubinstein dual linear programme (:func:`kr_dual`).

    Attributes:
        value: The optimal value, :math:`W_1(\mu, \nu)` (a float: the LP is solved in float64).
        support: The distinct points of both supports, shape ``(N, d)``: the points of ``x`` in
            order, then those of ``y`` not already met (so ``support`` is ``cat([x, y])`` when no
            point repeats), on the inputs' device and dtype.
        potential: The optimal 1-Lipschitz potential :math:`f` on ``support``, shape ``(N,)``,
            normalised by :math:`f(\text{support}_0) = 0`.
        mass: The signed measure :math:`\mu - \nu` on ``support``, shape ``(N,)``, so that
            ``value == (mass * potential).sum()``.
    """

    value: float
    support: Tensor
    potential: Tensor
    mass: Tensor


def kr_dual(x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> KRDual:
    r"""The Kantorovich–Rubinstein dual of :math:`W_1`, solved as a linear programme.

    For discrete measures, the supremum over 1-Lipschitz functions in

    .. math::
        W_1(\mu, \nu) = \sup_{\lVert f \rVert_{L} \le 1} \sum_i a_i f(x_i) - \sum_j b_j f(y_j)

    only involves the values of :math:`f` on the union :math:`\{z_k\}` of the supports, and every
    function that is 1-Lipschitz there extends to a 1-Lipschitz function on :math:`\mathbb{R}^d`
    (McShane, 1934). So :math:`W_1` is the value of the finite linear programme

    .. math::
        \max_{f \in \mathbb{R}^N} \sum_k (\mu - \nu)(z_k)\, f_k
        \quad \text{s.t.} \quad f_k - f_l \le \lVert z_k - z_l \rVert \quad \text{for all } k \ne l,

    solved here by HiGHS (``scipy.optimize.linprog``). Its value equals the primal optimum
    :func:`wasserstein` (strong duality), which a chapter can check to rounding. The programme has
    :math:`N(N-1)` constraints, so it is meant for small supports (at most 1000 points).

    Args:
        x: The support of :math:`\mu`, ``(n, d)`` or ``(n,)``.
        y: The support of :math:`\nu`, ``(m, d)`` or ``(m,)``, same dtype and device.
        a: The weights of :math:`\mu`, ``(n,)``; uniform when ``None``.
        b: The weights of :math:`\nu`, ``(m,)``; uniform when ``None``.

    Returns:
        A :class:`KRDual` with the value, the support and the potential on it.

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: On mismatched shapes or devices, invalid weights, or more than 1000 distinct
            support points.
        RuntimeError: If the LP solver fails.

    Example:
        >>> result = kr_dual(torch.tensor([0.0, 1.0]), torch.tensor([3.0]))
        >>> round(result.value, 6)  # W_1 = (3 + 2) / 2
        2.5
        >>> result.potential.tolist()  # f(z) = -z: slope 1 along the direction mass moves
        [0.0, -1.0, -3.0]

    References:
        Kantorovich & Rubinstein (1958). On a space of completely additive functions. Vestnik
        Leningrad University 13(7).

        McShane (1934). Extension of range of functions. Bulletin of the AMS 40(12).

        Villani (2009). Optimal Transport: Old and New, Remark 6.5. Springer.
    """
    x, y = _check_point_clouds(x, y)
    a = _check_weights("a", a, x.shape[:1], x)
    b = _check_weights("b", b, y.shape[:1], y)
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix
    from scipy.spatial.distance import cdist

    points = torch.cat([x, y]).detach().to(device="cpu", dtype=torch.float64).numpy()
    signed = np.concatenate([_probabilities(a, x.shape[0]), -_probabilities(b, y.shape[0])])
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    # Number the distinct points in order of first appearance, so the support starts with x.
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    keep = np.sort(first)
    support = points[keep]
    mass = np.zeros(len(support))
    np.add.at(mass, rank[inverse.ravel()], signed)
    size = len(support)
    if size > _KR_MAX_SUPPORT:
        raise ValueError(
            f"kr_dual is meant for small problems: the union of the supports has {size} distinct "
            f"points (at most {_KR_MAX_SUPPORT}); use wasserstein(x, y, p=1) for the value of "
            "larger ones"
        )

    if size == 1:
        potential = np.zeros(1)
    else:
        distances = cdist(support, support)
        first_idx, second_idx = np.triu_indices(size, k=1)
        pairs = first_idx.size
        # One row per ordered pair: f_k - f_l <= |z_k - z_l| and f_l - f_k <= |z_k - z_l|.
        row = np.repeat(np.arange(2 * pairs), 2)
        col = np.stack(
            [np.concatenate([first_idx, second_idx]), np.concatenate([second_idx, first_idx])],
            axis=1,
        ).ravel()
        val = np.tile([1.0, -1.0], 2 * pairs)
        constraints = coo_matrix((val, (row, col)), shape=(2 * pairs, size)).tocsr()
        bounds_ub = np.tile(distances[first_idx, second_idx], 2)
        # f is defined up to a constant: pin f(z_0) = 0 so the solution is unique in that direction.
        bounds = [(0.0, 0.0)] + [(None, None)] * (size - 1)
        result = linprog(-mass, A_ub=constraints, b_ub=bounds_ub, bounds=bounds, method="highs")
        if not result.success:
            raise RuntimeError(f"the Kantorovich-Rubinstein LP failed: {result.message}")
        potential = result.x

    value = float(mass @ potential)
    like = {"device": x.device, "dtype": x.dtype}
    return KRDual(
        value=value,
        support=torch.from_numpy(support).to(**like),
        potential=torch.from_numpy(potential).to(**like),
        mass=torch.from_numpy(mass).to(**like),
    )


# ---------------------------------------------------------------------------------------------
# Couplings through a latent space (Wasserstein autoencoders)
# ---------------------------------------------------------------------------------------------


def _emd_plan(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, float]:
    """POT's network simplex on float64 arrays: the optimal plan and its cost, or RuntimeError."""
    import ot as pot  # imported here: POT takes seconds to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT's non-convergence warning: raised below
        plan, log = pot.emd(a, b, cost, numItermax=_EMD_MAX_ITER, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"the network simplex did not reach the optimum: {log['warning']}")
    return plan, float((plan * cost).sum())


@dataclass(frozen=True)
class LatentCoupling:
    r"""The transport problem through a latent space, solved (:func:`coupling_through_latent`).

    Attributes:
        value: :math:`\min_{\pi \in \Pi(a, b)} \sum_{ij} \pi_{ij} \lVert x_i - G(z_j) \rVert^p`
            (a float, solved in float64): :math:`W_p^p(P_X, G_\# P_Z)` by Theorem 1 of the WAE.
        plan: The optimal coupling :math:`\pi` of :math:`(P_X, P_Z)`, shape ``(n, m)``.
        encoder: The optimal encoder :math:`Q(z_j \mid x_i) = \pi_{ij} / a_i`, shape ``(n, m)``
            (rows of zero mass are uniform); its aggregate :math:`\sum_i a_i Q(\cdot \mid x_i)`
            is :math:`b`.
        decoded: The decoder's outputs :math:`G(z_j)`, shape ``(m, d)``.
    """

    value: float
    plan: Tensor
    encoder: Tensor
    decoded: Tensor


def _check_decoded(decoded: object, x: Tensor, m: int) -> Tensor:
    if not isinstance(decoded, Tensor):
        raise TypeError(f"decoder must return a torch.Tensor, got {type(decoded).__name__}")
    expected = (m, x.shape[1])
    if decoded.dim() == 1 and x.shape[1] == 1:
        decoded = decoded.unsqueeze(-1)
    if tuple(decoded.shape) != expected:
        raise ValueError(
            f"decoder must map the {m} latent points to shape {expected} (one point of x's "
            f"dimension per latent point), got {tuple(decoded.shape)}"
        )
    if decoded.dtype != x.dtype or decoded.device != x.device:
        raise TypeError(
            f"decoder must return x's dtype and device ({x.dtype}, {x.device}), got "
            f"({decoded.dtype}, {decoded.device})"
        )
    return _check_tensor("decoder(z)", decoded)


def coupling_through_latent(
    a: Tensor | None,
    x: Tensor,
    b: Tensor | None,
    z: Tensor,
    decoder: Callable[[Tensor], Tensor],
    p: float = 2,
) -> LatentCoupling:
    r"""The transport problem of a deterministic decoder, solved over couplings of data and latent.

    For :math:`P_X = \sum_i a_i \delta_{x_i}`, :math:`P_Z = \sum_j b_j \delta_{z_j}` and a decoder
    :math:`G`, this is the right-hand side of Theorem 1 of Tolstikhin et al. (2018) (Bousquet et
    al. 2017, eq. 10),

    .. math::
        \min_{\pi \in \Pi(a, b)} \sum_{i, j} \pi_{ij}\, \lVert x_i - G(z_j) \rVert^p
        = \min_{Q:\ Q_Z = P_Z} \mathbb{E}_{P_X} \mathbb{E}_{Q(Z \mid X)} \lVert X - G(Z) \rVert^p,

    a linear programme over encoders :math:`Q(z_j \mid x_i) = \pi_{ij} / a_i` whose aggregate is
    the prior. The theorem says that it equals :math:`W_p^p(P_X, G_\# P_Z)`, even when :math:`G`
    is not injective (:func:`wasserstein` on the merged pushforward computes the left side).
    Solved by POT's network simplex in float64 on the CPU; the plan comes back on ``x``'s device.

    Args:
        a: Weights of :math:`P_X`, shape ``(n,)``, non-negative, summing to one; ``None`` for
            uniform.
        x: The data points, ``(n, d)`` or ``(n,)``.
        b: Weights of :math:`P_Z`, shape ``(m,)``; ``None`` for uniform.
        z: The latent points, ``(m, k)`` or ``(m,)``, on ``x``'s device (any floating dtype the
            decoder accepts).
        decoder: :math:`G`, mapping ``z`` to ``(m, d)`` points of ``x``'s dtype and device.
        p: The exponent of the cost :math:`\lVert x - y \rVert^p`, :math:`p \ge 1`.

    Returns:
        A :class:`LatentCoupling` (value :math:`W_p^p`, not :math:`W_p`).

    Raises:
        TypeError: On non-floating inputs, a decoder that is not callable or returns another
            dtype or device.
        ValueError: On mismatched shapes, devices or weights, non-finite values, a decoder output
            of the wrong shape, or ``p < 1``.
        RuntimeError: If the network simplex stops before the optimum.

    Example:
        >>> x = torch.tensor([0.0, 2.0])  # P_X = (delta_0 + delta_2) / 2
        >>> z = torch.tensor([0.0, 1.0, 2.0])  # P_Z uniform on 3 atoms, G = identity
        >>> result = coupling_through_latent(None, x, None, z, lambda z: z, p=2)
        >>> round(result.value, 12)  # = W_2^2(P_X, G#P_Z) = 1/3
        0.333333333333
        >>> [[round(q, 4) for q in row] for row in result.encoder.tolist()]
        [[0.6667, 0.3333, 0.0], [0.0, 0.3333, 0.6667]]

    References:
        Tolstikhin, Bousquet, Gelly & Schölkopf (2018). Wasserstein auto-encoders. ICLR,
        theorem 1.

        Bousquet, Gelly, Tolstikhin, Simon-Gabriel & Schölkopf (2017). From optimal transport to
        generative modeling: the VEGAN cookbook. arXiv:1705.07642, theorem 1.
    """
    x = _check_tensor("x", x)
    z = _check_tensor("z", z)
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if z.dim() not in (1, 2) or x.dim() != 2:
        raise ValueError(
            f"x and z must have shape (n, d) and (m, k), or (n,) and (m,); got {tuple(x.shape)} "
            f"and {tuple(z.shape)}"
        )
    if z.device != x.device:
        raise ValueError(f"x and z must be on the same device, got {x.device} and {z.device}")
    if x.shape[0] == 0 or z.shape[0] == 0:
        raise ValueError(f"x and z need at least one point each, got {x.shape[0]} and {z.shape[0]}")
    if not callable(decoder):
        raise TypeError(f"decoder must be callable (z -> points), got {type(decoder).__name__}")
    p = _check_p(p)
    a = _check_weights("a", a, x.shape[:1], x)
    b = _check_weights("b", b, z.shape[:1], x)
    with torch.no_grad():
        decoded = _check_decoded(decoder(z), x, z.shape[0])
    cost = _ground_cost(x.double(), decoded.double(), p).cpu().numpy()
    a_np, b_np = _probabilities(a, x.shape[0]), _probabilities(b, z.shape[0])
    plan, value = _emd_plan(a_np, b_np, cost)
    rows = plan.sum(1, keepdims=True)
    encoder = np.where(rows > 0, plan / np.where(rows > 0, rows, 1.0), 1.0 / plan.shape[1])
    like = {"device": x.device, "dtype": x.dtype}
    return LatentCoupling(
        value=value,
        plan=torch.from_numpy(plan).to(**like),
        encoder=torch.from_numpy(encoder).to(**like),
        decoded=decoded,
    )


class DecoderBound(NamedTuple):
    r"""The two sides of :math:`W_c(P_X, P_G) \le W_c^\dagger(P_X, P_G)`
    (:func:`stochastic_decoder_bound`).

    Attributes:
        wasserstein: :math:`W_c(P_X, P_G)`, :math:`P_G = \sum_j b_j P_G(\cdot \mid z_j)`.
        upper_bound: :math:`W_c^\dagger`, the transport cost over couplings of
            :math:`(P_X, P_Z)` with the decoder's noise kept independent of :math:`X`.
    """

    wasserstein: float
    upper_bound: float


def stochastic_decoder_bound(
    a: Tensor | None,
    x: Tensor,
    b: Tensor | None,
    kernel: Tensor,
    y: Tensor,
    p: float = 2,
) -> DecoderBound:
    r"""Both sides of the upper bound :math:`W_c \le W_c^\dagger` for a stochastic decoder, exactly.

    A discrete stochastic decoder is a row-stochastic matrix :math:`K_{jl} = P_G(y_l \mid z_j)`
    from the latent atoms (weights :math:`b`) to output atoms :math:`y_l`, so
    :math:`P_G = b^\top K`. With :math:`C_{il} = \lVert x_i - y_l \rVert^p`,

    .. math::
        W_c(P_X, P_G) = \min_{\gamma \in \Pi(a,\, b^\top K)} \langle \gamma, C \rangle
        \;\le\; W_c^\dagger = \min_{\pi \in \Pi(a, b)} \langle \pi, C K^\top \rangle,

    the right side being the infimum of :math:`\mathbb{E}\, c(X, Y)` over the joints of
    :math:`(X, Y, Z)` with :math:`Y \perp X \mid Z` (Bousquet et al. 2017, eq. 9; the inner
    expectation over :math:`Y` is linear in :math:`\pi`). Equality holds for a one-hot :math:`K`
    (a deterministic decoder, Theorem 1). Both linear programmes are solved in float64.

    Args:
        a: Weights of :math:`P_X`, ``(n,)``; ``None`` for uniform.
        x: Data points, ``(n, d)`` or ``(n,)``.
        b: Weights of :math:`P_Z`, ``(m,)``; ``None`` for uniform.
        kernel: :math:`K`, shape ``(m, k)``, non-negative, rows summing to one.
        y: Output atoms, ``(k, d)`` or ``(k,)``, same dtype and device as ``x``.
        p: The exponent of the cost, :math:`p \ge 1`.

    Returns:
        A :class:`DecoderBound` ``(wasserstein, upper_bound)``, both :math:`p`-th powers.

    Raises:
        TypeError, ValueError: On bad shapes, weights, a kernel that is not row-stochastic, or
            ``p < 1``.

    Example:
        >>> x, y = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])
        >>> noisy = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # the decoder ignores z
        >>> stochastic_decoder_bound(None, x, None, noisy, y)  # W = 0 < W^dagger = 1/2
        DecoderBound(wasserstein=0.0, upper_bound=0.5)

    References:
        Bousquet, Gelly, Tolstikhin, Simon-Gabriel & Schölkopf (2017). From optimal transport to
        generative modeling: the VEGAN cookbook. arXiv:1705.07642, eq. 9 and theorem 1.
    """
    x, y = _check_point_clouds(x, y)
    p = _check_p(p)
    kernel = _check_tensor("kernel", kernel)
    if kernel.dim() != 2 or kernel.shape[1] != y.shape[0]:
        raise ValueError(
            f"kernel must have shape (m, {y.shape[0]}): one row P_G(. | z_j) over the {y.shape[0]} "
            f"output atoms per latent atom, got {tuple(kernel.shape)}"
        )
    if kernel.device != x.device:
        raise ValueError(f"kernel must be on the points' device {x.device}, got {kernel.device}")
    if kernel.dtype != x.dtype:
        raise TypeError(f"kernel must have the points' dtype {x.dtype}, got {kernel.dtype}")
    a = _check_weights("a", a, x.shape[:1], x)
    b = _check_weights("b", b, kernel.shape[:1], x)
    rows = kernel.detach().double()
    if (rows < 0).any():
        raise ValueError("kernel must be non-negative (each row is a probability vector)")
    worst = float((rows.sum(1) - 1).abs().max())
    if worst > math.sqrt(torch.finfo(kernel.dtype).eps):
        raise ValueError(
            f"every row of kernel must sum to 1 (P_G(. | z_j) is a distribution), got a row sum "
            f"off by {worst:.3g}"
        )
    rows = (rows / rows.sum(1, keepdim=True)).cpu().numpy()
    cost = _ground_cost(x.detach().double(), y.detach().double(), p).cpu().numpy()
    a_np, b_np = _probabilities(a, x.shape[0]), _probabilities(b, kernel.shape[0])
    pushed = b_np @ rows
    _, lower = _emd_plan(a_np, pushed / pushed.sum(), cost)
    _, upper = _emd_plan(a_np, b_np, cost @ rows.T)
    return DecoderBound(wasserstein=lower, upper_bound=upper)


# ---------------------------------------------------------------------------------------------
# Energy distance
# ---------------------------------------------------------------------------------------------


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    r"""The unbiased estimator of the energy distance between two samples.

    For :math:`X, X' \sim P` and :math:`Y, Y' \sim Q` independent, the energy distance

    .. math::
        \mathcal{E}(P, Q) = 2\, \mathbb{E} \lVert X - Y \rVert - \mathbb{E} \lVert X - X' \rVert
        - \mathbb{E} \lVert Y - Y' \rVert

    is non-negative and zero only when :math:`P = Q` (Székely & Rizzo, 2013); in one dimension it
    is :math:`2 \int (F_P - F_Q)^2`, twice the squared Cramér distance. This function returns the
    U-statistic

    .. math::
        \widehat{\mathcal E} = \frac{2}{nm} \sum_{i, j} \lVert x_i - y_j \rVert
        - \frac{1}{n(n-1)} \sum_{i \ne i'} \lVert x_i - x_{i'} \rVert
        - \frac{1}{m(m-1)} \sum_{j \ne j'} \lVert y_j - y_{j'} \rVert,

    whose expectation is exactly :math:`\mathcal E(P, Q)`; so are its sample gradients, the
    property that Wasserstein minibatch estimates lack (Bellemare et al., 2017). Being unbiased,
    it can be negative when :math:`P = Q`. Differentiable.

    Args:
        x: A sample of :math:`P`, shape ``(n, d)`` or ``(n,)``, :math:`n \ge 2`.
        y: A sample of :math:`Q`, shape ``(m, d)`` or ``(m,)``, :math:`m \ge 2`, the same dtype
            and device.

    Returns:
        :math:`\widehat{\mathcal E}`, a 0-dim tensor on the inputs' device and dtype.

    Raises:
        TypeError: If an input is not a floating-point tensor.
        ValueError: On mismatched dimensions or devices, or fewer than two points in a sample.

    Example:
        >>> x = torch.tensor([0.0, 1.0])
        >>> float(energy_distance(x, x + 3))  # 2 * mean(3, 2, 4, 3) - 1 - 1
        4.0

    References:
        Székely & Rizzo (2013). Energy statistics: a class of statistics based on distances.
        Journal of Statistical Planning and Inference 143(8).

        Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer & Munos (2017). The Cramer
        distance as a solution to biased Wasserstein gradients. arXiv:1705.10743.
    """
    x, y = _check_point_clouds(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(
            f"x and y need at least 2 points each for the unbiased estimator, got {n} and {m}"
        )
    # The direct cdist gives exact zeros on the diagonals, which the U-statistic must leave out.
    between = _ground_cost(x, y, 1).mean()
    within_x = _ground_cost(x, x, 1).sum() / (n * (n - 1))
    within_y = _ground_cost(y, y, 1).sum() / (m * (m - 1))
    return 2 * between - within_x - within_y
