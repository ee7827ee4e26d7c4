"""Tests for gdmlib.two_sample: the unbiased MMD², the permutation test and the classifier test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import binom

from gdmlib import two_sample
from gdmlib.training import NonFiniteLossError
from gdmlib.two_sample import (
    TestResult,
    c2st,
    gaussian_kernel,
    median_bandwidth,
    mlp_classifier,
    mmd2,
    mmd_test,
)

ALPHA = 0.05


def rejection_bound(reps: int) -> int:
    """The 99.9% quantile of Bin(reps, alpha): a calibrated test exceeds it with probability
    0.1%."""
    return int(binom.ppf(0.999, reps, ALPHA))


def reference_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Gretton et al. (2012), eq. 3, written as the double loops of the formula."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * bandwidth**2))

    n, m = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return within_x + within_y - 2 * cross


def gaussian_mmd2(shift: torch.Tensor, scale: float, bandwidth: float) -> float:
    """MMD² between N(0, I) and N(shift, scale² I) for the Gaussian kernel, in closed form.

    For a - b ~ N(delta, v I) in d dimensions, E exp(-|a - b|² / (2 s²)) = (s² / (s² + v))^{d/2}
    exp(-|delta|² / (2 (s² + v))).
    """
    d, s2 = shift.numel(), bandwidth**2

    def expected_kernel(variance: float, mean_sq: float) -> float:
        return (s2 / (s2 + variance)) ** (d / 2) * math.exp(-mean_sq / (2 * (s2 + variance)))

    mean_sq = float(shift.pow(2).sum())
    return (
        expected_kernel(2.0, 0.0)
        + expected_kernel(2 * scale**2, 0.0)
        - 2 * expected_kernel(1 + scale**2, mean_sq)
    )


# ---------------------------------------------------------------------------------------------
# mmd2
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bandwidth", [0.7, None])
def test_mmd2_equals_the_double_loop_formula(bandwidth: float | None) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.5
    sigma = bandwidth if bandwidth is not None else median_bandwidth(x, y)
    expected = reference_mmd2(x.numpy(), y.numpy(), sigma)
    assert abs(mmd2(x, y, bandwidth=bandwidth).item() - expected) < 1e-10


def test_mmd2_is_symmetric_and_accepts_unequal_sizes() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 2, generator=g), torch.randn(17, 2, generator=g) + 1.0
    assert torch.allclose(mmd2(x, y), mmd2(y, x), atol=1e-6)
    assert torch.allclose(mmd2(x, y, bandwidth=0.5), mmd2(y, x, bandwidth=0.5), atol=1e-6)


def test_one_dimensional_inputs_are_samples_of_scalars() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = (
        torch.randn(20, generator=g, dtype=torch.float64),
        torch.randn(25, generator=g, dtype=torch.float64),
    )
    assert mmd2(x, y).item() == pytest.approx(mmd2(x[:, None], y[:, None]).item(), abs=1e-14)


def test_mmd2_is_unbiased_under_h0() -> None:
    # With the median heuristic too: the bandwidth depends only on the pooled sample.
    g = torch.Generator().manual_seed(4)
    values = torch.tensor(
        [
            mmd2(torch.randn(8, 2, generator=g), torch.randn(12, 2, generator=g)).item()
            for _ in range(1000)
        ]
    )
    stderr = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item()) < 4 * stderr


def test_mmd2_is_unbiased_for_the_closed_form_under_h1() -> None:
    # At n = 8 the biased (V-statistic) estimate would be off by about 0.09, i.e. some 40 standard
    # errors.
    g = torch.Generator().manual_seed(5)
    shift, scale, bandwidth = torch.tensor([1.0, 0.0], dtype=torch.float64), 0.8, 1.0
    values = torch.tensor(
        [
            mmd2(
                torch.randn(8, 2, generator=g, dtype=torch.float64),
                scale * torch.randn(12, 2, generator=g, dtype=torch.float64) + shift,
                bandwidth=bandwidth,
            ).item()
            for _ in range(1000)
        ]
    )
    stderr = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - gaussian_mmd2(shift, scale, bandwidth)) < 4 * stderr


def test_median_bandwidth_is_the_median_pairwise_distance_of_the_pooled_sample() -> None:
    g = torch.Generator().manual_seed(6)
    for n, m in [(5, 6), (4, 4)]:  # an odd (55) and an even (28) number of pairs
        x, y = (
            torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randn(m, 3, generator=g, dtype=torch.float64),
        )
        expected = float(np.median(pdist(np.concatenate([x.numpy(), y.numpy()]))))
        assert median_bandwidth(x, y) == pytest.approx(expected, rel=1e-12)


def test_median_heuristic_is_the_default_and_makes_mmd2_scale_invariant() -> None:
    g = torch.Generator().manual_seed(7)
    x, y = (
        torch.randn(40, 2, generator=g, dtype=torch.float64),
        torch.randn(30, 2, generator=g, dtype=torch.float64) + 0.5,
    )
    default = mmd2(x, y).item()
    assert default == pytest.approx(mmd2(x, y, bandwidth=median_bandwidth(x, y)).item(), abs=1e-14)
    assert default == pytest.approx(mmd2(7.0 * x + 3.0, 7.0 * y + 3.0).item(), abs=1e-12)
    assert default != pytest.approx(mmd2(x, y, bandwidth=0.1).item(), abs=1e-3)


def test_median_bandwidth_refuses_a_degenerate_sample() -> None:
    with pytest.raises(ValueError, match="pass bandwidth explicitly"):
        median_bandwidth(torch.zeros(10, 2), torch.zeros(10, 2))


def test_gaussian_kernel_values() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    expected = torch.tensor([[math.exp(-4 / 8)], [math.exp(-5 / 8)]], dtype=torch.float64)
    assert torch.allclose(gaussian_kernel(a, b, bandwidth=2.0), expected, rtol=1e-14)


def test_mmd2_is_accurate_far_from_the_origin() -> None:
    # float32 points around 1000: |a|^2 + |b|^2 - 2 a.b would lose every digit without centring.
    g = torch.Generator().manual_seed(8)
    x, y = (
        torch.randn(50, 2, generator=g, dtype=torch.float64),
        torch.randn(50, 2, generator=g, dtype=torch.float64) + 1.0,
    )
    exact = mmd2(x, y, bandwidth=1.0).item()
    far = mmd2((x + 1000.0).float(), (y + 1000.0).float(), bandwidth=1.0).item()
    assert far == pytest.approx(exact, abs=1e-3)


def test_mmd2_gradient(device: torch.device) -> None:
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    y = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mmd2(a, b, bandwidth=0.9), (x, y))
    value = mmd2(
        x, y
    )  # median heuristic: no gradient through the bandwidth, but through the kernel
    value.backward()
    assert value.shape == () and value.device.type == device.type and value.dtype == torch.float64
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error", "match"),
    [
        (np.zeros((3, 2)), torch.zeros(3, 2), {}, TypeError, "x must be a torch.Tensor"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), {}, TypeError, "floating dtype"),
        (torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.float64), {}, TypeError, "same dtype"),
        (torch.zeros(3, 2, 1), torch.zeros(3, 2), {}, ValueError, r"shape \(n, d\)"),
        (torch.zeros(3, 2), torch.zeros(3, 3), {}, ValueError, "same dimension d"),
        (torch.zeros(1, 2), torch.zeros(3, 2), {}, ValueError, "at least 2 points"),
        (torch.randn(3, 2), torch.randn(3, 2), {"bandwidth": 0.0}, ValueError, "positive"),
        (torch.randn(3, 2), torch.randn(3, 2), {"bandwidth": float("nan")}, ValueError, "positive"),
        (torch.randn(3, 2), torch.randn(3, 2), {"bandwidth": "median"}, TypeError, "bandwidth"),
        # NaN used to say "median distance is zero", inf used to return nan.
        (torch.tensor([[0.0, math.nan], [1.0, 2.0]]), torch.randn(3, 2), {}, ValueError, "finite"),
        (torch.tensor([[0.0, math.inf], [1.0, 2.0]]), torch.randn(3, 2), {}, ValueError, "finite"),
        (
            torch.tensor([[0.0, math.inf], [1.0, 2.0]]),
            torch.randn(3, 2),
            {"bandwidth": 1.0},
            ValueError,
            "finite",
        ),
    ],
)
def test_mmd2_rejects_bad_inputs(x, y, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        mmd2(x, y, **kwargs)


# ---------------------------------------------------------------------------------------------
# mmd_test
# ---------------------------------------------------------------------------------------------


def reference_permutation_test(
    x: np.ndarray, y: np.ndarray, permutations: np.ndarray, bandwidth: float
):
    """One relabelling at a time. Index sets are sorted, so a permutation that gives the observed
    partition gives bit-for-bit the observed statistic and ties need no tolerance."""
    pooled, n = np.concatenate([x, y]), len(x)

    def statistic(order: np.ndarray) -> float:
        return reference_mmd2(pooled[np.sort(order[:n])], pooled[np.sort(order[n:])], bandwidth)

    observed = statistic(np.arange(len(pooled)))
    exceed = sum(statistic(order) >= observed for order in permutations)
    return observed, (1 + exceed) / (1 + len(permutations))


def test_mmd_test_equals_a_loop_over_the_same_permutations() -> None:
    g = torch.Generator().manual_seed(10)
    x, y = (
        torch.randn(4, 2, generator=g, dtype=torch.float64),
        torch.randn(5, 2, generator=g, dtype=torch.float64) + 0.7,
    )
    permutations = two_sample._draw_permutations(9, 300, torch.Generator().manual_seed(0))
    result = two_sample._mmd_test_with_permutations(x, y, permutations)
    observed, p_value = reference_permutation_test(
        x.numpy(), y.numpy(), permutations.numpy(), median_bandwidth(x, y)
    )
    assert result.statistic == pytest.approx(observed, abs=1e-12)
    assert result.p_value == p_value
    # mmd_test draws exactly these permutations from its seed.
    assert mmd_test(x, y, n_permutations=300, seed=0) == result


def test_mmd_test_in_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(6, 2, generator=g), torch.randn(7, 2, generator=g) + 0.5
    monkeypatch.setattr(two_sample, "_MAX_BLOCK_ELEMENTS", 13 * 8)  # blocks of 8 permutations
    blocked = mmd_test(x, y, n_permutations=50, seed=3)
    generator = torch.Generator().manual_seed(3)
    permutations = torch.cat(
        [two_sample._draw_permutations(13, count, generator) for count in [8] * 6 + [2]]
    )
    assert blocked == two_sample._mmd_test_with_permutations(x, y, permutations)


def test_mmd_test_statistic_is_mmd2_and_p_value_in_range(device: torch.device) -> None:
    g = torch.Generator().manual_seed(12)
    x, y = torch.randn(30, 2, generator=g).to(device), torch.randn(25, 2, generator=g).to(device)
    result = mmd_test(x, y, n_permutations=99, seed=0)
    assert isinstance(result, TestResult) and result.n_permutations == 99
    assert result.statistic == pytest.approx(mmd2(x.double(), y.double()).item(), abs=1e-12)
    assert 1 / 100 <= result.p_value <= 1


def test_mmd_test_is_seeded_and_leaves_the_global_generator_alone() -> None:
    g = torch.Generator().manual_seed(13)
    x, y = torch.randn(20, 2, generator=g), torch.randn(20, 2, generator=g)
    state = torch.get_rng_state()
    first, second = (
        mmd_test(x, y, n_permutations=200, seed=5),
        mmd_test(x, y, n_permutations=200, seed=5),
    )
    mmd_test(x, y, n_permutations=10)  # a fresh seed, still not from the global generator
    assert torch.equal(torch.get_rng_state(), state)
    assert first == second


def test_mmd_test_type_one_error_is_calibrated() -> None:
    g = torch.Generator().manual_seed(14)
    reps = 200
    p_values = [
        mmd_test(
            torch.randn(15, 2, generator=g),
            torch.randn(15, 2, generator=g),
            n_permutations=99,
            seed=rep,
        ).p_value
        for rep in range(reps)
    ]
    rejections = sum(p <= ALPHA for p in p_values)
    assert rejections <= rejection_bound(reps)
    assert rejections >= int(binom.ppf(0.001, reps, ALPHA))  # and not a test that never rejects
    assert all(0 < p <= 1 for p in p_values)


def test_mmd_test_detects_a_unit_mean_shift() -> None:
    g = torch.Generator().manual_seed(15)
    shift = torch.tensor([1.0, 0.0])
    reps = 30
    rejections = sum(
        mmd_test(
            torch.randn(100, 2, generator=g),
            torch.randn(100, 2, generator=g) + shift,
            n_permutations=200,
            seed=rep,
        ).p_value
        <= ALPHA
        for rep in range(reps)
    )
    assert rejections / reps > 0.8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_permutations": 0}, ValueError, "at least 1"),
        ({"n_permutations": 10.0}, TypeError, "n_permutations must be an int"),
        ({"seed": -1}, ValueError, "non-negative"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"bandwidth": -1.0}, ValueError, "positive"),
    ],
)
def test_mmd_test_rejects_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        mmd_test(torch.randn(5, 2), torch.randn(5, 2), **kwargs)


def test_mmd_test_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        mmd_test(torch.tensor([0.0, float("nan"), 1.0]), torch.randn(3))


# ---------------------------------------------------------------------------------------------
# c2st
# ---------------------------------------------------------------------------------------------


def nearest_neighbour(features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """A 1-NN classifier: it fits its training data perfectly, a hard case for calibration."""
    return lambda points: labels[torch.cdist(points, features).argmin(dim=1)]


def majority_class(features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """Ignores the features and predicts the larger training class."""
    label = int(labels.float().mean() > 0.5)
    return lambda points: torch.full((points.shape[0],), label)


def test_c2st_p_value_is_the_binomial_tail_of_the_held_out_accuracy() -> None:
    g = torch.Generator().manual_seed(16)
    x, y = torch.randn(41, 2, generator=g), torch.randn(60, 2, generator=g) + 1.5
    result = c2st(x, y, seed=0, test_fraction=0.3, classifier="logistic")
    assert result.n_test == 2 * 12  # floor(0.3 * 41) from each sample
    correct = round(result.statistic * result.n_test)
    assert result.statistic == correct / result.n_test
    assert result.p_value == pytest.approx(binom.sf(correct - 1, result.n_test, 0.5), rel=1e-12)
    assert result.statistic > 0.75 and result.p_value < 1e-3


def test_c2st_holds_out_a_balanced_test_set_when_sizes_differ() -> None:
    # A classifier that always answers the majority class scores exactly 1/2 on a balanced test set.
    g = torch.Generator().manual_seed(17)
    result = c2st(
        torch.randn(30, 2, generator=g),
        torch.randn(90, 2, generator=g),
        seed=0,
        classifier=majority_class,
    )
    assert result.n_test == 30 and result.statistic == 0.5
    assert result.p_value == pytest.approx(binom.sf(14, 30, 0.5)) and result.p_value > 0.5


def test_c2st_is_seeded_and_leaves_the_global_generator_alone() -> None:
    g = torch.Generator().manual_seed(18)
    x, y = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 0.5
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    first, second = c2st(x, y, seed=3), c2st(x, y, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert first == second


@pytest.mark.parametrize(
    ("classifier", "reps", "n"),
    [
        (nearest_neighbour, 200, 20),
        (mlp_classifier(steps=10), 200, 20),
    ],  # the default network, trained briefly
    ids=["1-nn", "mlp"],
)
def test_c2st_type_one_error_is_calibrated(classifier, reps: int, n: int) -> None:
    g = torch.Generator().manual_seed(19)
    p_values = [
        c2st(
            torch.randn(n, 2, generator=g),
            torch.randn(n, 2, generator=g),
            seed=rep,
            classifier=classifier,
        ).p_value
        for rep in range(reps)
    ]
    assert sum(p <= ALPHA for p in p_values) <= rejection_bound(reps)
    assert all(0 < p <= 1 for p in p_values)


def test_c2st_detects_a_unit_mean_shift() -> None:
    g = torch.Generator().manual_seed(20)
    shift = torch.tensor([1.0, 0.0])
    reps = 20
    rejections = sum(
        c2st(
            torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + shift, seed=rep
        ).p_value
        <= ALPHA
        for rep in range(reps)
    )
    assert rejections / reps > 0.8


def test_c2st_default_classifier_is_nonlinear(device: torch.device) -> None:
    # Same mean, smaller spread: invisible to logistic regression.
    g = torch.Generator().manual_seed(21)
    x, y = (
        torch.randn(200, 2, generator=g).to(device),
        0.4 * torch.randn(200, 2, generator=g).to(device),
    )
    assert c2st(x, y, seed=0).p_value < 1e-4
    assert c2st(x, y, seed=0, classifier="logistic").p_value > 1e-2


def test_flat_mlp_gradient_matches_autograd() -> None:
    widths = [3, 5, 4, 1]
    network = two_sample._FlatMLP(
        widths, torch.Generator().manual_seed(0), torch.float64, torch.device("cpu")
    )
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(9, 3, generator=g, dtype=torch.float64)
    targets = (torch.rand(9, generator=g) > 0.5).double()
    weights = torch.rand(9, generator=g, dtype=torch.float64)
    network.backward(inputs, targets, weights)

    flat = network.flat.clone().requires_grad_()
    activations, offset = inputs, 0
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        weight = flat[offset : offset + fan_in * fan_out].view(fan_in, fan_out)
        bias = flat[offset + fan_in * fan_out : offset + fan_in * fan_out + fan_out]
        offset += fan_in * fan_out + fan_out
        activations = activations @ weight + bias
        if layer < len(widths) - 2:
            activations = torch.relu(activations)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        activations.squeeze(-1), targets, weight=weights, reduction="sum"
    )
    loss.backward()
    assert network.grad.abs().sum() > 0
    assert torch.allclose(network.grad, flat.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"test_fraction": 0.0}, ValueError, r"test_fraction must be a number in \(0, 1\)"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be a number in \(0, 1\)"),
        ({"test_fraction": 0.1}, ValueError, "at least one test and one training point"),
        ({"classifier": "forest"}, ValueError, "classifier must be one of"),
        ({"classifier": 3}, TypeError, "classifier must be"),
        (
            {"classifier": lambda features, labels, g: lambda p: torch.zeros(1)},
            ValueError,
            "predicted 1 labels for 4 points",
        ),
        ({"seed": -2}, ValueError, "non-negative"),
    ],
)
def test_c2st_rejects_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        c2st(torch.randn(5, 2), torch.randn(6, 2), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden": 0}, "hidden"),
        ({"layers": -1}, "layers"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"weight_decay": 200.0}, "weight_decay"),
        ({"weight_decay": math.nan}, "weight_decay"),
    ],
)
def test_mlp_classifier_rejects_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        mlp_classifier(**kwargs)


def test_test_result_rejects() -> None:
    assert TestResult(statistic=0.1, p_value=0.01).rejects(0.05)
    assert not TestResult(statistic=0.1, p_value=0.2).rejects(0.05)


@pytest.mark.parametrize(
    ("alpha", "error"),
    [
        (1.5, ValueError),
        (0.0, ValueError),
        (-0.1, ValueError),
        ("0.05", TypeError),
        (True, TypeError),
    ],
)
def test_test_result_rejects_refuses_a_level_outside_0_1(alpha, error) -> None:
    with pytest.raises(error, match="alpha"):  # alpha=1.5 used to return True
        TestResult(statistic=0.1, p_value=0.9).rejects(alpha)


def test_c2st_with_a_diverging_classifier_raises_instead_of_reporting_no_difference() -> None:
    # Samples 3 s.d. apart: with lr = 1e30 the weights overflow; the test used to report p = 0.53.
    g = torch.Generator().manual_seed(40)
    x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 3.0
    with pytest.raises(NonFiniteLossError, match="at step") as caught:
        c2st(x, y, seed=0, classifier=mlp_classifier(lr=1e30, weight_decay=0.0))
    assert caught.value.step == 1


def test_c2st_refuses_predictions_that_are_not_labels() -> None:
    def probabilities(features, labels, generator):
        return lambda points: torch.full((points.shape[0],), 0.7)

    with pytest.raises(ValueError, match=r"labels in \{0, 1\}"):
        c2st(torch.randn(6, 2), torch.randn(6, 2), seed=0, classifier=probabilities)


def test_fit_discriminator_raises_naming_the_step_when_training_diverges() -> None:
    g = torch.Generator().manual_seed(41)
    x, y = torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g) + 1.0

    class Exploding(torch.nn.Module):  # finite for two steps, then its output overflows
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.calls = 0

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            factor = 1.0 if self.calls <= 4 else math.inf  # two calls per step
            return (self.scale * factor * points).squeeze(-1)

    with pytest.raises(NonFiniteLossError, match="discriminator loss is .* at step 2") as caught:
        two_sample.fit_discriminator(x, y, network=Exploding(), steps=5, seed=0)
    assert caught.value.step == 2


def test_fit_discriminator_raises_naming_a_parameter_that_becomes_nan() -> None:
    class NanGradient(torch.nn.Module):  # finite logits, but d sqrt(w^2) / dw is NaN at w = 0
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            return (self.w**2).sqrt() * points.squeeze(-1)

    with pytest.raises(NonFiniteLossError, match="parameter w is nan at step 0"):
        two_sample.fit_discriminator(
            torch.randn(8, 1), torch.randn(8, 1), network=NanGradient(), steps=3
        )


def old_median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """The implementation before issue 11: mask the upper triangle, two kthvalue calls."""
    pooled = torch.cat([x, y])
    pooled = pooled - pooled.mean(0)
    distances = two_sample._squared_distances(pooled, pooled).sqrt()
    pairs = distances[torch.ones_like(distances, dtype=torch.bool).triu(diagonal=1)]
    count = pairs.numel()
    return float(
        (pairs.kthvalue((count + 1) // 2).values + pairs.kthvalue(count // 2 + 1).values) / 2
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("n", "m", "d", "integers"),
    [
        (3, 2, 1, False),  # 10 pairs: even count, the mean of two middle values
        (4, 3, 2, False),  # 21 pairs: odd
        (150, 151, 2, False),  # 45 150 pairs, above the direct-selection threshold: bracketed path
        (200, 200, 3, True),  # integer points: many tied distances around the median
        (300, 2, 1, True),  # points on the line with heavy ties, unequal sizes
    ],
)
def test_median_bandwidth_equals_the_masked_kthvalue_implementation_bit_for_bit(
    n, m, d, integers, dtype
) -> None:
    g = torch.Generator().manual_seed(n + m + d)
    x, y = torch.randn(n, d, generator=g, dtype=dtype), torch.randn(m, d, generator=g, dtype=dtype)
    if integers:
        x, y = (3 * x).round(), (3 * y).round()
    assert median_bandwidth(x, y) == old_median_bandwidth(x, y)


# ---------------------------------------------------------------------------------------------
# fit_discriminator
# ---------------------------------------------------------------------------------------------


def test_fit_discriminator_logit_estimates_the_log_density_ratio(device: torch.device) -> None:
    # N(0, 1) against N(0, 2^2): log p/q = log 2 - 3 t^2 / 8, a curve a linear classifier cannot
    # fit.
    g = torch.Generator().manual_seed(30)
    x = torch.randn(2000, generator=g, dtype=torch.float64).to(device)
    y = 2.0 * torch.randn(1000, generator=g, dtype=torch.float64).to(
        device
    )  # unequal sizes: still balanced
    fit = two_sample.fit_discriminator(x, y, hidden=(32,), steps=300, lr=2e-2, seed=0)
    t = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64, device=device)
    with torch.no_grad():
        logits = fit.network(t)
    assert (
        logits.shape == (41,)
        and logits.device.type == device.type
        and logits.dtype == torch.float64
    )
    assert (logits - (math.log(2) - 3 * t**2 / 8)).abs().max().item() < 0.3
    assert len(fit.losses) == 300
    # From D = 1/2 (loss log 4) down to about log 4 - 2 JSD(N(0,1), N(0,4)) = 1.24.
    assert abs(fit.losses[0] - math.log(4)) < 0.2 and 1.15 < fit.losses[-1] < 1.3


def test_fit_discriminator_accepts_points_in_several_dimensions_and_minibatches() -> None:
    g = torch.Generator().manual_seed(31)
    x, y = (
        torch.randn(500, 3, generator=g),
        torch.randn(400, 3, generator=g) + torch.tensor([1.0, 0.0, 0.0]),
    )
    fit = two_sample.fit_discriminator(x, y, hidden=(16,), steps=200, batch_size=64, seed=1)
    with torch.no_grad():
        logits = fit.network(torch.tensor([[-1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))
    assert logits.shape == (2,) and logits.dtype == torch.float32
    assert logits[0] > 0.5 and logits[1] < -0.5  # log ratio 1/2 - t_1: 1.5 and -1.5


def test_fit_discriminator_is_seeded_and_leaves_the_global_generator_alone() -> None:
    g = torch.Generator().manual_seed(32)
    x, y = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 0.5
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    first = two_sample.fit_discriminator(x, y, hidden=(8,), steps=20, batch_size=16, seed=4)
    second = two_sample.fit_discriminator(x, y, hidden=(8,), steps=20, batch_size=16, seed=4)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    assert first.losses == second.losses
    for a, b in zip(first.network.parameters(), second.network.parameters()):
        assert torch.equal(a, b)
    assert not first.network.training


def test_fit_discriminator_trains_a_given_network() -> None:
    g = torch.Generator().manual_seed(33)
    x, y = torch.randn(400, 1, generator=g) - 1.0, torch.randn(400, 1, generator=g) + 1.0
    network = torch.nn.Linear(1, 1)
    fit = two_sample.fit_discriminator(x, y, network=network, steps=300, lr=5e-2, seed=0)
    assert fit.network is network
    # log N(t; -1, 1) / N(t; 1, 1) = -2 t: slope -2, intercept 0.
    assert abs(network.weight.item() + 2.0) < 0.4 and abs(network.bias.item()) < 0.3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps must be an int"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": math.nan}, ValueError, "lr must be finite"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"network": "mlp"}, TypeError, "network"),
        ({"seed": -1}, ValueError, "non-negative"),
    ],
)
def test_fit_discriminator_rejects_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        two_sample.fit_discriminator(torch.randn(5, 2), torch.randn(6, 2), **kwargs)


def test_fit_discriminator_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="same dimension d"):
        two_sample.fit_discriminator(torch.randn(5, 2), torch.randn(6, 3))
    with pytest.raises(ValueError, match="finite"):
        two_sample.fit_discriminator(torch.tensor([0.0, math.nan]), torch.randn(6))


# ---------------------------------------------------------------------------------------------
# The IMQ kernel and the WAE-MMD statistic (chapter 9)
# ---------------------------------------------------------------------------------------------


def reference_mmd2_imq(x: np.ndarray, y: np.ndarray, c_base: float, scales) -> float:
    """The U-statistic with the IMQ kernel, as the double loops of the formula."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        squared = float(np.sum((a - b) ** 2))
        return sum(s * c_base / (s * c_base + squared) for s in scales)

    n, m = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return within_x + within_y - 2 * cross


