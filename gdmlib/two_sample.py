r"""Two-sample tests: is a generator's sample drawn from the data distribution?

Given :math:`x_1, \dots, x_n \sim p` and :math:`y_1, \dots, y_m \sim q`, these functions test
:math:`H_0: p = q`.

- :func:`mmd2` is the unbiased estimator of the squared maximum mean discrepancy with a Gaussian
  kernel (Gretton et al., 2012, eq. 3),

  .. math::
      \widehat{\mathrm{MMD}}{}^2_u
      = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
      + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j)
      - \frac{2}{nm} \sum_{i, j} k(x_i, y_j),
      \qquad k(a, b) = \exp\!\Big(-\frac{\lVert a - b \rVert^2}{2 \sigma^2}\Big).

  Its expectation is exactly :math:`\mathrm{MMD}^2(p, q)`, which is zero under :math:`H_0`, so the
  estimate itself can be negative. It is differentiable and can be used as a training loss.
- :func:`mmd2_imq` is the same U-statistic with the multi-scale inverse multiquadratics kernel
  :func:`imq_kernel` of the Wasserstein autoencoder (Tolstikhin et al., 2018), whose scale is tied
  to the prior's variance; batched over an ensemble of models. Used in chapter 9.
- :func:`mmd_test` turns it into a permutation test. The kernel matrix of the pooled sample is
  computed once and every permutation is evaluated at once by matrix products.
- :func:`c2st` is the classifier two-sample test (Lopez-Paz & Oquab, 2017). It trains a classifier
  to tell :math:`x` from :math:`y`; under :math:`H_0` its held-out accuracy is no better than a fair
  coin's, which gives an exact binomial p-value.
- :func:`fit_discriminator` keeps the classifier's *logit* instead of its accuracy: trained on the
  logistic (GAN discriminator) loss, it estimates the log density ratio
  :math:`\log p(x) / q(x)`, the learned test statistic that a GAN's discriminator is.

By default the bandwidth :math:`\sigma` is the *median heuristic*: the median Euclidean distance
between two distinct points of the pooled sample :math:`x_1, \dots, x_n, y_1, \dots, y_m`
(:func:`median_bandwidth`).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g)
    >>> same = torch.randn(200, 2, generator=g)
    >>> shifted = torch.randn(200, 2, generator=g) + torch.tensor([1.0, 0.0])
    >>> mmd_test(x, same, seed=0).p_value > 0.05
    True
    >>> mmd_test(x, shifted, seed=0).p_value
    0.000999000999000999
    >>> c2st(x, shifted, seed=0).p_value < 0.05
    True

References:
    Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012). A kernel two-sample test. JMLR 13.

    Lopez-Paz & Oquab (2017). Revisiting classifier two-sample tests. ICLR.

    Tolstikhin, Bousquet, Gelly & Schölkopf (2018). Wasserstein auto-encoders. ICLR.

    Hoeffding (1956). On the distribution of the number of successes in independent trials.
    Annals of Mathematical Statistics 27(3).

    Sugiyama, Suzuki & Kanamori (2012). Density Ratio Estimation in Machine Learning. Cambridge
    University Press.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binom
from torch import Tensor, nn

from gdmlib import runtime
from gdmlib._checks import (
    check_bandwidth,
    check_positive_int,
    check_positive_number,
    check_probability,
    check_same_dtype_and_device,
    check_sample_pair,
    check_seed,
)
from gdmlib.nets import MLP
from gdmlib.training import NonFiniteLossError, check_finite_parameters, finite_loss

__all__ = [
    "IMQ_SCALES",
    "ClassifierFit",
    "DiscriminatorFit",
    "TestResult",
    "c2st",
    "fit_discriminator",
    "gaussian_kernel",
    "imq_kernel",
    "median_bandwidth",
    "mlp_classifier",
    "mmd2",
    "mmd2_imq",
    "mmd_test",
]

# A fit function: (features (N, d), labels (N,) in {0, 1}, generator) -> predictor returning labels.
ClassifierFit = Callable[[Tensor, Tensor, torch.Generator], Callable[[Tensor], Tensor]]

# Permutation statistics closer than this to the observed one count as ties (hence as "at least as
# extreme"). Every term of the statistic is an average of kernel values in [0, 1] computed in
# float64, so rounding is far below this, while distinct partitions of real data differ by far more.
_TIE_TOLERANCE = 1e-9
# Largest (permutations x pooled points) block of indicator vectors built at once: 32 MiB in
# float64.
_MAX_BLOCK_ELEMENTS = 2**22
# median_bandwidth: below this many matrix entries two kthvalue calls are cheapest; above it the
# two middle order statistics are bracketed from a sample of pairs first (see _middle_values).
_SELECT_DIRECTLY_BELOW = 2**16
_BRACKET_SAMPLE = 4096


@dataclass(frozen=True)
class TestResult:
    r"""The outcome of a two-sample test.

    Attributes:
        statistic: The test statistic: the unbiased :math:`\widehat{\mathrm{MMD}}{}^2_u` for
            :func:`mmd_test`, the held-out accuracy for :func:`c2st`.
        p_value: The p-value, in :math:`(0, 1]`.
        n_permutations: The number of permutations (:func:`mmd_test`), else ``None``.
        n_test: The number of held-out points the accuracy is measured on (:func:`c2st`), else
            ``None``.
    """

    __test__ = False  # not a pytest test class, despite its name

    statistic: float
    p_value: float
    n_permutations: int | None = None
    n_test: int | None = None

    def rejects(self, alpha: float = 0.05) -> bool:
        """Whether :math:`H_0` is rejected at level ``alpha`` (``p_value <= alpha``).

        Raises:
            TypeError, ValueError: If ``alpha`` is not a number in :math:`(0, 1)`.

        Example:
            >>> TestResult(statistic=0.1, p_value=0.01).rejects(0.05)
            True
        """
        return self.p_value <= check_probability("alpha", alpha)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator of its own: the global RNG is left alone, and results do not depend on the
    device the samples live on."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


# ---------------------------------------------------------------------------------------------
# Kernel and MMD
# ---------------------------------------------------------------------------------------------


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    # The expansion |a|^2 + |b|^2 - 2 a.b needs no (n, m, d) intermediate, so images fit in memory.
    squared = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * (a @ b.T)
    return squared.clamp_min(0.0)


def gaussian_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    r"""The Gaussian (RBF) kernel matrix
    :math:`K_{ij} = \exp(-\lVert a_i - b_j \rVert^2 / (2\sigma^2))`.

    Args:
        a: Points of shape ``(n, d)``.
        b: Points of shape ``(m, d)``, same dtype and device.
        bandwidth: :math:`\sigma > 0`.

    Returns:
        The ``(n, m)`` kernel matrix, differentiable with respect to ``a`` and ``b``.

    Raises:
        TypeError: If the inputs are not floating tensors of the same dtype.
        ValueError: If shapes or devices do not match, or ``bandwidth`` is not positive.

    Example:
        >>> import torch
        >>> gaussian_kernel(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), bandwidth=5.0)
        tensor([[0.6065]])
    """
    for name, points in (("a", a), ("b", b)):
        if not isinstance(points, Tensor) or not points.is_floating_point() or points.dim() != 2:
            raise TypeError(f"{name} must be a floating tensor of shape (n, d)")
    if a.dtype != b.dtype or a.device != b.device or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must share dtype, device and number of features, got {a.dtype}/{a.device}/"
            f"{tuple(a.shape)} and {b.dtype}/{b.device}/{tuple(b.shape)}"
        )
    bandwidth = check_bandwidth(bandwidth)
    return torch.exp(_squared_distances(a, b) / (-2.0 * bandwidth**2))


def _middle_values(squared: Tensor, low_rank: int, high_rank: int) -> tuple[Tensor, Tensor]:
    r"""The ``low_rank``-th and ``high_rank``-th smallest (1-based) entries of
    ``squared.flatten()``.

    ``squared`` is the (N, N) matrix of squared distances with zeros on and below the diagonal.
    Exact for every input: a random sample of the pairs brackets the two ranks in ``[lo, hi]``,
    the entries below ``lo`` are only counted, and the few inside the bracket are sorted. When the
    bracket misses (it cannot be wrong, only too narrow), two full ``kthvalue`` calls decide.
    """
    flat = squared.reshape(-1)
    if flat.numel() < _SELECT_DIRECTLY_BELOW:
        return flat.kthvalue(low_rank).values, flat.kthvalue(high_rank).values
    total_points = squared.shape[0]
    padding = total_points * (total_points + 1) // 2
    pairs = flat.numel() - padding
    # Fixed seed: the result is exact whatever the sample, the seed only makes timings repeatable.
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(total_points, (_BRACKET_SAMPLE,), generator=generator)
    second = torch.randint(total_points - 1, (_BRACKET_SAMPLE,), generator=generator)
    second = second + (second >= first).long()  # a uniform pair i != j
    rows, columns = torch.minimum(first, second), torch.maximum(first, second)
    sample = flat[(rows * total_points + columns).to(flat.device)].sort().values
    # The sample's ranks of the two targets, widened by 5 binomial standard deviations.
    quantiles = ((low_rank - padding) / pairs, (high_rank - padding) / pairs)
    spread = 5.0 * math.sqrt(_BRACKET_SAMPLE * 0.25) + 2
    below_index = int(quantiles[0] * _BRACKET_SAMPLE - spread)
    above_index = int(quantiles[1] * _BRACKET_SAMPLE + spread)
    lo = sample[below_index] if below_index >= 0 else flat.new_tensor(-math.inf)
    hi = sample[above_index] if above_index < _BRACKET_SAMPLE else flat.new_tensor(math.inf)
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        # NumPy counts and selects over the N^2 entries 3-5 times faster than torch on one thread.
        values, lo_value, hi_value = flat.numpy(), lo.item(), hi.item()
        below = int(np.count_nonzero(values < lo_value))
        inside = torch.from_numpy(values[(values >= lo_value) & (values <= hi_value)])
    else:
        below = int((flat < lo).sum())
        inside = flat[(flat >= lo) & (flat <= hi)]
    if below < low_rank and below + inside.numel() >= high_rank:
        ordered = inside.sort().values
        return ordered[low_rank - below - 1], ordered[high_rank - below - 1]
    return flat.kthvalue(low_rank).values, flat.kthvalue(high_rank).values  # pragma: no cover


@torch.no_grad()
def _median_distance(x: Tensor, y: Tensor) -> float:
    """:func:`median_bandwidth` for checked (n, d) and (m, d) samples."""
    pooled = torch.cat([x, y])
    pooled = pooled - pooled.mean(
        0
    )  # distances are translation-invariant; centring reduces rounding
    total_points = pooled.shape[0]
    # Squared distances with zeros on and below the diagonal: the pairs i < j are the entries above
    # the N (N + 1) / 2 zeros of the sorted matrix. sqrt is monotone, so the order statistics of
    # the distances are the square roots of those of the squared distances, bit for bit.
    squared = _squared_distances(pooled, pooled).triu_(diagonal=1)
    count = total_points * (total_points - 1) // 2
    padding = total_points * (total_points + 1) // 2
    low, high = _middle_values(squared, padding + (count + 1) // 2, padding + count // 2 + 1)
    median = float((low.sqrt() + high.sqrt()) / 2)
    if not median > 0:
        raise ValueError(
            "the median pairwise distance of the pooled sample is zero "
            "(too many identical points); "
            "pass bandwidth explicitly"
        )
    return median


def median_bandwidth(x: Tensor, y: Tensor) -> float:
    r"""The median heuristic: the median distance :math:`\lVert z_i - z_j \rVert`, :math:`i < j`,
    over the pooled sample :math:`z = (x_1, \dots, x_n, y_1, \dots, y_m)`.

    With an even number of pairs it is the mean of the two middle distances (as ``numpy.median``).
    Because the pooled sample is used, the bandwidth does not change when the points are relabelled,
    which the permutation test relies on. No gradient flows through it.

    The two middle distances are selected without extracting the :math:`N(N-1)/2` pairs: the
    squared-distance matrix is zeroed on and below its diagonal, a sample of pairs brackets the
    middle ranks, and only the entries inside the bracket are sorted (exact; about 3 times faster
    than masking the upper triangle and calling ``kthvalue`` twice at :math:`N = 2000`).

    Args:
        x: Sample of shape ``(n, d)`` or ``(n,)``, finite.
        y: Sample of shape ``(m, d)`` or ``(m,)``, finite, same dtype and device.

    Returns:
        The bandwidth :math:`\sigma`, as a float.

    Raises:
        TypeError: If a sample is not a floating tensor, or their dtypes differ.
        ValueError: If shapes or devices do not match, a sample holds NaN or inf, or the median
            distance is zero (more than about 70% identical points), in which case a bandwidth must
            be given explicitly.

    Example:
        >>> import torch
        >>> # the median of the pairwise distances 1, 1, 2, 3, 3, 4
        >>> median_bandwidth(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 4.0]))
        2.5
    """
    x, y = check_sample_pair(x, y)
    return _median_distance(x, y)


def _mmd2_terms(x: Tensor, y: Tensor, kernel: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The unbiased U-statistic of every MMD of this module, for a kernel ``(a, b) -> matrix``.

    ``x`` and ``y`` are ``(n, d)`` and ``(m, d)``, or batches ``(B, n, d)`` and ``(B, m, d)`` (one
    statistic per batch row, shape ``(B,)``).
    """
    n, m = x.shape[-2], y.shape[-2]
    if x.dim() == 2:
        # Translation invariance again: centring keeps |a|^2 + |b|^2 - 2 a.b accurate far from 0.
        centre = torch.cat([x, y]).mean(0).detach()
        x, y = x - centre, y - centre
        k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
        within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        return within_x + within_y - 2.0 * k_xy.mean()
    centre = torch.cat([x, y], -2).mean(-2, keepdim=True).detach()
    x, y = x - centre, y - centre
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    diagonal = {"dim1": -2, "dim2": -1}
    within_x = (k_xx.sum((-2, -1)) - k_xx.diagonal(**diagonal).sum(-1)) / (n * (n - 1))
    within_y = (k_yy.sum((-2, -1)) - k_yy.diagonal(**diagonal).sum(-1)) / (m * (m - 1))
    return within_x + within_y - 2.0 * k_xy.mean((-2, -1))


