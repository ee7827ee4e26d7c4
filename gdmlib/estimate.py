r"""Estimates with their standard errors: a value, how uncertain it is, and paired comparisons.

Every Monte Carlo number of the book, and every claim about trained models, is a mean over
independent draws, points or seeds, reported as :math:`\bar x \pm s / \sqrt n` with :math:`s` the
sample standard deviation. A claim "A scores higher than B" is checked on the **paired**
differences :math:`d_i = a_i - b_i` (same seed, same draws for both), whose standard error is
usually far smaller than that of either mean (a rate of successes, such as a test's power or a
classifier's accuracy, has the binomial standard error of :func:`binomial_proportion`):

.. math::
    \bar d > k \, \frac{s_d}{\sqrt n}, \qquad k \approx 3 \text{ or } 4.

Used by every chapter (its asserts) and by :mod:`gdmlib.divergences`, :mod:`gdmlib.gan`,
:mod:`gdmlib.vae` (their Monte Carlo estimators).

Example:
    >>> mean_stderr([1.0, 2.0, 3.0, 4.0])
    Estimate(value=2.5, stderr=0.6454972243679028)
    >>> paired_difference([2.0, 3.0, 5.0], [1.0, 1.5, 3.5]).value
    1.3333333333333333

References:
    Casella & Berger (2002). Statistical Inference, 2nd ed., section 5.2 (the sample mean and its
    variance) and 8.3 (paired comparisons).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch  # noqa: F401  (the doctests use ``torch``)
from torch import Tensor

from gdmlib._checks import check_positive_int, check_probability

__all__ = [
    "Estimate",
    "binomial_proportion",
    "independent_difference",
    "mean_stderr",
    "paired_difference",
]


class Estimate(NamedTuple):
    """A Monte Carlo estimate and its standard error.

    Attributes:
        value: The estimate.
        stderr: Its standard error (standard deviation of the estimator).
    """

    value: float
    stderr: float

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.stderr:.4f}"


def _as_finite_array(name: str, values: object) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be numbers (a sequence, an array or a tensor), got "
            f"{type(values).__name__}"
        ) from error
    if array.size < 2:
        raise ValueError(f"a standard error needs at least two values, {name} has {array.size}")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} must be finite (no NaN or inf); bound them first, e.g. "
            "ModeCoverage.bounded_reverse_kl"
        )
    return array


def mean_stderr(values: object) -> Estimate:
    r"""The mean of independent values (points, draws, runs, seeds) and its standard error
    :math:`s / \sqrt{n}`.

    Args:
        values: At least two finite numbers (a sequence, an array or a tensor of any shape).

    Returns:
        An :class:`Estimate` ``(value, stderr)`` with the sample standard deviation (``ddof=1``).

    Raises:
        TypeError: If ``values`` is not numeric.
        ValueError: If there are fewer than two values, or a value is not finite.

    Example:
        >>> mean_stderr(torch.tensor([0.5, 1.5]))
        Estimate(value=1.0, stderr=0.5)
    """
    array = _as_finite_array("values", values)
    return Estimate(float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size)))


def paired_difference(first: object, second: object) -> Estimate:
    r"""The mean of ``first - second``, element by element, and its standard error.

    Pairing removes what both share (the seed, the initial weights, the evaluation draws): the
    standard error of the differences is what decides whether ``first`` is larger.

    Args:
        first: At least two finite numbers.
        second: As many finite numbers, paired with ``first`` by position.

    Returns:
        ``mean_stderr(first - second)``.

    Raises:
        TypeError: If either is not numeric.
        ValueError: If their sizes differ, or as :func:`mean_stderr`.

    Example:
        >>> difference = paired_difference([10.0, 20.0, 30.0], [9.0, 19.5, 28.5])
        >>> round(difference.value, 6), round(difference.stderr, 6)
        (1.0, 0.288675)
    """
    a, b = _as_finite_array("first", first), _as_finite_array("second", second)
    if a.size != b.size:
        raise ValueError(f"paired values need equal sizes, got {a.size} and {b.size}")
    return mean_stderr(a - b)


def independent_difference(first: Estimate, second: Estimate) -> Estimate:
    r"""``first - second`` for two estimates from independent draws: the standard errors add in
    quadrature, :math:`\sqrt{s_1^2 + s_2^2}`.

    Use :func:`paired_difference` instead when the two share their draws (same seed, same points):
    pairing keeps what they have in common out of the standard error.

    Raises:
        TypeError: If either is not an :class:`Estimate`.

    Example:
        >>> independent_difference(Estimate(5.0, 0.3), Estimate(2.0, 0.4))
        Estimate(value=3.0, stderr=0.5)
    """
    for name, value in (("first", first), ("second", second)):
        if not isinstance(value, Estimate):
            raise TypeError(f"{name} must be an Estimate, got {type(value).__name__}")
    return Estimate(first.value - second.value, math.hypot(first.stderr, second.stderr))


def binomial_proportion(rate: float, trials: int) -> Estimate:
    r"""A rate of successes in ``trials`` independent trials and its standard error
    :math:`\sqrt{\hat p (1 - \hat p) / n}`.

    The rejection rate of a test over repetitions (its size or power), the accuracy of a classifier
    on a held-out set, the fraction of samples near a mode. The standard error is 0 at
    :math:`\hat p \in \{0, 1\}`: with a small ``trials`` prefer a margin in the claim.

    Args:
        rate: The observed fraction :math:`\hat p` in :math:`[0, 1]`.
        trials: The number of trials :math:`n \ge 1`.

    Returns:
        ``Estimate(rate, stderr)``.

    Raises:
        TypeError: If ``rate`` is not a real number or ``trials`` not an int.
        ValueError: If ``rate`` is outside :math:`[0, 1]` or ``trials`` below 1.

    Example:
        >>> accuracy = binomial_proportion(0.9, 100)
        >>> accuracy.value, round(accuracy.stderr, 12)
        (0.9, 0.03)
    """
    rate = check_probability("rate", rate, open_interval=False)
    trials = check_positive_int("trials", trials)
    return Estimate(rate, math.sqrt(rate * (1.0 - rate) / trials))


def _mean_se_tensor(values: Tensor) -> Estimate:
    # For the library's estimators: float64, and a NaN standard error for a single value instead of
    # an error (an estimator may be asked for one draw).
    values = values.detach().double()
    count = values.numel()
    stderr = float(values.std(unbiased=True) / math.sqrt(count)) if count > 1 else float("nan")
    return Estimate(float(values.mean()), stderr)