def test_imq_kernel_uses_squared_norms(device: torch.device) -> None:
    # |a - b| = 5: the kernel is C / (C + 25); a port with the norm itself gives C / (C + 5).
    a = torch.zeros(1, 2, dtype=torch.float64, device=device)
    b = torch.tensor([[3.0, 4.0]], dtype=torch.float64, device=device)
    value = two_sample.imq_kernel(a, b, c_base=2.0, scales=(1.0, 10.0))
    assert value.device.type == device.type and value.shape == (1, 1)
    assert value.item() == pytest.approx(2 / 27 + 20 / 45, abs=1e-15)
    assert two_sample.imq_kernel(a, a, c_base=2.0).item() == pytest.approx(7.0, abs=1e-15)


def test_mmd2_imq_hand_values(device: torch.device) -> None:
    q = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
    p = torch.tensor([0.0, 2.0], dtype=torch.float64, device=device)
    # For these two-point samples the statistic is -2 / (C + 4) per scale.
    assert two_sample.mmd2_imq(q, p, c_base=2.0, scales=(1.0,)).item() == pytest.approx(
        -1 / 3, abs=1e-15
    )
    expected = -sum(1 / (s + 2) for s in two_sample.IMQ_SCALES)
    assert expected == pytest.approx(-2.140260, abs=1e-6)
    assert two_sample.mmd2_imq(q, p, c_base=2.0).item() == pytest.approx(expected, abs=1e-14)
    # The default C_base is 2 d sigma_z^2: d = 1, sigma_z = 1 gives C_base = 2 again.
    assert two_sample.mmd2_imq(q, p).item() == pytest.approx(expected, abs=1e-14)


