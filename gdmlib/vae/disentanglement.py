r"""Disentangling VAEs: β-VAE's rate constraint, DIP-VAE's moments, β-TCVAE's total correlation.

All three change the ELBO's KL term (the reduction convention of :mod:`gdmlib.vae`: sums over
latent dimensions and pixels, means over the batch). With :math:`n` uniform on the :math:`N` data
points, :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` the aggregate posterior and a factorised prior
:math:`p(z) = \prod_j p(z_j)`, the average KL splits exactly (Chen et al. 2018, Thm. 13.5 of the
book)

.. math::
    \frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))
    = \underbrace{I_q(n; z)}_{\text{mutual information}}
    + \underbrace{\mathrm{KL}\bigl(q(z) \,\big\|\, \textstyle\prod_j q(z_j)\bigr)}_{\text{total
    correlation}}
    + \underbrace{\textstyle\sum_j \mathrm{KL}(q(z_j) \,\|\, p(z_j))}_{\text{dimension-wise KL}},

- **β-VAE** (Higgins et al. 2017) multiplies all three by β; :func:`linear_gaussian_rate_distortion`
  gives its optimum in closed form for a linear-Gaussian model (β is the Lagrange multiplier of a
  rate constraint);
- **DIP-VAE** (Kumar et al. 2018) pushes the covariance of :math:`q(z)` towards :math:`I`:
  :func:`aggregate_covariance` is :math:`\mathrm{Cov}_{q(z)}[z] = \mathbb{E}_n
  \operatorname{diag}\sigma^2(x_n) + \mathrm{Cov}_n[\mu(x_n)]` (law of total covariance) and
  :func:`dip_regularizer` penalises its distance to :math:`I` (DIP-VAE-II) or that of
  :math:`\mathrm{Cov}_n[\mu]` alone (DIP-VAE-I);
- **β-TCVAE** (Chen et al. 2018) penalises the total correlation, estimated on a minibatch by
  :func:`total_correlation_mss` (minibatch stratified sampling, weights of each row summing to 1,
  so identical posteriors give exactly 0) or :func:`total_correlation_mws` (minibatch weighted
  sampling); :func:`beta_tc_decomposition` computes the three terms exactly on a finite data set
  (Monte Carlo over :math:`z` only).

:class:`DisentanglingEnsemble` trains several such models (any mix of objectives and seeds) as one
batched network, for the seed studies of chapter 13. Used in chapter 13.

Example:
    >>> mean = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    >>> aggregate_covariance(mean)  # Cov_n[mu], normalised by the batch size
    tensor([[0.5000, 0.0000],
            [0.0000, 2.0000]])
    >>> float(dip_regularizer(mean, lambda_od=1.0, lambda_d=1.0))  # (0.5 - 1)^2 + (2 - 1)^2
    1.25

References:
    Higgins et al. (2017). β-VAE: learning basic visual concepts with a constrained variational
    framework. ICLR.

    Kumar, Sattigeri & Balakrishnan (2018). Variational inference of disentangled latent concepts
    from unlabeled observations. ICLR.

    Chen, Li, Grosse & Duvenaud (2018). Isolating sources of disentanglement in variational
    autoencoders. NeurIPS.

    Hoffman & Johnson (2016). ELBO surgery: yet another way to carve up the variational evidence
    lower bound. NeurIPS workshop.

    Locatello et al. (2019). Challenging common assumptions in the unsupervised learning of
    disentangled representations. ICML (``disentanglement_lib``'s ``vae.py``: ``DIPVAE``,
    ``BetaTCVAE``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib._checks import check_positive_int, check_positive_number
from gdmlib.estimate import Estimate, mean_stderr
from gdmlib.nets import Activation, BatchedMLP
from gdmlib.vae._common import LOG_2PI
from gdmlib.vae.posteriors import gaussian_log_prob_pairwise

__all__ = [
    "BetaTCDecomposition",
    "DisentanglingEnsemble",
    "LinearGaussianOptimum",
    "Objective",
    "aggregate_covariance",
    "beta_tc_decomposition",
    "dip_regularizer",
    "linear_gaussian_rate_distortion",
    "mss_log_weights",
    "total_correlation_mss",
    "total_correlation_mws",
]


# --------------------------------------------------------------------------------------------------
# Checks


def _check_matrix(name: str, x: object, like: Tensor | None = None, min_rows: int = 1) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{name} must be a floating torch.Tensor, got {got}")
    if x.dim() != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (B, D) with B >= {min_rows}, got {tuple(x.shape)}"
        )
    if like is not None:
        if x.shape != like.shape:
            raise ValueError(
                f"{name} must have the shape of mean, {tuple(like.shape)}, got {tuple(x.shape)}"
            )
        if x.device != like.device:
            raise ValueError(
                f"{name} and mean must be on one device, got {x.device}, {like.device}"
            )
        if x.dtype != like.dtype:
            raise TypeError(f"{name} and mean must have one dtype, got {x.dtype}, {like.dtype}")
    return x


def _check_positive_tensor(name: str, x: Tensor) -> None:
    if not bool(((x > 0) & torch.isfinite(x)).all()):
        raise ValueError(f"{name} must be positive and finite everywhere")


# --------------------------------------------------------------------------------------------------
# β-VAE: the linear-Gaussian rate-distortion curve


class LinearGaussianOptimum(NamedTuple):
    """The β-optimal encoder of :func:`linear_gaussian_rate_distortion` and its two costs."""

    gain: float
    variance: float
    rate: float
    distortion: float


def linear_gaussian_rate_distortion(
    beta: float, weight: float = 1.0, noise_std: float = 0.5, data_variance: float | None = None
) -> LinearGaussianOptimum:
    r"""The encoder maximising the β-VAE objective of a linear-Gaussian model, in closed form.

    Model :math:`p(z) = \mathcal N(0, 1)`, :math:`p(x \mid z) = \mathcal N(w z, \sigma^2)`; data
    :math:`x` with :math:`\mathbb{E} x = 0`, :math:`\mathbb{E} x^2 = v` (:math:`w^2 + \sigma^2` by
    default, the model's own marginal); encoder :math:`q(z \mid x) = \mathcal N(a x, s^2)`. The
    distortion and the rate are

    .. math::
        D = \tfrac12 \log 2\pi\sigma^2 + \frac{(1 - wa)^2 v + w^2 s^2}{2\sigma^2}, \qquad
        R = \mathbb{E}_x \mathrm{KL}(q(z \mid x) \,\|\, p(z))
          = \tfrac12 (a^2 v + s^2 - 1 - \log s^2),

    and :math:`\min_{a, s^2} D + \beta R` (the β-VAE loss) is reached at

    .. math::
        a^\star = \frac{w}{w^2 + \beta\sigma^2}, \qquad s^{2\star} = \frac{\beta\sigma^2}{w^2 +
        \beta\sigma^2},

    the exact posterior at :math:`\beta = 1`. Along the curve, :math:`dD/d\beta = -\beta\,
    dR/d\beta`: β is minus the slope of the rate-distortion curve, the Lagrange multiplier of
    :math:`\min D` subject to :math:`R \le \varepsilon`.

    Args:
        beta: Positive.
        weight: The decoder's :math:`w \ne 0`.
        noise_std: :math:`\sigma > 0`.
        data_variance: :math:`v > 0` (``weight**2 + noise_std**2`` when ``None``).

    Returns:
        A :class:`LinearGaussianOptimum` ``(gain, variance, rate, distortion)`` (nats).

    Example:
        >>> optimum = linear_gaussian_rate_distortion(1.0, weight=1.0, noise_std=1.0)
        >>> optimum.gain, optimum.variance  # the exact posterior N(x / 2, 1 / 2)
        (0.5, 0.5)
    """
    beta = check_positive_number("beta", beta)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight == 0:
        raise ValueError(f"weight must be a non-zero number, got {weight!r}")
    sigma2 = check_positive_number("noise_std", noise_std) ** 2
    w = float(weight)
    v = (
        w * w + sigma2
        if data_variance is None
        else check_positive_number("data_variance", data_variance)
    )
    a = w / (w * w + beta * sigma2)
    s2 = beta * sigma2 / (w * w + beta * sigma2)
    rate = 0.5 * (a * a * v + s2 - 1.0 - math.log(s2))
    distortion = 0.5 * math.log(2 * math.pi * sigma2) + ((1 - w * a) ** 2 * v + w * w * s2) / (
        2 * sigma2
    )
    return LinearGaussianOptimum(a, s2, rate, distortion)


# --------------------------------------------------------------------------------------------------
# DIP-VAE


def aggregate_covariance(mean: Tensor, variance: Tensor | None = None) -> Tensor:
    r"""Covariance of the aggregate posterior of a batch (law of total covariance).

    With :math:`\bar\mu = \frac1B \sum_b \mu_b`,

    .. math::
        \mathrm{Cov}_{q(z)}[z] = \underbrace{\frac1B \sum_b \operatorname{diag}\sigma_b^2}_
        {\text{only with } \texttt{variance}} + \underbrace{\frac1B \sum_b (\mu_b - \bar\mu)
        (\mu_b - \bar\mu)^\top}_{\mathrm{Cov}_n[\mu]},

    centred over the **batch** axis and normalised by :math:`B` (as dlib's
    ``compute_covariance_z_mean``); the first term is the diagonal matrix of the batch mean of
    :math:`\sigma^2` (not :math:`\sigma^4`, not a scalar).

    Args:
        mean: Posterior means :math:`\mu(x_b)`, shape ``(B, D)``.
        variance: Posterior variances :math:`\sigma^2(x_b)`, shape ``(B, D)``, positive, or
            ``None`` for :math:`\mathrm{Cov}_n[\mu]` alone.

    Returns:
        Shape ``(D, D)``, differentiable.

    Example:
        >>> aggregate_covariance(torch.zeros(3, 2), torch.full((3, 2), 0.5))
        tensor([[0.5000, 0.0000],
                [0.0000, 0.5000]])
    """
    mean = _check_matrix("mean", mean)
    centred = mean - mean.mean(dim=0, keepdim=True)
    covariance = centred.T @ centred / mean.shape[0]
    if variance is not None:
        variance = _check_matrix("variance", variance, like=mean)
        if bool((variance < 0).any()):  # NaN passes, to reach the training loop's guard
            raise ValueError("variance must be non-negative")
        covariance = covariance + torch.diag(variance.mean(dim=0))
    return covariance


def dip_regularizer(
    mean: Tensor, variance: Tensor | None = None, *, lambda_od: float, lambda_d: float
) -> Tensor:
    r"""The DIP-VAE regulariser (Kumar et al. 2018, dlib's ``regularize_diag_off_diag_dip``).

    .. math::
        R(M) = \lambda_{od} \sum_{i \ne j} M_{ij}^2 + \lambda_d \sum_i (M_{ii} - 1)^2,

    with :math:`M = \mathrm{Cov}_n[\mu]` (DIP-VAE-I, ``variance=None``) or
    :math:`M = \mathrm{Cov}_{q(z)}[z]` (DIP-VAE-II, with the per-sample variances), both from
    :func:`aggregate_covariance`. The study sets :math:`\lambda_d = 10 \lambda_{od}` for DIP-VAE-I
    and :math:`\lambda_d = \lambda_{od}` for DIP-VAE-II. The loss is ``-ELBO + R``.

    Args:
        mean: Posterior means, shape ``(B, D)``.
        variance: Posterior variances, shape ``(B, D)``, or ``None``.
        lambda_od: Weight of the off-diagonal terms, non-negative.
        lambda_d: Weight of the diagonal terms, non-negative.

    Returns:
        A scalar tensor, differentiable.

    Example:
        >>> mean = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
        >>> float(dip_regularizer(mean, torch.full((4, 2), 0.5), lambda_od=1.0, lambda_d=1.0))
        2.25
    """
    lambda_od = check_positive_number("lambda_od", lambda_od, allow_zero=True)
    lambda_d = check_positive_number("lambda_d", lambda_d, allow_zero=True)
    covariance = aggregate_covariance(mean, variance)
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.square().sum() + lambda_d * (diagonal - 1).square().sum()


# --------------------------------------------------------------------------------------------------
# β-TCVAE: total correlation


def mss_log_weights(
    batch_size: int,
    dataset_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Log-weights of minibatch stratified sampling (Chen et al. 2018), rows summing to 1.

    With :math:`M = B - 1`, row :math:`i` puts :math:`1/N` on its own sample :math:`i`,
    :math:`(N - M)/(NM)` on sample :math:`i + 1 \bmod B` and :math:`1/M` on the :math:`M - 1`
    others: :math:`\frac1N + \frac{N - M}{NM} + \frac{M - 1}{M} = 1`. (The widely copied
    ``_log_importance_weight_matrix`` strides by :math:`B` over the flattened matrix and puts these
    weights in columns 0 and 1 of every row instead: its rows do not sum to 1.)

    Args:
        batch_size: :math:`B \ge 2`.
        dataset_size: :math:`N \ge B`.
        dtype, device: Of the result.

    Returns:
        Shape ``(B, B)``, the logs of the weights.

    Example:
        >>> mss_log_weights(3, 10, dtype=torch.float64).exp().sum(dim=1).tolist()
        [1.0, 1.0, 1.0]
    """
    batch_size = check_positive_int("batch_size", batch_size, 2)
    dataset_size = check_positive_int("dataset_size", dataset_size)
    if dataset_size < batch_size:
        raise ValueError(
            f"dataset_size must be at least batch_size, got {dataset_size} < {batch_size}"
        )
    m = batch_size - 1
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, rows] = 1.0 / dataset_size
    weights[rows, (rows + 1) % batch_size] = (dataset_size - m) / (dataset_size * m)
    return weights.log().to(dtype=dtype, device=device)


def _pairwise_per_dim(z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(z_{i,d}; mean_{j,d}, std_{j,d}^2), shape (B, B, D)."""
    z, mean, std = z.unsqueeze(1), mean.unsqueeze(0), std.unsqueeze(0)
    return -0.5 * ((z - mean) / std).square() - std.log() - 0.5 * LOG_2PI


def _check_tc_inputs(z: Tensor, mean: Tensor, std: Tensor, dataset_size: int) -> int:
    _check_matrix("mean", mean, min_rows=2)
    _check_matrix("z", z, like=mean)
    _check_matrix("std", std, like=mean)
    _check_positive_tensor("std", std)
    return check_positive_int("dataset_size", dataset_size)


def _total_correlation(z: Tensor, mean: Tensor, std: Tensor, log_weights: Tensor) -> Tensor:
    per_dim = _pairwise_per_dim(z, mean, std) + log_weights.unsqueeze(2)  # (B, B, D)
    log_joint = torch.logsumexp(per_dim.sum(2) - (per_dim.shape[2] - 1) * log_weights, dim=1)
    log_marginals = torch.logsumexp(per_dim, dim=1).sum(1)
    return (log_joint - log_marginals).mean()


def total_correlation_mss(z: Tensor, mean: Tensor, std: Tensor, dataset_size: int) -> Tensor:
    r"""Total correlation :math:`\mathbb{E}_{q(z)}[\log q(z) - \sum_j \log q(z_j)]` by minibatch
    stratified sampling (Chen et al. 2018).

    For the batch :math:`z_i \sim q(z \mid x_i)`, :math:`\log q(z_i) \approx \log \sum_k w_{ik}
    q(z_i \mid x_k)` and :math:`\log q(z_{ij}) \approx \log \sum_k w_{ik} q(z_{ij} \mid x_k)` with
    the weights of :func:`mss_log_weights`. Because each row of weights sums to 1, identical
    posteriors give exactly 0 (the true value); a batch of distinct posteriors gives a
    consistent estimate as :math:`B \to N`.

    Args:
        z: One sample per posterior, shape ``(B, D)``, :math:`B \ge 2`.
        mean, std: The posteriors' means and standard deviations, shape ``(B, D)``.
        dataset_size: :math:`N \ge B`, the size of the data set.

    Returns:
        A scalar tensor (nats), differentiable.

    Example:
        >>> mean, std = torch.zeros(8, 3), torch.ones(8, 3)
        >>> z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        >>> abs(float(total_correlation_mss(z, mean, std, dataset_size=100))) < 1e-6
        True
    """
    dataset_size = _check_tc_inputs(z, mean, std, dataset_size)
    log_weights = mss_log_weights(z.shape[0], dataset_size, dtype=z.dtype, device=z.device)
    return _total_correlation(z, mean, std, log_weights)


def total_correlation_mws(z: Tensor, mean: Tensor, std: Tensor, dataset_size: int) -> Tensor:
    r"""Total correlation by minibatch weighted sampling (Chen et al. 2018), constants kept.

    Every weight is :math:`1/(BN)`, so rows sum to :math:`1/N`: for identical posteriors the
    estimate is :math:`(D - 1) \log N`, not 0 (a bias that does not change the gradient; dlib
    drops the constant and gets :math:`-(D - 1)\log B` instead). Prefer
    :func:`total_correlation_mss`.

    Args:
        z, mean, std, dataset_size: As :func:`total_correlation_mss`.

    Returns:
        A scalar tensor (nats).

    Example:
        >>> mean, std = torch.zeros(8, 3), torch.ones(8, 3)
        >>> z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        >>> round(float(total_correlation_mws(z, mean, std, dataset_size=100)), 4)  # 2 log 100
        9.2103
    """
    dataset_size = _check_tc_inputs(z, mean, std, dataset_size)
    batch = z.shape[0]
    log_weights = torch.full(
        (batch, batch), -math.log(batch * dataset_size), dtype=z.dtype, device=z.device
    )
    return _total_correlation(z, mean, std, log_weights)


class BetaTCDecomposition(NamedTuple):
    r"""The exact split of the average KL on a finite data set (:func:`beta_tc_decomposition`).

    Attributes:
        average_kl: :math:`\frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \| p(z))`, in closed form.
        mutual_info: :math:`I_q(n; z)`, Monte Carlo over :math:`z`, with its standard error.
        total_correlation: :math:`\mathrm{KL}(q(z) \| \prod_j q(z_j))`, likewise.
        dimensionwise_kl: :math:`\sum_j \mathrm{KL}(q(z_j) \| p(z_j))`, likewise.
        sum: The sum of the three, with its standard error (from the per-sample sums).
    """

    average_kl: float
    mutual_info: Estimate
    total_correlation: Estimate
    dimensionwise_kl: Estimate
    sum: Estimate


@torch.no_grad()
def beta_tc_decomposition(
    mean: Tensor,
    std: Tensor,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    chunk_size: int = 256,
) -> BetaTCDecomposition:
    r"""Mutual information, total correlation and dimension-wise KL of an encoder on a data set.

    The posteriors :math:`q(z \mid x_n) = \mathcal N(\mu_n, \operatorname{diag}\sigma_n^2)` of all
    :math:`N` points define :math:`q(z)` and each :math:`q(z_j)` as exact :math:`N`-component
    mixtures (a log-sum-exp over all :math:`N`, no minibatch); the prior is
    :math:`\mathcal N(0, I)`. With ``num_samples`` draws :math:`z \sim q(z \mid x_n)` for every
    :math:`n`, the per-draw terms

    .. math::
        \log q(z \mid x_n) - \log q(z), \quad \log q(z) - \sum_j \log q(z_j), \quad
        \sum_j \log q(z_j) - \log p(z_j)

    average to :math:`I_q(n; z)`, the total correlation and the dimension-wise KL, whose sum is the
    average KL (closed form). Identical posteriors give :math:`I = \mathrm{TC} = 0` up to rounding;
    posteriors equal to the prior give three zeros.

    Args:
        mean: Posterior means of the whole data set, shape ``(N, D)``.
        std: Posterior standard deviations, shape ``(N, D)``, positive.
        num_samples: Draws per data point.
        generator: For the draws (on the tensors' device).
        chunk_size: Draws per block of the ``(block, N, D)`` computation.

    Returns:
        A :class:`BetaTCDecomposition`; computed in float64.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> split = beta_tc_decomposition(torch.zeros(50, 2), torch.ones(50, 2), generator=g)
        >>> split.average_kl, abs(split.mutual_info.value) < 1e-12, abs(split.sum.value) < 1e-12
        (0.0, True, True)
    """
    _check_matrix("mean", mean, min_rows=2)
    _check_matrix("std", std, like=mean)
    _check_positive_tensor("std", std)
    num_samples = check_positive_int("num_samples", num_samples)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    mean64, std64 = mean.double(), std.double()
    count, dim = mean.shape
    log_count = math.log(count)
    average_kl = float((0.5 * (mean64.square() + std64.square() - 1) - std64.log()).sum(1).mean())
    noise = torch.randn(
        num_samples, count, dim, generator=generator, dtype=torch.float64, device=mean.device
    )
    z = (mean64 + std64 * noise).reshape(-1, dim)
    owner = torch.arange(count, device=mean.device).repeat(num_samples)
    terms = []
    for start in range(0, z.shape[0], chunk_size):
        block, who = z[start : start + chunk_size], owner[start : start + chunk_size]
        own = (
            -0.5 * ((block - mean64[who]) / std64[who]).square() - std64[who].log() - 0.5 * LOG_2PI
        ).sum(1)
        log_q = torch.logsumexp(gaussian_log_prob_pairwise(block, mean64, std64), 1) - log_count
        per_dim = (
            -0.5 * ((block.unsqueeze(1) - mean64) / std64).square() - std64.log() - 0.5 * LOG_2PI
        )
        log_marginals = (torch.logsumexp(per_dim, dim=1) - log_count).sum(1)
        log_prior = (-0.5 * block.square() - 0.5 * LOG_2PI).sum(1)
        terms.append(torch.stack([own - log_q, log_q - log_marginals, log_marginals - log_prior]))
    values = torch.cat(terms, dim=1).cpu()
    return BetaTCDecomposition(
        average_kl,
        mean_stderr(values[0]),
        mean_stderr(values[1]),
        mean_stderr(values[2]),
        mean_stderr(values.sum(0)),
    )


# --------------------------------------------------------------------------------------------------
# A batched ensemble of disentangling VAEs

Kind = Literal["beta-vae", "dip-vae-i", "dip-vae-ii", "beta-tcvae"]
_KINDS = ("beta-vae", "dip-vae-i", "dip-vae-ii", "beta-tcvae")


class Objective(NamedTuple):
    r"""One member's training objective (a loss to minimise, per data point):

    - ``"beta-vae"``: :math:`\mathrm{rec} + \beta\,\mathrm{KL}` (β = 1: the VAE);
    - ``"dip-vae-i"`` / ``"dip-vae-ii"``: :math:`\mathrm{rec} + \mathrm{KL} + R` with
      :func:`dip_regularizer` (``lambda_od``, ``lambda_d``) on :math:`\mathrm{Cov}[\mu]` or on
      :math:`\mathrm{Cov}_{q(z)}[z]`;
    - ``"beta-tcvae"``: :math:`\mathrm{rec} + \mathrm{KL} + (\beta - 1)\,\mathrm{TC}` with
      :func:`total_correlation_mss`.
    """

    kind: Kind
    beta: float = 1.0
    lambda_od: float = 0.0
    lambda_d: float = 0.0

    @property
    def label(self) -> str:
        """A short name such as ``"β-VAE β=4"`` or ``"DIP-VAE-I"``."""
        if self.kind == "beta-vae":
            return "VAE" if self.beta == 1 else f"β-VAE β={self.beta:g}"
        if self.kind == "beta-tcvae":
            return f"β-TCVAE β={self.beta:g}"
        return "DIP-VAE-I" if self.kind == "dip-vae-i" else "DIP-VAE-II"


def _check_objective(objective: object) -> Objective:
    if not isinstance(objective, Objective):
        raise TypeError(f"objectives must be Objective tuples, got {type(objective).__name__}")
    if objective.kind not in _KINDS:
        raise ValueError(f"Objective.kind must be one of {_KINDS}, got {objective.kind!r}")
    check_positive_number("Objective.beta", objective.beta)
    check_positive_number("Objective.lambda_od", objective.lambda_od, allow_zero=True)
    check_positive_number("Objective.lambda_d", objective.lambda_d, allow_zero=True)
    return objective


class DisentanglingEnsemble(nn.Module):
    r"""Several VAEs with Bernoulli decoders and any mix of :class:`Objective` s, as one network.

    Member :math:`m` has an MLP encoder :math:`x \mapsto (\mu, \log\sigma)` and an MLP decoder
    :math:`z \mapsto` pixel logits (:class:`gdmlib.nets.BatchedMLP`, independent weights);
    every member sees the same minibatch, and the loss is the **sum** of the members' losses, so
    each member's gradient is its own (members share nothing). The reconstruction term is the
    binary cross-entropy with the grey levels as targets, summed over pixels (the Bernoulli
    likelihood of dlib's sprites models). Train it with :func:`gdmlib.training.fit`.

    Args:
        objectives: One :class:`Objective` per member.
        input_dim: Pixels per image (images are flattened).
        latent_dim: Dimension of :math:`z`.
        dataset_size: :math:`N`, for β-TCVAE's stratified sampling.
        hidden: Hidden widths of the encoder (the decoder uses them reversed).
        activation: The nonlinearity.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> ensemble = DisentanglingEnsemble(
        ...     [Objective("beta-vae"), Objective("dip-vae-ii", lambda_od=1.0, lambda_d=1.0)],
        ...     input_dim=16, latent_dim=2, dataset_size=100, hidden=(8,))
        >>> x = torch.rand(10, 16)
        >>> ensemble.loss(x).shape, ensemble.terms(x)["kl"].shape
        (torch.Size([]), torch.Size([2]))
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        input_dim: int,
        latent_dim: int,
        dataset_size: int,
        *,
        hidden: Sequence[int] = (256, 128),
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        if isinstance(objectives, Objective) or not isinstance(objectives, Sequence):
            raise TypeError("objectives must be a sequence of Objective tuples")
        if not objectives:
            raise ValueError("objectives must hold at least one Objective")
        self.objectives = tuple(_check_objective(objective) for objective in objectives)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.dataset_size = check_positive_int("dataset_size", dataset_size)
        members = len(self.objectives)
        hidden = tuple(hidden)
        self.encoder = BatchedMLP(members, input_dim, 2 * latent_dim, hidden, activation)
        self.decoder = BatchedMLP(members, latent_dim, input_dim, hidden[::-1], activation)
        self.register_buffer("_beta", torch.tensor([o.beta for o in self.objectives]))

    @property
    def members(self) -> int:
        """The number of members."""
        return len(self.objectives)

    def _flatten(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got {getattr(x, 'dtype', type(x))}")
        flat = x.reshape(x.shape[0], -1) if x.dim() > 1 else x
        if flat.dim() != 2 or flat.shape[1] != self.input_dim or flat.shape[0] < 2:
            raise ValueError(
                f"x must hold at least 2 points of {self.input_dim} pixels, got {tuple(x.shape)}"
            )
        return flat

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Means and standard deviations of every member's :math:`q(z \\mid x)`, each of shape
        ``(members, B, latent_dim)``."""
        flat = self._flatten(x)
        out = self.encoder(flat.unsqueeze(0).expand(self.members, -1, -1))
        mean, log_std = out.chunk(2, dim=-1)
        return mean, log_std.clamp(-10.0, 5.0).exp()

    @torch.no_grad()
    def encode(self, x: Tensor, chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
        """:meth:`posterior` without gradients, in chunks (a whole data set at once)."""
        parts = [self.posterior(x[i : i + chunk_size]) for i in range(0, x.shape[0], chunk_size)]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Pixel means :math:`\\sigma(\\text{logits})`, shape ``(members, B, input_dim)``, for
        latents ``z`` of shape ``(members, B, latent_dim)``."""
        return torch.sigmoid(self.decoder(z))

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Per member, averaged over the batch: ``rec`` (nats), ``kl``, ``regularizer`` (the
        objective's extra term), ``loss``; each of shape ``(members,)``."""
        flat = self._flatten(x)
        mean, std = self.posterior(flat)
        z = mean + std * torch.randn_like(std)
        logits = self.decoder(z)
        target = flat.unsqueeze(0).expand_as(logits)
        rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1).mean(1)
        kl = (0.5 * (mean.square() + std.square() - 1) - std.log()).sum(-1).mean(1)
        extra = []
        for m, objective in enumerate(self.objectives):
            if objective.kind == "beta-vae":
                extra.append((objective.beta - 1.0) * kl[m])
            elif objective.kind == "beta-tcvae":
                # unchecked: a NaN must reach fit's guard, not raise a ValueError here
                log_weights = mss_log_weights(
                    z.shape[1], max(self.dataset_size, z.shape[1]), dtype=z.dtype, device=z.device
                )
                tc = _total_correlation(z[m], mean[m], std[m], log_weights)
                extra.append((objective.beta - 1.0) * tc)
            else:
                variance = std[m].square() if objective.kind == "dip-vae-ii" else None
                extra.append(
                    dip_regularizer(
                        mean[m],
                        variance,
                        lambda_od=objective.lambda_od,
                        lambda_d=objective.lambda_d,
                    )
                )
        regularizer = torch.stack(extra)
        return {"rec": rec, "kl": kl, "regularizer": regularizer, "loss": rec + kl + regularizer}

    def loss(self, x: Tensor) -> Tensor:
        """The sum over members of their losses (for :func:`gdmlib.training.fit`)."""
        return self.terms(x)["loss"].sum()
