"""Tests for gdmlib.likelihood: the kernel density estimate, bandwidth selection, mixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, Uniform

from gdmlib import likelihood
from gdmlib.likelihood import KernelDensity, Mixture, select_bandwidth


def reference_kde_log_prob(points: np.ndarray, queries: np.ndarray, h: float) -> np.ndarray:
    """The formula, one query at a time, with scipy's logsumexp."""
    n, d = points.shape
    out = []
    for query in queries:
        exponents = -((query - points) ** 2).sum(1) / (2 * h * h)
        out.append(logsumexp(exponents) - math.log(n) - 0.5 * d * math.log(2 * math.pi * h * h))
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# KernelDensity
# ---------------------------------------------------------------------------------------------


def test_kde_log_prob_equals_the_formula_and_torch_mixture() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.randn(30, 3, generator=g, dtype=torch.float64)
    queries = 2 * torch.randn(7, 3, generator=g, dtype=torch.float64)
    kde = KernelDensity(points, bandwidth=0.4)
    expected = reference_kde_log_prob(points.numpy(), queries.numpy(), 0.4)
    assert np.allclose(kde.log_prob(queries).numpy(), expected, rtol=0, atol=1e-10)
    as_mixture = MixtureSameFamily(
        Categorical(logits=torch.zeros(30, dtype=torch.float64)),
        Independent(Normal(points, 0.4), 1),
    )
    assert torch.allclose(kde.log_prob(queries), as_mixture.log_prob(queries), atol=1e-10)


def test_kde_is_accurate_in_float32_far_from_the_origin_with_a_small_bandwidth() -> None:
    g = torch.Generator().manual_seed(1)
    points = torch.randn(50, 8, generator=g, dtype=torch.float64) + 100.0
    queries = points[:5] + 0.05 * torch.randn(5, 8, generator=g, dtype=torch.float64)
    exact = KernelDensity(points, 0.05).log_prob(queries)
    single = KernelDensity(points.float(), 0.05).log_prob(queries.float())
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), exact, atol=1e-3)


def test_kde_integrates_to_one_in_one_dimension() -> None:
    points = torch.tensor([[-1.0], [0.3], [2.0]], dtype=torch.float64)
    grid = torch.linspace(-8, 10, 20_001, dtype=torch.float64)
    density = KernelDensity(points, 0.25).log_prob(grid[:, None]).exp()
    assert abs(torch.trapezoid(density, grid).item() - 1.0) < 1e-8


def test_kde_log_prob_keeps_batch_dimensions_and_works_in_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(2)
    points = torch.randn(20, 2, generator=g, dtype=torch.float64)
    queries = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    kde = KernelDensity(points, 0.7)
    whole = kde.log_prob(queries)
    assert whole.shape == (3, 4)
    monkeypatch.setattr(likelihood, "_MAX_BLOCK_ELEMENTS", 25)  # one query per block
    assert torch.allclose(kde.log_prob(queries), whole, atol=1e-12)
    assert torch.allclose(whole.reshape(-1), kde.log_prob(queries.reshape(-1, 2)), atol=1e-12)


def test_kde_is_bracketed_by_its_nearest_neighbour() -> None:
    # -D^2/(2h^2) - d/2 log(2 pi h^2) - log n <= log p_h(x) <= the same without -log n.
    g = torch.Generator().manual_seed(3)
    points = torch.randn(100, 5, generator=g, dtype=torch.float64)
    queries = torch.randn(200, 5, generator=g, dtype=torch.float64)
    h = 0.3
    upper = -(torch.cdist(queries, points).min(1).values ** 2) / (2 * h * h) - 2.5 * math.log(
        2 * math.pi * h * h
    )
    values = KernelDensity(points, h).log_prob(queries)
    assert (values <= upper + 1e-9).all() and (values >= upper - math.log(100) - 1e-9).all()


def test_kde_samples_are_blurred_training_points(device: torch.device) -> None:
    torch.manual_seed(4)
    points = torch.tensor([[-3.0, 0.0], [3.0, 1.0]], dtype=torch.float64, device=device)
    kde = KernelDensity(points, 0.5)
    samples = kde.sample((20_000,))
    assert samples.shape == (20_000, 2) and samples.device.type == device.type
    assert samples.dtype == torch.float64
    nearest = torch.cdist(samples, points).argmin(1)
    offsets = samples - points[nearest]
    # Mean and variance of the blur (the two points are 12 bandwidths apart: no misassignment).
    stderr = 0.5 / math.sqrt(samples.numel())
    assert offsets.mean().abs().item() < 4 * stderr
    assert abs(offsets.var().item() - 0.25) < 4 * 0.25 * math.sqrt(2 / samples.numel())
    assert abs(nearest.double().mean().item() - 0.5) < 4 * 0.5 / math.sqrt(20_000)
    assert torch.allclose(kde.mean, points.mean(0)) and torch.allclose(
        kde.variance, torch.tensor([9.25, 0.5], dtype=torch.float64, device=device)
    )
    assert kde.log_prob(samples[:10]).device.type == device.type


def test_kde_rsample_is_differentiable_in_the_points() -> None:
    points = torch.zeros(3, 2, requires_grad=True)
    KernelDensity(points, 1.0).rsample((5,)).sum().backward()
    assert points.grad is not None and points.grad.sum().item() == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("points", "bandwidth", "error", "match"),
    [
        (np.zeros((3, 2)), 1.0, TypeError, "torch.Tensor"),
        (torch.zeros(3, 2, dtype=torch.long), 1.0, TypeError, "floating dtype"),
        (torch.zeros(3), 1.0, ValueError, r"shape \(n, d\)"),
        (torch.tensor([[0.0], [math.nan]]), 1.0, ValueError, "finite"),
        (torch.zeros(3, 2), 0.0, ValueError, "positive"),
        (torch.zeros(3, 2), math.inf, ValueError, "positive"),
        (torch.zeros(3, 2), "scott", TypeError, "bandwidth"),
    ],
)
def test_kde_rejects_bad_arguments(points, bandwidth, error, match) -> None:
    with pytest.raises(error, match=match):
        KernelDensity(points, bandwidth)


