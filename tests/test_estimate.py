"""Tests of gdmlib.estimate: means with standard errors and paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdmlib import estimate
from gdmlib.estimate import Estimate, independent_difference, mean_stderr, paired_difference


def test_mean_stderr_matches_numpy_and_accepts_tensors() -> None:
    values = [0.3, 1.7, 2.2, -0.4, 1.1]
    estimate = mean_stderr(values)
    assert estimate.value == pytest.approx(np.mean(values), rel=1e-15)
    assert estimate.stderr == pytest.approx(np.std(values, ddof=1) / math.sqrt(5), rel=1e-15)
    assert mean_stderr(torch.tensor(values)) == pytest.approx(estimate, rel=1e-6)
    assert mean_stderr([2.0, 2.0]).stderr == 0.0


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ([1.0], ValueError, "at least two"),
        ([1.0, math.inf], ValueError, "finite"),
        ([1.0, float("nan")], ValueError, "finite"),
        (["a", "b"], TypeError, "must be numbers"),
    ],
)
def test_mean_stderr_rejects_bad_inputs(values, error, match) -> None:
    with pytest.raises(error, match=match):
        mean_stderr(values)


def test_paired_difference_is_the_mean_of_the_differences() -> None:
    first, second = [3.0, 5.0, 4.0, 8.0], [1.0, 4.5, 3.0, 6.0]
    difference = paired_difference(first, second)
    assert difference == pytest.approx(mean_stderr(np.subtract(first, second)), rel=1e-15)
    # Pairing removes the shared spread: far smaller than the standard error of either mean.
    assert difference.stderr < mean_stderr(first).stderr / 2


def test_paired_difference_needs_equal_sizes() -> None:
    with pytest.raises(ValueError, match="equal sizes"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_estimate_is_a_value_and_a_standard_error() -> None:
    estimate = Estimate(1.23456, 0.0123)
    assert estimate.value == 1.23456 and estimate.stderr == 0.0123
    assert str(estimate) == "1.2346 ± 0.0123"
    from gdmlib.divergences import Estimate as ReExported

    assert ReExported is Estimate


def test_independent_difference_adds_standard_errors_in_quadrature() -> None:
    difference = independent_difference(Estimate(1.0, 0.6), Estimate(0.25, 0.8))
    assert difference.value == 0.75 and difference.stderr == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(TypeError, match="must be an Estimate"):
        independent_difference((1.0, 0.5), Estimate(0.0, 0.1))  # type: ignore[arg-type]


def test_binomial_proportion_is_the_wald_standard_error() -> None:
    assert estimate.binomial_proportion(0.25, 300).stderr == pytest.approx(
        math.sqrt(0.25 * 0.75 / 300), rel=1e-15
    )
    assert estimate.binomial_proportion(0.0, 10) == (0.0, 0.0)
    assert estimate.binomial_proportion(1, 10) == (1.0, 0.0)
    # Simulated: the standard deviation of the rate over many repetitions matches the formula.
    rates = np.random.default_rng(0).binomial(400, 0.3, size=20_000) / 400
    assert rates.std() == pytest.approx(estimate.binomial_proportion(0.3, 400).stderr, rel=0.02)


@pytest.mark.parametrize(
    ("rate", "trials", "error", "match"),
    [
        (1.5, 10, ValueError, r"rate must lie in \[0, 1\]"),
        (-0.1, 10, ValueError, r"rate must lie in \[0, 1\]"),
        (0.5, 0, ValueError, "trials must be a positive int"),
        (0.5, 2.0, TypeError, "trials must be an int"),
        ("0.5", 2, TypeError, "rate must be a number"),
    ],
)
def test_binomial_proportion_rejects_bad_inputs(rate, trials, error, match) -> None:
    with pytest.raises(error, match=match):
        estimate.binomial_proportion(rate, trials)
