"""Tests for gdmlib.metrics: mode coverage on mixtures of well-separated Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from gdmlib.metrics import ModeCoverage, mode_coverage

STD = 0.02


def ring_centers(
    count: int = 8, radius: float = 2.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float().to(device)


def mixture_samples(centers: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """count samples of the true mixture: a uniformly chosen centre plus STD * N(0, I)."""
    which = torch.randint(centers.shape[0], (count,), generator=generator)
    noise = STD * torch.randn(count, centers.shape[1], generator=generator)
    return centers[which.to(centers.device)] + noise.to(centers.device)


def test_samples_of_the_true_ring_cover_every_mode(device: torch.device) -> None:
    centers = ring_centers(device=device)
    result = mode_coverage(
        mixture_samples(centers, 2500, torch.Generator().manual_seed(0)), centers, std=STD
    )
    assert isinstance(result, ModeCoverage)
    assert result.modes == 8 and sum(result.counts) == round(result.high_quality * 2500)
    # |noise|² / std² is chi² with 2 degrees of freedom: P(|noise| <= 3 std) = 1 - exp(-9/2).
    expected = 1 - math.exp(-4.5)
    assert abs(result.high_quality - expected) < 4 * math.sqrt(expected * (1 - expected) / 2500)
    # A multinomial histogram of 2500 draws over 8 cells: E KL ≈ (K - 1) / (2 N) = 0.0014.
    assert 0 <= result.reverse_kl < 0.01


def test_collapse_onto_one_mode_gives_reverse_kl_log_k() -> None:
    centers = ring_centers()
    collapsed = mixture_samples(centers[2:3], 2500, torch.Generator().manual_seed(1))
    result = mode_coverage(collapsed, centers, std=STD)
    assert result.modes == 1 and result.counts[2] == sum(result.counts)
    assert result.reverse_kl == math.log(8)


def test_equal_coverage_of_some_modes_gives_log_k_over_covered() -> None:
    centers = ring_centers()
    samples = centers[:3].repeat(100, 1)  # exactly 100 per mode, all on the centres
    result = mode_coverage(samples, centers, std=STD)
    assert result.modes == 3 and result.counts == (100, 100, 100, 0, 0, 0, 0, 0)
    assert result.reverse_kl == pytest.approx(math.log(8 / 3), rel=1e-12)


def test_samples_far_from_every_mode_count_for_nothing() -> None:
    centers = ring_centers()
    far = 10.0 + torch.randn(500, 2)
    result = mode_coverage(far, centers, std=STD)
    assert result.modes == 0 and result.high_quality == 0.0 and result.reverse_kl == math.inf
    assert result.counts == (0,) * 8


def test_high_quality_radius_is_three_std_inclusive() -> None:
    centers = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    samples = torch.tensor([[3.0, 0.0], [0.0, -3.0], [3.01, 0.0], [97.5, 0.0]])
    result = mode_coverage(samples, centers, std=1.0)
    assert result.counts == (2, 1) and result.high_quality == 0.75
    assert result.reverse_kl == pytest.approx(
        2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3), rel=1e-12
    )


def test_mixed_dtypes_and_higher_dimensions() -> None:
    centers = torch.eye(5, dtype=torch.float64) * 10.0
    samples = (centers[[0, 1, 1, 4]] + 0.1).float()
    result = mode_coverage(samples, centers, std=0.1)  # each sample is sqrt(5) * 0.1 < 0.3 away
    assert result.modes == 3 and result.counts == (1, 2, 0, 0, 1) and result.high_quality == 1.0


@pytest.mark.parametrize(
    ("samples", "centers", "std", "error", "match"),
    [
        (
            torch.zeros(4),
            torch.zeros(2, 2),
            0.1,
            ValueError,
            r"samples must have shape \(count, d\)",
        ),
        (torch.zeros(0, 2), torch.zeros(2, 2), 0.1, ValueError, "count >= 1"),
        (torch.zeros(4, 2), torch.zeros(2, 3), 0.1, ValueError, "same dimension"),
        (
            torch.zeros(4, 2, dtype=torch.long),
            torch.zeros(2, 2),
            0.1,
            TypeError,
            "samples must be a floating",
        ),
        ([[0.0, 0.0]], torch.zeros(2, 2), 0.1, TypeError, "samples must be a floating"),
        (torch.zeros(4, 2), torch.zeros(2, 2), 0.0, ValueError, "std must be a finite positive"),
        (
            torch.zeros(4, 2),
            torch.zeros(2, 2),
            float("nan"),
            ValueError,
            "std must be a finite positive",
        ),
        (torch.zeros(4, 2), torch.zeros(2, 2), "0.1", TypeError, "std must be a positive number"),
        (torch.full((4, 2), float("nan")), torch.zeros(2, 2), 0.1, ValueError, "finite"),
    ],
)
def test_bad_inputs_raise_clear_errors(samples, centers, std, error, match) -> None:
    with pytest.raises(error, match=match):
        mode_coverage(samples, centers, std)


def test_bounded_reverse_kl_replaces_inf_by_log_k() -> None:
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    nowhere = mode_coverage(torch.full((5, 2), 5.0), centers, std=0.1)
    assert nowhere.reverse_kl == math.inf and nowhere.bounded_reverse_kl == pytest.approx(
        math.log(3), rel=1e-15
    )
    one_mode = mode_coverage(torch.zeros(5, 2), centers, std=0.1)
    assert (
        one_mode.bounded_reverse_kl == one_mode.reverse_kl == pytest.approx(math.log(3), rel=1e-15)
    )
    balanced = mode_coverage(centers.repeat(2, 1), centers, std=0.1)
    assert balanced.bounded_reverse_kl == balanced.reverse_kl == pytest.approx(0.0, abs=1e-15)