def mmd2(x: Tensor, y: Tensor, bandwidth: float | None = None) -> Tensor:
    r"""The unbiased estimate :math:`\widehat{\mathrm{MMD}}{}^2_u` with a Gaussian kernel.

    .. math::
        \widehat{\mathrm{MMD}}{}^2_u
        = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{nm} \sum_{i=1}^n \sum_{j=1}^m k(x_i, y_j),
        \qquad k(a, b) = \exp\!\Big(-\frac{\lVert a - b \rVert^2}{2 \sigma^2}\Big).

    Leaving out the diagonal :math:`i = j` makes the estimate unbiased: its expectation is
    :math:`\mathrm{MMD}^2(p, q) =
    \mathbb{E}\,k(x, x') + \mathbb{E}\,k(y, y') - 2\,\mathbb{E}\,k(x, y)`,
    zero when :math:`p = q`, so the estimate is negative about half the time under :math:`H_0`.
    With the median heuristic it is still unbiased under :math:`H_0`, since the bandwidth depends
    only on the pooled sample, whose split into :math:`x` and :math:`y` is then uniformly random.

    Args:
        x: Sample of shape ``(n, d)``, :math:`n \ge 2`. A 1-D tensor ``(n,)`` is ``n`` scalar
            points, i.e. shape ``(n, 1)``.
        y: Sample of shape ``(m, d)`` (or ``(m,)``), :math:`m \ge 2`, ``m`` may differ from ``n``;
            same dtype and device as ``x``.
        bandwidth: The kernel bandwidth :math:`\sigma > 0`. ``None`` uses the median heuristic
            :func:`median_bandwidth` on the pooled sample (no gradient flows through it).

    Returns:
        A 0-dim tensor on the inputs' device and dtype, differentiable with respect to ``x`` and
        ``y``.

    Raises:
        TypeError: If ``x`` or ``y`` is not a floating tensor, or their dtypes differ.
        ValueError: If shapes or devices do not match, a sample has fewer than 2 points, or the
            bandwidth is not positive.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(500, 2, generator=g), torch.randn(400, 2, generator=g)
        >>> print(f"{mmd2(x, y).item():.4f}")  # H0: MMD^2 = 0
        -0.0002
        >>> shift = torch.tensor([1.0, 0.0])
        >>> # population value: MMD^2 = 2/3 (1 - e^{-1/6}) = 0.10
        >>> print(f"{mmd2(x, y + shift, bandwidth=1.0).item():.2f}")
        0.12
    """
    x, y = check_sample_pair(x, y)
    bandwidth = _median_distance(x, y) if bandwidth is None else check_bandwidth(bandwidth)
    return _mmd2_terms(x, y, lambda a, b: gaussian_kernel(a, b, bandwidth))