def test_mmd2_imq_equals_the_double_loop_and_batches() -> None:
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    y = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) + 0.3
    batched = two_sample.mmd2_imq(x, y, prior_scale=0.7)
    assert batched.shape == (3,)
    for row in range(3):
        expected = reference_mmd2_imq(
            x[row].numpy(), y[row].numpy(), 2 * 4 * 0.7**2, two_sample.IMQ_SCALES
        )
        assert batched[row].item() == pytest.approx(expected, abs=1e-12)
        assert two_sample.mmd2_imq(x[row], y[row], prior_scale=0.7).item() == pytest.approx(
            expected, abs=1e-12
        )


def test_mmd2_imq_kernel_scale_follows_the_prior() -> None:
    # C_base = 2 d sigma^2: scaling codes, prior draws and sigma together changes nothing;
    # a kernel with a fixed C_base (the bug) would change.
    g = torch.Generator().manual_seed(12)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64) + 0.5
    base = two_sample.mmd2_imq(x, y, prior_scale=1.0).item()
    assert two_sample.mmd2_imq(5 * x, 5 * y, prior_scale=5.0).item() == pytest.approx(
        base, abs=1e-12
    )
    assert abs(two_sample.mmd2_imq(5 * x, 5 * y, c_base=6.0).item() - base) > 1e-2