def test_kde_log_prob_rejects_bad_values() -> None:
    kde = KernelDensity(torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        kde.log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating"):
        kde.log_prob(torch.zeros(4, 2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# select_bandwidth
# ---------------------------------------------------------------------------------------------


def test_select_bandwidth_maximises_the_held_out_likelihood() -> None:
    g = torch.Generator().manual_seed(5)
    train, valid = (
        torch.randn(300, 2, generator=g, dtype=torch.float64),
        torch.randn(200, 2, generator=g, dtype=torch.float64),
    )
    candidates = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    selection = select_bandwidth(train, valid, candidates)
    direct = [KernelDensity(train, h).log_prob(valid).mean().item() for h in candidates]
    assert np.allclose(selection.log_likelihoods, direct, atol=1e-10)
    assert selection.bandwidth == candidates[int(np.argmax(direct))]
    assert selection.bandwidths == tuple(candidates)
    assert 0.1 < selection.bandwidth < 1.6  # neither spiky nor flat


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"candidates": []}, ValueError, "non-empty"),
        ({"candidates": [0.1, -1.0]}, ValueError, "positive"),
        ({"validation": torch.zeros(4, 3)}, ValueError, "same dimension"),
        ({"validation": torch.zeros(4, 2, dtype=torch.float64)}, ValueError, "dtype and device"),
    ],
)
def test_select_bandwidth_rejects_bad_arguments(kwargs, error, match) -> None:
    arguments = {"points": torch.randn(5, 2), "validation": torch.randn(4, 2), "candidates": [0.5]}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        select_bandwidth(**arguments)


# ---------------------------------------------------------------------------------------------
# Mixture
# ---------------------------------------------------------------------------------------------


def test_mixture_log_prob_is_the_log_of_the_weighted_sum() -> None:
    first = Independent(Normal(torch.zeros(3, dtype=torch.float64), 1.0), 1)
    second = Independent(Normal(torch.ones(3, dtype=torch.float64), 3.0), 1)
    mixture = Mixture([first, second], [0.01, 0.99])
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 4
    expected = torch.log(0.01 * first.log_prob(x).exp() + 0.99 * second.log_prob(x).exp())
    assert torch.allclose(mixture.log_prob(x), expected, atol=1e-12)
    # The bound of Theis et al.: never more than log 100 below the first component.
    assert (mixture.log_prob(x) - first.log_prob(x) >= -math.log(100) - 1e-12).all()


def test_mixture_handles_components_with_bounded_support_and_zero_weights() -> None:
    mixture = Mixture([Normal(0.0, 1.0), Uniform(-1.0, 1.0), Normal(5.0, 1.0)], [0.5, 0.5, 0.0])
    x = torch.tensor([0.0, 3.0, -2.0])
    expected = torch.log(
        0.5 * Normal(0.0, 1.0).log_prob(x).exp() + 0.5 * torch.tensor([0.5, 0.0, 0.0])
    )
    assert torch.allclose(mixture.log_prob(x), expected, atol=1e-6)
    only_uniform = Mixture([Uniform(-1.0, 1.0)], [1.0])
    assert only_uniform.log_prob(torch.tensor([2.0, 3.0])).tolist() == [-math.inf, -math.inf]


def test_mixture_samples_each_component_with_its_weight(device: torch.device) -> None:
    torch.manual_seed(7)
    left = Independent(Normal(torch.full((2,), -10.0, device=device), 1.0), 1)
    right = Independent(Normal(torch.full((2,), 10.0, device=device), 1.0), 1)
    samples = Mixture([left, right], [0.3, 0.7]).sample((4, 5000))
    assert samples.shape == (4, 5000, 2) and samples.device.type == device.type
    assert (
        (samples[..., 0] > 0) == (samples[..., 1] > 0)
    ).all()  # each draw comes from one component
    fraction = (samples[..., 0] > 0).double().mean().item()
    assert abs(fraction - 0.7) < 4 * math.sqrt(0.21 / 20_000)
    assert Mixture([left, right], [0.3, 0.7]).sample().shape == (2,)


@pytest.mark.parametrize(
    ("components", "weights", "error", "match"),
    [
        ([], [], ValueError, "components is empty"),
        ([Normal(0.0, 1.0), "noise"], [0.5, 0.5], TypeError, r"components\[1\]"),
        (
            [Normal(0.0, 1.0), Independent(Normal(torch.zeros(2), 1.0), 1)],
            [0.5, 0.5],
            ValueError,
            "event shape",
        ),
        ([Normal(torch.zeros(2), 1.0)], [1.0], ValueError, "batch_shape"),
        ([Normal(0.0, 1.0), Normal(1.0, 1.0)], [1.0], ValueError, "one weight per component"),
        ([Normal(0.0, 1.0), Normal(1.0, 1.0)], [1.5, -0.5], ValueError, "non-negative"),
        ([Normal(0.0, 1.0), Normal(1.0, 1.0)], [0.5, 0.6], ValueError, "sum to 1"),
    ],
)
def test_mixture_rejects_bad_arguments(components, weights, error, match) -> None:
    with pytest.raises(error, match=match):
        Mixture(components, weights)
