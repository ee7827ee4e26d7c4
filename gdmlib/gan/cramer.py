r"""The Cramér critique: exact expected minibatch losses of a Bernoulli model, and their minimisers.

Bellemare et al. (2017): the sample Wasserstein loss :math:`W_1(\hat P_m, Q_\theta)` has biased
gradients, the energy (Cramér) distance does not. For :math:`P = \mathrm{Bernoulli}(p^*)` the
expectation over the minibatch is a finite binomial sum, computed here exactly and differentiably
(:func:`bernoulli_minibatch_loss`), with its minimiser (:func:`bernoulli_minibatch_minimizer`).
Used by chapter 08.

References:
    Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer, Munos. The Cramer distance as
    a solution to biased Wasserstein gradients. arXiv:1705.10743, 2017.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib._checks import check_probability

__all__ = ["MinibatchDistance", "bernoulli_minibatch_loss", "bernoulli_minibatch_minimizer"]


def _check_probability(name: str, value: object) -> float:
    return check_probability(name, value, open_interval=False)


MinibatchDistance = Literal["wasserstein", "energy"]


def _binomial_pmf(trials: int, probability: float, like: torch.Tensor) -> torch.Tensor:
    successes = torch.arange(trials + 1, dtype=torch.float64, device=like.device)
    p = torch.tensor(probability, dtype=torch.float64, device=like.device)
    log_choose = (
        math.lgamma(trials + 1) - torch.lgamma(successes + 1) - torch.lgamma(trials - successes + 1)
    )
    # xlogy makes 0 log 0 = 0, so p = 0 and p = 1 give point masses.
    log_pmf = (
        log_choose
        + torch.special.xlogy(successes, p)
        + torch.special.xlogy(trials - successes, 1 - p)
    )
    return log_pmf.exp()


def bernoulli_minibatch_loss(
    theta: torch.Tensor, p_star: float, batch_size: int, distance: MinibatchDistance = "wasserstein"
) -> torch.Tensor:
    r"""The expected minibatch loss :math:`\mathbb{E}\, d(\hat P_m, Q_\theta)` of a Bernoulli model,
    exactly.

    The data distribution is :math:`P = \mathrm{Bernoulli}(p^*)` on :math:`\{0, 1\}`, the model
    :math:`Q_\theta = \mathrm{Bernoulli}(\theta)`, and :math:`\hat P_m` the empirical distribution
    of a minibatch of :math:`m` independent draws of :math:`P`: it is
    :math:`\mathrm{Bernoulli}(K/m)` with :math:`K \sim \mathrm{Binomial}(m, p^*)`. Between two
    distributions on :math:`\{0, 1\}` the distances are functions of the difference of the masses at
    1 (all the mass that moves moves by 1; the CDFs differ by it on :math:`[0, 1)`):

    .. math::
        W_1(\hat P_m, Q_\theta) = \Bigl|\frac{K}{m} - \theta\Bigr|, \qquad
        \mathcal{E}(\hat P_m, Q_\theta) = 2 \int (F_{\hat P_m} - F_{Q_\theta})^2
        = 2 \Bigl(\frac{K}{m} - \theta\Bigr)^2,

    with :math:`\mathcal E` the energy distance (twice the squared Cramér distance). The expectation
    over the minibatch is the finite sum
    :math:`\sum_{k=0}^{m} \binom{m}{k} p^{*k} (1 - p^*)^{m-k}\, d_k(\theta)`, computed here exactly
    (no Monte Carlo), in float64, differentiably in ``theta``: autograd gives the *expected
    gradient* :math:`\mathbb{E}\, \partial_\theta d(\hat P_m, Q_\theta)`, the mean of the gradients
    that minibatch training follows. For :math:`W_1` it is :math:`2 P(K/m < \theta) - 1` between
    the kinks :math:`k/m`, which changes sign at the median of :math:`K/m`, not at :math:`p^*`
    (Bellemare et al. 2017, section 3). For :math:`\mathcal E` it is
    :math:`4(\theta - p^*)`, the gradient of the true
    :math:`\mathcal E(P, Q_\theta) = 2(\theta - p^*)^2`: the sample energy loss has unbiased
    gradients.

    Args:
        theta: Model parameters in :math:`[0, 1]`, a floating tensor of any shape.
        p_star: The data's parameter :math:`p^* \in [0, 1]`.
        batch_size: The minibatch size :math:`m \ge 1`.
        distance: ``"wasserstein"`` (:math:`W_1`, equal to :math:`W_p^p` for every :math:`p` here)
            or ``"energy"``.

    Returns:
        The expected loss, a tensor of the shape, dtype and device of ``theta``.

    Raises:
        TypeError: If ``theta`` is not a floating tensor, or ``p_star`` / ``batch_size`` have the
            wrong type.
        ValueError: If a value lies outside its range, or ``distance`` is unknown.

    References:
        Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer, Munos. The Cramer distance
        as a solution to biased Wasserstein gradients. arXiv:1705.10743, 2017, section 3.

    Example:
        >>> import torch
        >>> theta = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        >>> # K/m is 0 or 1, each with probability 1/2
        >>> bernoulli_minibatch_loss(theta, 0.5, 1).tolist()
        [0.5, 0.5, 0.5]
        >>> # 2 (theta - p*)^2 + 2 p*(1 - p*) / m
        >>> bernoulli_minibatch_loss(theta, 0.5, 1, "energy").tolist()
        [1.0, 0.5, 1.0]
    """
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta must be a floating-point torch.Tensor, got {type(theta).__name__}")
    if bool(((theta < 0) | (theta > 1)).any()) or not bool(torch.isfinite(theta).all()):
        raise ValueError("theta must lie in [0, 1]")
    p_star = _check_probability("p_star", p_star)
    batch_size = _check_positive_int("batch_size", batch_size)
    if distance not in ("wasserstein", "energy"):
        raise ValueError(f"distance must be 'wasserstein' or 'energy', got {distance!r}")
    weights = _binomial_pmf(batch_size, p_star, theta)
    means = torch.arange(batch_size + 1, dtype=torch.float64, device=theta.device) / batch_size
    gaps = means - theta.double().unsqueeze(-1)
    losses = gaps.abs() if distance == "wasserstein" else 2 * gaps.square()
    return (losses * weights).sum(dim=-1).to(theta.dtype)


def bernoulli_minibatch_minimizer(
    p_star: float, batch_size: int, distance: MinibatchDistance = "wasserstein"
) -> float:
    r"""The :math:`\theta \in [0, 1]` that minimises :func:`bernoulli_minibatch_loss`.

    - ``"wasserstein"``: :math:`\theta \mapsto \mathbb{E}\lvert K/m - \theta\rvert` is convex and
      piecewise linear with kinks at :math:`k/m`, so it is evaluated at the :math:`m + 1` kinks and
      the smallest minimising kink is returned: a median of :math:`K/m` (when
      :math:`P(K \le k) = 1/2` exactly, all of :math:`[k/m, (k+1)/m]` minimises).
    - ``"energy"``: the expected loss is a quadratic in :math:`\theta`, so its derivative is affine;
      the derivative is taken by autograd at :math:`\theta = 0` and :math:`1` and its root
      :math:`g(0) / (g(0) - g(1))` returned (it is :math:`p^*`, up to rounding).

    Both use the same exact binomial sum as :func:`bernoulli_minibatch_loss`.

    Args:
        p_star: The data's parameter :math:`p^* \in [0, 1]`.
        batch_size: The minibatch size :math:`m \ge 1`.
        distance: ``"wasserstein"`` or ``"energy"``.

    Returns:
        The minimiser, a float.

    Raises:
        TypeError, ValueError: As :func:`bernoulli_minibatch_loss`.

    References:
        Bellemare et al. The Cramer distance as a solution to biased Wasserstein gradients.
        arXiv:1705.10743, 2017, section 3.

    Example:
        >>> # not 0.65
        >>> bernoulli_minibatch_minimizer(0.65, 1), bernoulli_minibatch_minimizer(0.65, 2)
        (1.0, 0.5)
        >>> round(bernoulli_minibatch_minimizer(0.65, 2, "energy"), 9)
        0.65
    """
    p_star = _check_probability("p_star", p_star)
    batch_size = _check_positive_int("batch_size", batch_size)
    if distance == "wasserstein":
        kinks = torch.arange(batch_size + 1, dtype=torch.float64) / batch_size
        return float(kinks[bernoulli_minibatch_loss(kinks, p_star, batch_size, distance).argmin()])
    if distance == "energy":
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
        (slopes,) = torch.autograd.grad(
            bernoulli_minibatch_loss(ends, p_star, batch_size, distance).sum(), ends
        )
        return float(slopes[0] / (slopes[0] - slopes[1]))
    raise ValueError(f"distance must be 'wasserstein' or 'energy', got {distance!r}")