def test_mmd2_imq_is_unbiased_under_h0_and_detects_a_shift() -> None:
    g = torch.Generator().manual_seed(13)
    null = two_sample.mmd2_imq(
        torch.randn(300, 100, 8, generator=g), torch.randn(300, 100, 8, generator=g)
    )
    assert abs(null.mean().item()) < 4 * null.std().item() / math.sqrt(300)
    shifted = two_sample.mmd2_imq(
        torch.randn(100, 100, 8, generator=g), torch.randn(100, 100, 8, generator=g) + 0.5
    )
    stderr = shifted.std().item() / math.sqrt(100)
    assert shifted.mean().item() > 20 * stderr  # about 0.27 with s.e. 0.003


def test_mmd2_imq_gradient(device: torch.device) -> None:
    g = torch.Generator().manual_seed(14)
    x = torch.randn(2, 6, 2, generator=g, dtype=torch.float64).to(device).requires_grad_()
    y = torch.randn(2, 5, 2, generator=g, dtype=torch.float64).to(device)
    assert torch.autograd.gradcheck(lambda a: two_sample.mmd2_imq(a, y).sum(), (x,))


def test_mmd2_gaussian_path_is_unchanged_by_the_kernel_refactoring() -> None:
    # The Gaussian statistic goes through the shared U-statistic: the same numbers as the formula.
    g = torch.Generator().manual_seed(15)
    x, y = torch.randn(30, 2, generator=g), torch.randn(20, 2, generator=g)
    centre = torch.cat([x, y]).mean(0)
    xc, yc = x - centre, y - centre
    k = lambda a, b: gaussian_kernel(a, b, 0.8)  # noqa: E731
    k_xx, k_yy = k(xc, xc), k(yc, yc)
    expected = (
        (k_xx.sum() - k_xx.diagonal().sum()) / (30 * 29)
        + (k_yy.sum() - k_yy.diagonal().sum()) / (20 * 19)
        - 2.0 * k(xc, yc).mean()
    )
    assert torch.equal(mmd2(x, y, bandwidth=0.8), expected)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error", "match"),
    [
        (np.zeros((3, 2)), torch.zeros(3, 2), {}, TypeError, "x must be a torch.Tensor"),
        (torch.zeros(3, 2), torch.zeros(3, 3), {}, ValueError, "same dimension d"),
        (torch.zeros(1, 2), torch.zeros(3, 2), {}, ValueError, "at least 2 points"),
        (torch.zeros(2, 3, 2), torch.zeros(3, 3, 2), {}, ValueError, "same batch size"),
        (torch.zeros(2, 1, 2), torch.zeros(2, 3, 2), {}, ValueError, "at least 2 points"),
        (torch.zeros(2, 3, 2), torch.zeros(2, 3, 2).double(), {}, TypeError, "same dtype"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"prior_scale": -1.0}, ValueError, "prior_scale"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"c_base": 0.0}, ValueError, "c_base"),
        (
            torch.zeros(3, 2),
            torch.zeros(3, 2),
            {"c_base": 1.0, "prior_scale": 1.0},
            ValueError,
            "not both",
        ),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"scales": ()}, TypeError, "scales"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"scales": (1.0, -2.0)}, ValueError, "scales"),
        (
            torch.full((2, 3, 2), math.nan),
            torch.zeros(2, 3, 2),
            {},
            ValueError,
            "finite",
        ),
    ],
)
def test_mmd2_imq_rejects_bad_inputs(x, y, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        two_sample.mmd2_imq(x, y, **kwargs)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "match"),
    [
        (torch.zeros(3), torch.zeros(3, 2), {"c_base": 1.0}, ValueError, r"shape \(n, d\)"),
        (torch.zeros(3, 2), torch.zeros(3, 3), {"c_base": 1.0}, ValueError, "same dimension"),
        (torch.zeros(3, 2), torch.zeros(3, 2).double(), {"c_base": 1.0}, TypeError, "dtype"),
        (torch.zeros(3, 2), torch.zeros(3, 2), {"c_base": -1.0}, ValueError, "c_base"),
        ([[0.0]], torch.zeros(3, 2), {"c_base": 1.0}, TypeError, "floating torch.Tensor"),
    ],
)
def test_imq_kernel_rejects_bad_inputs(a, b, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        two_sample.imq_kernel(a, b, **kwargs)