# The seven scales of Tolstikhin et al.'s WAE code (wae.py, mmd_penalty): C_s = s * C_base.
IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _check_scales(scales: object) -> tuple[float, ...]:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise TypeError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return tuple(check_bandwidth(scale, "every entry of scales") for scale in scales)


def _pairwise_squared(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\lVert a_i - b_j \rVert^2`, batched over leading dimensions: the expansion of
    :func:`_squared_distances` (callers centre the points, as :func:`_mmd2_terms` does)."""
    squared = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2)
    return (squared - 2.0 * (a @ b.transpose(-1, -2))).clamp_min(0.0)


def _check_points(name: str, points: object) -> Tensor:
    if not isinstance(points, Tensor) or not points.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor, got {type(points).__name__}")
    if points.dim() not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n, d) or (B, n, d) for a batch, got {tuple(points.shape)}"
        )
    return points


def imq_kernel(a: Tensor, b: Tensor, c_base: float, scales: Sequence[float] = IMQ_SCALES) -> Tensor:
    r"""The multi-scale inverse multiquadratics kernel of the Wasserstein autoencoder,

    .. math::
        k(a, b) = \sum_{s} \frac{C_s}{C_s + \lVert a - b \rVert_2^2},
        \qquad C_s = s\, C_\text{base},

    with the **squared** Euclidean norm (a port that uses the norm itself computes another
    kernel). A sum of positive-definite kernels is positive definite; each term is
    characteristic, and its heavy tails keep gradients alive for codes far from the prior's
    samples, where a Gaussian kernel's vanish (Tolstikhin et al. 2018, section 4). Used in
    chapter 9.

    Args:
        a: Points of shape ``(n, d)``, or a batch ``(B, n, d)``.
        b: Points of shape ``(m, d)`` (or ``(B, m, d)``), same dtype, device and batching.
        c_base: :math:`C_\text{base} > 0`; the WAE uses :math:`2 d \sigma_z^2` for the prior
            :math:`\mathcal N(0, \sigma_z^2 I_d)` (see :func:`mmd2_imq`).
        scales: The factors :math:`s` (the WAE code's seven by default).

    Returns:
        The kernel matrix, ``(n, m)`` (or ``(B, n, m)``), differentiable in ``a`` and ``b``.

    Raises:
        TypeError: If an input is not a floating tensor, or their dtypes differ.
        ValueError: On mismatched shapes or devices, or a non-positive ``c_base`` or scale.

    Example:
        >>> import torch
        >>> # |a - b|^2 = 25: one scale gives C / (C + 25), not C / (C + 5)
        >>> imq_kernel(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), c_base=1.0, scales=(1.0,))
        tensor([[0.0385]])

    References:
        Tolstikhin, Bousquet, Gelly & Schölkopf (2018). Wasserstein auto-encoders. ICLR,
        section 4 and the authors' code (``wae.py``, ``mmd_penalty``).
    """
    a, b = _check_points("a", a), _check_points("b", b)
    check_same_dtype_and_device(a, b)
    if a.dim() != b.dim() or a.shape[-1] != b.shape[-1] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            "a and b must have the same dimension d (and batch size), got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    c_base = check_bandwidth(c_base, "c_base")
    squared = _pairwise_squared(a, b)
    return sum(c_base * scale / (c_base * scale + squared) for scale in _check_scales(scales))


def mmd2_imq(
    x: Tensor,
    y: Tensor,
    *,
    prior_scale: float | None = None,
    c_base: float | None = None,
    scales: Sequence[float] = IMQ_SCALES,
) -> Tensor:
    r"""The unbiased :math:`\widehat{\mathrm{MMD}}{}^2_u` of :func:`mmd2` with the multi-scale IMQ
    kernel (:func:`imq_kernel`): the WAE-MMD penalty between codes and prior draws.

    .. math::
        \widehat{\mathrm{MMD}}{}^2_u
        = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{nm} \sum_{i, j} k(x_i, y_j),
        \qquad k(a, b) = \sum_s \frac{s\, C_\text{base}}{s\, C_\text{base} + \lVert a - b \rVert^2},

    the same U-statistic as :func:`mmd2` (within-sample sums without the diagonal, divided by
    :math:`n(n-1)`; the cross sum divided by :math:`nm`), so it is unbiased and negative about half
    the time when both samples come from one distribution. The kernel's scale is tied to the
    prior's: :math:`C_\text{base} = 2 d \sigma_z^2` for :math:`\mathcal N(0, \sigma_z^2 I_d)`
    (Tolstikhin et al.'s code), so scaling the codes, the prior draws and ``prior_scale`` by the
    same factor leaves the statistic unchanged. Used in chapter 9.

    Args:
        x: Codes :math:`z \sim Q_Z`, shape ``(n, d)``, ``(n,)`` for scalars, or a batch
            ``(B, n, d)`` (one statistic per row: an ensemble of models).
        y: Prior draws, shape ``(m, d)``, ``(m,)`` or ``(B, m, d)``.
        prior_scale: :math:`\sigma_z`, the prior's standard deviation (1 when neither it nor
            ``c_base`` is given).
        c_base: :math:`C_\text{base}` directly, instead of ``prior_scale``.
        scales: The factors :math:`s`.

    Returns:
        A 0-dim tensor (``(B,)`` for batches) on the inputs' device and dtype, differentiable.

    Raises:
        TypeError: On non-floating tensors or two dtypes.
        ValueError: On mismatched shapes or devices, fewer than 2 points, non-finite values, both
            ``prior_scale`` and ``c_base`` given, or a non-positive one.

    Example:
        >>> import torch
        >>> q, p = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0])
        >>> round(mmd2_imq(q, p, c_base=2.0, scales=(1.0,)).item(), 6)  # -2 / (C + 4)
        -0.333333
        >>> round(mmd2_imq(q, p, c_base=2.0).item(), 6)  # -sum_s 1 / (s + 2)
        -2.14026

    References:
        Tolstikhin, Bousquet, Gelly & Schölkopf (2018). Wasserstein auto-encoders. ICLR,
        algorithm 2 and the authors' code (``wae.py``, ``mmd_penalty``).

        Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012). A kernel two-sample test. JMLR 13,
        eq. 3.
    """
    if isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() == 3 and y.dim() == 3:
        check_same_dtype_and_device(x, y)
        if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
            raise ValueError(
                "batched x and y must have the same batch size and dimension d, got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[1] < 2 or y.shape[1] < 2:
            raise ValueError(
                f"x and y need at least 2 points each, got {x.shape[1]} and {y.shape[1]}"
            )
        if not (torch.isfinite(x.detach()).all() and torch.isfinite(y.detach()).all()):
            raise ValueError("x and y must contain only finite values (no NaN or inf)")
    else:
        x, y = check_sample_pair(x, y)
    if prior_scale is not None and c_base is not None:
        raise ValueError("pass prior_scale or c_base, not both (c_base = 2 d prior_scale^2)")
    if c_base is None:
        scale = 1.0 if prior_scale is None else check_bandwidth(prior_scale, "prior_scale")
        c_base = 2.0 * x.shape[-1] * scale**2
    c_base = check_bandwidth(c_base, "c_base")
    scales = _check_scales(scales)
    return _mmd2_terms(x, y, lambda a, b: imq_kernel(a, b, c_base, scales))


# ---------------------------------------------------------------------------------------------
# Permutation test
# ---------------------------------------------------------------------------------------------


def _labelled_statistics(kernel: Tensor, n: int, permutations: Tensor) -> Tensor:
    r"""The unbiased MMD^2 of every relabelling of a pooled sample at once.

    ``kernel`` is the (N, N) pooled kernel matrix with a zero diagonal; row ``b`` of
    ``permutations`` (B, N) sends the points ``permutations[b, :n]`` to x and the rest to y. With
    the indicator :math:`a \in \{0, 1\}^N` of x, :math:`s = K\mathbf 1` and
    :math:`T = \mathbf 1^\top K \mathbf 1`,

    .. math::
        \textstyle\sum_{x x'} = a^\top K a, \quad \sum_{x y} = a^\top s - a^\top K a, \quad
        \sum_{y y'} = T - 2 a^\top s + a^\top K a,

    so a batch of permutations costs one (B, N) x (N, N) product.
    """
    total_points = kernel.shape[0]
    m = total_points - n
    indicators = torch.zeros(
        permutations.shape[0], total_points, dtype=kernel.dtype, device=kernel.device
    )
    indicators.scatter_(1, permutations[:, :n].to(kernel.device), 1.0)
    row_sums = kernel.sum(1)
    within_x = ((indicators @ kernel) * indicators).sum(1)
    x_row_sums = indicators @ row_sums
    cross = x_row_sums - within_x
    within_y = row_sums.sum() - 2.0 * x_row_sums + within_x
    return within_x / (n * (n - 1)) + within_y / (m * (m - 1)) - 2.0 * cross / (n * m)


def _pooled_kernel(x: Tensor, y: Tensor, bandwidth: float | None) -> tuple[Tensor, int]:
    """The float64 pooled kernel matrix with zero diagonal, and n."""
    x, y = check_sample_pair(x, y)
    # float64 makes ties between permutations reliable; Apple's MPS has no float64, so use the CPU.
    device = torch.device("cpu") if x.device.type == "mps" else x.device
    x = x.detach().to(device=device, dtype=torch.float64)
    y = y.detach().to(device=device, dtype=torch.float64)
    bandwidth = _median_distance(x, y) if bandwidth is None else check_bandwidth(bandwidth)
    pooled = torch.cat([x, y])
    pooled = pooled - pooled.mean(0)
    kernel = gaussian_kernel(pooled, pooled, bandwidth)
    kernel.fill_diagonal_(0.0)
    return kernel, x.shape[0]


def _permutation_result(kernel: Tensor, n: int, permutation_blocks: Iterable[Tensor]) -> TestResult:
    """Observed statistic and +1-corrected p-value from blocks of permutations of range(N)."""
    identity = torch.arange(kernel.shape[0]).unsqueeze(0)
    observed = _labelled_statistics(kernel, n, identity)[0]
    at_least_as_large = torch.zeros((), dtype=torch.long, device=kernel.device)
    count = 0
    for block in permutation_blocks:
        statistics = _labelled_statistics(kernel, n, block)
        at_least_as_large += (statistics >= observed - _TIE_TOLERANCE).sum()
        count += block.shape[0]
    p_value = (1 + int(at_least_as_large)) / (1 + count)
    return TestResult(statistic=float(observed), p_value=p_value, n_permutations=count)


def _mmd_test_with_permutations(
    x: Tensor, y: Tensor, permutations: Tensor, bandwidth: float | None = None
) -> TestResult:
    """:func:`mmd_test` with explicit permutations (B, n + m) of the pooled indices (for
    testing)."""
    kernel, n = _pooled_kernel(x, y, bandwidth)
    return _permutation_result(kernel, n, [permutations])


def _draw_permutations(total_points: int, count: int, generator: torch.Generator) -> Tensor:
    # Sorting float64 uniforms gives uniform permutations (ties have probability ~N^2 / 2^53) and,
    # unlike torch.randperm, a whole batch in one call.
    keys = torch.rand(count, total_points, generator=generator, dtype=torch.float64)
    return keys.argsort(dim=1)


def mmd_test(
    x: Tensor,
    y: Tensor,
    *,
    n_permutations: int = 1000,
    bandwidth: float | None = None,
    seed: int | None = None,
) -> TestResult:
    r"""The MMD permutation test of :math:`H_0: p = q`.

    The statistic is :math:`\widehat{\mathrm{MMD}}{}^2_u` (:func:`mmd2`). Under :math:`H_0` the
    pooled sample is exchangeable, so the statistic's null distribution is that of random
    relabellings: with :math:`B` random permutations giving statistics :math:`T_1, \dots, T_B`,

    .. math::
        p = \frac{1 + \#\{b : T_b \ge T_\text{obs}\}}{1 + B},

    which satisfies :math:`P(p \le \alpha) \le \alpha` exactly (the observed labelling counts as
    one of the permutations). The bandwidth is fixed once from the pooled sample, so it is the same
    for every permutation, and the pooled kernel matrix is computed once: all permutations are
    evaluated together by matrix products (in blocks, to bound memory), in float64. Statistics
    within ``1e-9`` of the observed one count as ties. Memory grows as :math:`(n + m)^2`: the
    pooled kernel matrix of 10 000 points takes 800 MB.

    Args:
        x: Sample of shape ``(n, d)`` or ``(n,)``, :math:`n \ge 2`.
        y: Sample of shape ``(m, d)`` or ``(m,)``, :math:`m \ge 2`, same dtype and device.
        n_permutations: The number :math:`B \ge 1` of random permutations.
        bandwidth: Kernel bandwidth :math:`\sigma`; ``None`` for the median heuristic.
        seed: Seed of the test's own random generator (the global one is not used), so that the
            p-value is reproducible and the permutations are the same on every device; ``None``
            for a fresh seed.

    Returns:
        A :class:`TestResult` with ``statistic`` (the unbiased MMD², computed in float64),
        ``p_value`` in :math:`[1/(1+B), 1]` and ``n_permutations``.

    Raises:
        TypeError: On non-tensor or non-floating inputs, or a non-integer ``n_permutations`` or
            seed.
        ValueError: On mismatched shapes or devices, non-finite values, fewer than 2 points per
            sample, ``n_permutations < 1`` or a non-positive bandwidth.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(1)
        >>> x, y = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g)
        >>> result = mmd_test(x, y + 1.0, n_permutations=200, seed=0)
        >>> result.p_value, result.rejects(0.05)
        (0.004975124378109453, True)
    """
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, numbers.Integral):
        raise TypeError(f"n_permutations must be an int, got {type(n_permutations).__name__}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    seed = check_seed(seed)
    kernel, n = _pooled_kernel(x, y, bandwidth)
    total_points = kernel.shape[0]
    generator = _generator(seed)
    block_size = max(1, _MAX_BLOCK_ELEMENTS // total_points)

    def blocks() -> Iterable[Tensor]:
        for start in range(0, int(n_permutations), block_size):
            count = min(block_size, int(n_permutations) - start)
            yield _draw_permutations(total_points, count, generator)

    return _permutation_result(kernel, n, blocks())


# ---------------------------------------------------------------------------------------------
# Classifier two-sample test
# ---------------------------------------------------------------------------------------------


class _FlatMLP:
    """A ReLU MLP whose parameters are views of one flat vector, with a hand-written backward pass.

    C2ST trains tiny networks on tiny batches, where PyTorch's per-operation overhead dominates:
    hand-written gradients and Adam on one flat tensor take about a third of the operations of
    autograd plus ``torch.optim.Adam``.
    """

    def __init__(
        self,
        widths: list[int],
        generator: torch.Generator,
        dtype: torch.dtype,
        device: torch.device,
    ):
        shapes = [(fan_in, fan_out) for fan_in, fan_out in zip(widths[:-1], widths[1:])]
        total = sum(fan_in * fan_out + fan_out for fan_in, fan_out in shapes)
        # PyTorch's default U(+-1/sqrt(fan-in)) initialisation, drawn on the CPU so that a seed
        # gives the same network on every device.
        bounds = torch.cat(
            [
                torch.full(
                    (fan_in * fan_out + fan_out,), 1.0 / math.sqrt(fan_in), dtype=torch.float64
                )
                for fan_in, fan_out in shapes
            ]
        )
        uniform = torch.rand(total, generator=generator, dtype=torch.float64)
        self.flat = ((2.0 * uniform - 1.0) * bounds).to(device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.flat)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        offset = 0
        for fan_in, fan_out in shapes:
            for store, grads, size, shape in (
                (self.weights, self.weight_grads, fan_in * fan_out, (fan_in, fan_out)),
                (self.biases, self.bias_grads, fan_out, (fan_out,)),
            ):
                store.append(self.flat[offset : offset + size].view(shape))
                grads.append(self.grad[offset : offset + size].view(shape))
                offset += size

    def _activations(self, inputs: Tensor) -> tuple[list[Tensor], Tensor]:
        activations = [inputs]
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            activations.append(torch.relu(torch.addmm(bias, activations[-1], weight)))
        return activations, torch.addmm(self.biases[-1], activations[-1], self.weights[-1])

    def logits(self, inputs: Tensor) -> Tensor:
        return self._activations(inputs)[1].squeeze(-1)

    def backward(self, inputs: Tensor, targets: Tensor, sample_weights: Tensor) -> Tensor:
        r"""Write into ``self.grad`` the gradient of :math:`\sum_i w_i\,\mathrm{BCE}(f(x_i), t_i)`;
        return that loss (a 0-dim tensor, for the non-finite guard)."""
        activations, logits = self._activations(inputs)
        flat_logits = logits.squeeze(-1)
        loss = (sample_weights * (F.softplus(flat_logits) - targets * flat_logits)).sum()
        # d BCE-with-logits / d logit = sigmoid(logit) - target.
        delta = (torch.sigmoid(logits) - targets.unsqueeze(-1)) * sample_weights.unsqueeze(-1)
        for layer in reversed(range(len(self.weights))):
            torch.mm(activations[layer].T, delta, out=self.weight_grads[layer])
            torch.sum(delta, 0, out=self.bias_grads[layer])
            if layer > 0:
                delta = (delta @ self.weights[layer].T) * (activations[layer] > 0)
        return loss


def mlp_classifier(
    hidden: int = 32,
    *,
    layers: int = 2,
    steps: int = 100,
    lr: float = 0.01,
    weight_decay: float = 3.0,
) -> ClassifierFit:
    r"""A fit function for :func:`c2st`: a small ReLU MLP trained with full-batch Adam.

    The features are standardised with the training set's mean and standard deviation. The loss
    is the class-balanced logistic loss (each class weighs one half), so the classifier aims at
    balanced accuracy even when :math:`n \ne m`. Adam's steps are followed by decoupled weight
    decay :math:`\theta \leftarrow (1 - \text{lr} \cdot \text{weight\_decay})\,\theta` (as in
    ``torch.optim.AdamW``): with a few hundred training points an unregularised network overfits,
    and the default decay raises the power against a unit mean shift at :math:`n = 100` from about
    0.84 to 0.95. The weights are initialised from the generator
    passed to the fit function (PyTorch's default :math:`U(\pm 1/\sqrt{\text{fan-in}})` scheme),
    never from the global random state. ``layers=0`` gives logistic regression. On the CPU,
    training runs on one thread (the thread count is restored afterwards): for matrices this small,
    threads only add synchronisation.

    Args:
        hidden: Width of the hidden layers.
        layers: Number of hidden layers (0 for a linear classifier).
        steps: Number of full-batch Adam steps.
        lr: Adam's learning rate.
        weight_decay: Decoupled weight decay (0 for none); ``lr * weight_decay`` must be below 1.

    Returns:
        A function ``fit(features, labels, generator)`` returning ``predict(features) -> labels``.

    Raises:
        TypeError: If a size is not an int or a rate not a number.
        ValueError: If an argument is out of range.

    The returned ``fit`` raises :class:`gdmlib.training.NonFiniteLossError`, naming the step, when
    the training loss or a weight becomes NaN or infinite (a diverging classifier).

    Example:
        >>> import torch
        >>> fit = mlp_classifier(layers=0)
        >>> features = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
        >>> predict = fit(features, torch.tensor([0, 0, 1, 1]), torch.Generator().manual_seed(0))
        >>> predict(torch.tensor([[-3.0], [3.0]])).tolist()
        [0, 1]
    """
    hidden = check_positive_int("hidden", hidden)
    layers = check_positive_int("layers", layers, minimum=0)
    steps = check_positive_int("steps", steps)
    lr = check_positive_number("lr", lr)
    weight_decay = check_positive_number("weight_decay", weight_decay, allow_zero=True)
    if not lr * weight_decay < 1:
        raise ValueError(
            f"weight_decay must satisfy lr * weight_decay < 1, got lr={lr} and "
            f"weight_decay={weight_decay}"
        )
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8  # Adam's defaults

    @torch.no_grad()
    def fit(
        features: Tensor, labels: Tensor, generator: torch.Generator
    ) -> Callable[[Tensor], Tensor]:
        mean = features.mean(0)
        scale = features.std(0).clamp_min(1e-12)
        inputs = (features - mean) / scale
        network = _FlatMLP(
            [features.shape[1]] + [int(hidden)] * int(layers) + [1],
            generator,
            features.dtype,
            features.device,
        )
        targets = labels.to(dtype=features.dtype)
        positives = targets.sum()
        sample_weights = torch.where(
            targets > 0.5, 0.5 / positives, 0.5 / (targets.numel() - positives)
        )
        first_moment = torch.zeros_like(network.flat)
        second_moment = torch.zeros_like(network.flat)
        with runtime.single_threaded(features.device):
            for step in range(1, int(steps) + 1):
                loss = network.backward(inputs, targets, sample_weights)
                first_moment.mul_(beta1).add_(network.grad, alpha=1 - beta1)
                second_moment.mul_(beta2).addcmul_(network.grad, network.grad, value=1 - beta2)
                denominator = (second_moment / (1 - beta2**step)).sqrt_().add_(epsilon)
                network.flat.addcdiv_(first_moment, denominator, value=-lr / (1 - beta1**step))
                if weight_decay:
                    network.flat.mul_(1 - lr * weight_decay)
                # One host sync per step: a diverged classifier must not report "no difference".
                if not bool(torch.isfinite(loss) & torch.isfinite(network.flat).all()):
                    value = float(loss)
                    if math.isfinite(value):
                        bad = network.flat[~torch.isfinite(network.flat)]
                        name, first_bad = "parameter of the classifier", float(bad[0])
                        raise NonFiniteLossError(step - 1, name, first_bad, hint=_C2ST_HINT)
                    raise NonFiniteLossError(step - 1, "classifier", value, hint=_C2ST_HINT)

        @torch.no_grad()
        def predict(points: Tensor) -> Tensor:
            return (network.logits((points - mean) / scale) > 0).long()

        return predict

    return fit


_C2ST_HINT = "lower lr of mlp_classifier (or check the samples' scale)"

_CLASSIFIERS: dict[str, Callable[[], ClassifierFit]] = {
    "mlp": lambda: mlp_classifier(),
    "logistic": lambda: mlp_classifier(layers=0),
}


def c2st(
    x: Tensor,
    y: Tensor,
    *,
    seed: int | None = None,
    test_fraction: float = 0.5,
    classifier: Literal["mlp", "logistic"] | ClassifierFit = "mlp",
) -> TestResult:
    r"""The classifier two-sample test (C2ST) of :math:`H_0: p = q`.

    Label the points of :math:`x` with 0 and those of :math:`y` with 1, hold out
    :math:`k = \lfloor \text{test\_fraction} \cdot \min(n, m) \rfloor` points of *each* sample,
    train a classifier on the rest and count the :math:`c` held-out points it labels correctly.
    The statistic is the accuracy :math:`c / n_\text{test}`, :math:`n_\text{test} = 2k`, and the
    p-value is the exact binomial tail

    .. math::
        p = P\big(\mathrm{Bin}(n_\text{test}, \tfrac12) \ge c\big).

    Under :math:`H_0` the held-out points are independent of the trained classifier, which labels
    each of them 1 with some probability :math:`q`, so :math:`c \sim \mathrm{Bin}(k, q) +
    \mathrm{Bin}(k, 1 - q)`: mean :math:`k`, at most the spread of
    :math:`\mathrm{Bin}(2k, \tfrac12)`.
    The balanced held-out set is what makes this true even when :math:`n \ne m`; by Hoeffding (1956)
    the binomial tail is then exact for :math:`q = \tfrac12` and conservative otherwise (for every
    count :math:`c \ge k + 1`, i.e. at every level that matters). Since :math:`c` is discrete, the
    rejection rate at level :math:`\alpha` is below :math:`\alpha` for small test sets.

    Args:
        x: Sample of shape ``(n, d)`` or ``(n,)``, :math:`n \ge 2`.
        y: Sample of shape ``(m, d)`` or ``(m,)``, :math:`m \ge 2`, same dtype and device.
        seed: Seed of the test's own generator (split and classifier initialisation; the global
            random state is not used). ``None`` for a fresh seed.
        test_fraction: Fraction of the smaller sample held out from each sample, in ``(0, 1)``.
        classifier: ``"mlp"`` (default: :func:`mlp_classifier`, two hidden layers of 32 units, 100
            Adam steps with weight decay), ``"logistic"`` (logistic regression), or a fit function
            ``fit(features, labels, generator) -> predict`` whose ``predict(features)`` returns
            labels in ``{0, 1}`` (see :func:`mlp_classifier`).

    Returns:
        A :class:`TestResult` with ``statistic`` (held-out accuracy), ``p_value`` and ``n_test``.

    Raises:
        TypeError: On non-tensor or non-floating inputs, or a ``classifier`` that is neither a
            known name nor callable.
        ValueError: On mismatched shapes or devices, non-finite values, an unknown classifier name,
            or a ``test_fraction`` that leaves no test or no training point in a sample.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
        >>> # same mean, smaller spread: needs a nonlinear classifier
        >>> result = c2st(x, 0.3 * y, seed=0)
        >>> round(result.statistic, 2), result.n_test, result.p_value < 1e-6
        (0.8, 300, True)
    """
    x, y = check_sample_pair(x, y)
    seed = check_seed(seed)
    if isinstance(classifier, str):
        if classifier not in _CLASSIFIERS:
            raise ValueError(
                f"classifier must be one of {sorted(_CLASSIFIERS)} or a fit function, "
                f"got {classifier!r}"
            )
        fit = _CLASSIFIERS[classifier]()
    elif callable(classifier):
        fit = classifier
    else:
        raise TypeError(
            f"classifier must be 'mlp', 'logistic' or a callable, got {type(classifier).__name__}"
        )
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0 < test_fraction < 1
    ):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    n, m = x.shape[0], y.shape[0]
    held_out = int(math.floor(test_fraction * min(n, m)))
    if held_out < 1 or held_out >= min(n, m):
        raise ValueError(
            f"test_fraction={test_fraction} holds out {held_out} of min(n, m) = {min(n, m)} "
            "points per sample; need at least one test and one training point in each sample"
        )

    # Half precision is too coarse to train in; float32 and float64 are kept.
    working_dtype = torch.promote_types(x.dtype, torch.float32)
    x, y = x.detach().to(working_dtype), y.detach().to(working_dtype)
    generator = _generator(seed)
    order_x = torch.randperm(n, generator=generator).to(x.device)
    order_y = torch.randperm(m, generator=generator).to(x.device)
    test_features = torch.cat([x[order_x[:held_out]], y[order_y[:held_out]]])
    train_features = torch.cat([x[order_x[held_out:]], y[order_y[held_out:]]])

    def labels(count_x: int, count_y: int) -> Tensor:
        return torch.cat(
            [torch.zeros(count_x, dtype=torch.long), torch.ones(count_y, dtype=torch.long)]
        ).to(x.device)

    predict = fit(train_features, labels(n - held_out, m - held_out), generator)
    with torch.no_grad():
        raw = torch.as_tensor(predict(test_features), device=x.device).reshape(-1)
    test_labels = labels(held_out, held_out)
    if raw.shape != test_labels.shape:
        raise ValueError(
            f"the classifier predicted {raw.numel()} labels for {test_labels.numel()} points"
        )
    if not bool(((raw == 0) | (raw == 1)).all()):
        raise ValueError(
            "the classifier's predict must return labels in {0, 1}, got values such as "
            f"{raw[(raw != 0) & (raw != 1)][:3].tolist()}; threshold probabilities or logits first"
        )
    predicted = raw.long()
    correct = int((predicted == test_labels).sum())
    n_test = 2 * held_out
    # sf(c - 1) = P(Bin >= c); it underflows to 0 only for n_test > 1074 at near-perfect accuracy.
    p_value = max(float(binom.sf(correct - 1, n_test, 0.5)), math.ulp(0.0))
    return TestResult(statistic=correct / n_test, p_value=p_value, n_test=n_test)


# ---------------------------------------------------------------------------------------------
# The learned statistic: a discriminator's logit estimates the log density ratio
# ---------------------------------------------------------------------------------------------


class _Standardize(nn.Module):
    """``(x - mean) / scale`` with fixed (buffer) statistics."""

    def __init__(self, mean: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    def forward(self, inputs: Tensor) -> Tensor:
        return (inputs - self.mean) / self.scale


class _Logit(nn.Module):
    """Inputs of shape ``(N, d)`` or ``(N,)`` (scalars) to logits of shape ``(N,)``."""

    def __init__(self, standardize: _Standardize, body: nn.Module) -> None:
        super().__init__()
        self.standardize = standardize
        self.body = body

    def forward(self, inputs: Tensor) -> Tensor:
        inputs = inputs.unsqueeze(-1) if inputs.dim() == 1 else inputs
        return self.body(self.standardize(inputs)).squeeze(-1)


def _logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The class-balanced logistic loss :math:`\operatorname{mean} \operatorname{softplus}(-\ell_p)
    + \operatorname{mean} \operatorname{softplus}(\ell_q)` (the GAN discriminator's loss)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


class DiscriminatorFit(NamedTuple):
    r"""The outcome of :func:`fit_discriminator`.

    Attributes:
        network: The trained logit network :math:`\ell`, in eval mode; :math:`D = \sigma(\ell)`.
        losses: The training loss (the logistic loss of :func:`fit_discriminator`, equal to
            :func:`gdmlib.gan.discriminator_loss`) before every step.
    """

    network: nn.Module
    losses: list[float]


def fit_discriminator(
    real: Tensor,
    fake: Tensor,
    *,
    network: nn.Module | None = None,
    hidden: Sequence[int] = (64, 64),
    steps: int = 1000,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    seed: int | None = None,
) -> DiscriminatorFit:
    r"""Train a discriminator :math:`D = \sigma(\ell)` to tell ``real`` from ``fake``; its logit
    estimates the log density ratio.

    The logit network :math:`\ell` minimises the GAN discriminator's loss (the logistic loss with
    each sample weighing one half, equal to :func:`gdmlib.gan.discriminator_loss`)

    .. math::
        \mathcal{L}(\ell) = -\frac1n \sum_i \log \sigma(\ell(x_i))
        - \frac1m \sum_j \log\bigl(1 - \sigma(\ell(y_j))\bigr),
        \qquad x_i \sim p, \ y_j \sim q,

    with Adam. Its population version is minimised pointwise by
    :math:`\sigma(\ell^*(x)) = D^*(x) = \frac{p(x)}{p(x) + q(x)}`, i.e.
    :math:`\ell^*(x) = \log \frac{p(x)}{q(x)}`,
    whatever :math:`n` and :math:`m` are (each sample's term is an average). So the trained logit
    is an estimate of the log density ratio where both samples have mass, and
    :math:`\mathbb{E}_p\,\ell` an estimate of :math:`\mathrm{KL}(p \,\|\, q)`; far from both samples
    the network merely extrapolates.

    The default network standardises its inputs with the pooled sample's mean and standard
    deviation, then applies a ReLU :class:`gdmlib.nets.MLP` with one output; it maps ``(N, d)``
    (or ``(N,)`` scalars) to logits of shape ``(N,)``, in the samples' dtype and device. A network
    passed in is trained as it is (it must accept the samples' shape). On the CPU, training runs
    on one thread (restored afterwards): for networks this small, threads only add
    synchronisation.

    Args:
        real: Sample of :math:`p`, labelled 1 ("data"), shape ``(n, d)`` or ``(n,)``.
        fake: Sample of :math:`q`, labelled 0 ("model"), shape ``(m, d)`` or ``(m,)``, same dtype
            and device.
        network: The logit network to train; by default a fresh one (see above).
        hidden: Hidden widths of the default network.
        steps: Number of Adam steps.
        lr: Adam's learning rate.
        weight_decay: Adam's (L2) weight decay.
        batch_size: Points drawn (with replacement) from *each* sample per step; ``None`` for full
            batches.
        seed: Seed of the default network's initialisation and of the minibatches (the global
            random state is restored afterwards); ``None`` uses the global state.

    Returns:
        A :class:`DiscriminatorFit` with the trained network and the loss before every step.

    Raises:
        TypeError: On non-tensor or non-floating samples, or a ``network`` that is not an
            ``nn.Module``.
        ValueError: On mismatched shapes or devices, non-finite values, fewer than 2 points, or
            out-of-range ``steps``, ``lr``, ``weight_decay``, ``batch_size`` or ``seed``.
        gdmlib.training.NonFiniteLossError: If the loss (before its backward pass) or a parameter
            (after the update) is NaN or infinite; it names the step.

    References:
        Goodfellow et al. (2014). Generative adversarial nets. NeurIPS, proposition 1.

        Sugiyama, Suzuki & Kanamori (2012). Density Ratio Estimation in Machine Learning,
        chapter 4 (probabilistic classification).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(2000, generator=g), torch.randn(2000, generator=g) + 1.0
        >>> fit = fit_discriminator(x, y, hidden=(16,), steps=300, seed=0)
        >>> t = torch.tensor([-1.0, 0.0, 1.0])
        >>> with torch.no_grad():  # log N(t; 0, 1) / N(t; 1, 1) = 1/2 - t
        ...     error = (fit.network(t) - (0.5 - t)).abs().max().item()
        >>> error < 0.25
        True
    """
    real_2d, fake_2d = check_sample_pair(real, fake)
    seed = check_seed(seed)
    if network is not None and not isinstance(network, nn.Module):
        raise TypeError(f"network must be an nn.Module or None, got {type(network).__name__}")
    steps = check_positive_int("steps", steps)
    lr = check_positive_number("lr", lr)
    weight_decay = check_positive_number("weight_decay", weight_decay, allow_zero=True)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    real, fake = (real_2d, fake_2d) if network is None else (real, fake)
    device = real.device
    cuda_devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )

    with (
        torch.random.fork_rng(devices=cuda_devices, enabled=seed is not None),
        runtime.single_threaded(device),
    ):
        if seed is not None:
            torch.manual_seed(int(seed))
        if network is None:
            pooled = torch.cat([real, fake]).detach()
            standardize = _Standardize(pooled.mean(0), pooled.std(0).clamp_min(1e-12))
            network = _Logit(standardize, MLP(real.shape[1], 1, hidden=tuple(hidden)))
            network = network.to(device=device, dtype=real.dtype)
        network.train()
        optimizer = torch.optim.Adam(
            network.parameters(), lr=float(lr), weight_decay=float(weight_decay)
        )
        losses = []
        for step in range(steps):
            if batch_size is None:
                real_batch, fake_batch = real, fake
            else:
                real_batch = real[torch.randint(real.shape[0], (batch_size,)).to(device)]
                fake_batch = fake[torch.randint(fake.shape[0], (batch_size,)).to(device)]
            loss = _logistic_loss(network(real_batch), network(fake_batch))
            value = finite_loss(loss, step, "discriminator", hint="lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            check_finite_parameters(network, step, hint="lower the learning rate")
            losses.append(value)
    network.eval()
    return DiscriminatorFit(network, losses)
