"""Tests for gdmlib.metrics.disentanglement: disentanglement_lib's asserted values, closed forms
under rotations, invariances (permuted, rescaled, duplicated codes) and bad inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from gdmlib.metrics import (
    beta_vae_score,
    dci,
    discretize,
    factor_vae_score,
    gaussian_total_correlation,
    mig,
    modularity,
    mutual_info_matrix,
    sap,
)


def grid(*sizes: int) -> np.ndarray:
    """Every combination of the factor values, (prod(sizes), len(sizes)) int64."""
    mesh = np.meshgrid(*(np.arange(s) for s in sizes), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1).astype(np.int64)


def rotated(theta: float, sizes: tuple[int, int] = (8, 8)) -> tuple[np.ndarray, np.ndarray]:
    v = grid(*sizes)
    standard = (v - v.mean(0)) / v.std(0)
    c, s = math.cos(theta), math.sin(theta)
    return standard @ np.array([[c, -s], [s, c]]).T, v


def binary_entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


# ---------------------------------------------------------------------------------------------
# disentanglement_lib's asserted values


def test_discretize_matches_dlib_utils_test() -> None:
    z = np.array([[0.1], [0.2], [0.3], [0.4], [0.5], [0.6]])
    assert discretize(z, num_bins=3).ravel().tolist() == [1, 1, 2, 2, 3, 3]
    assert discretize(z).dtype == np.int64  # integer labels: never floats into mutual_info_score


def test_mutual_info_matches_dlib_and_sklearn() -> None:
    xs = np.array([[1, 2, 1, 2], [1, 1, 2, 2]], dtype=float).T
    ys = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T
    np.testing.assert_allclose(
        mutual_info_matrix(xs, ys, num_bins=2), np.diag([math.log(2)] * 2), atol=1e-12
    )
    rng = np.random.default_rng(0)
    z, v = rng.standard_normal((500, 3)), rng.integers(0, 4, (500, 2))
    labels = discretize(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ints into sklearn: no warning
        reference = [[mutual_info_score(v[:, k], labels[:, j]) for k in range(2)] for j in range(3)]
    np.testing.assert_allclose(mutual_info_matrix(z, v), reference, rtol=1e-10, atol=1e-12)
    entropy = mutual_info_matrix(
        np.array([1, 1, 2, 2, 3, 3.0])[:, None], np.array([1, 1, 2, 2, 3, 3])[:, None], num_bins=3
    )
    assert abs(float(entropy[0, 0]) - math.log(3)) < 1e-12


@pytest.mark.parametrize("importance", ["linear", "gbt"])
def test_oracle_code_scores_one_everywhere(importance: str) -> None:
    v = grid(3, 4, 5)
    z = v.astype(float)
    assert mig(z, v) == pytest.approx(1.0, abs=1e-12)
    assert sap(z, v) == pytest.approx(1.0, abs=1e-12)
    assert modularity(z, v) == pytest.approx(1.0, abs=1e-12)
    result = dci(z, v, importance)
    assert result.disentanglement > 0.99 and result.completeness > 0.99
    assert result.informativeness == pytest.approx(1.0, abs=1e-8)
    assert beta_vae_score(z, v, num_train=600, num_eval=300) == 1.0
    assert factor_vae_score(z, v, num_train=300, num_eval=200) == 1.0


def test_modularity_matches_dlib_hand_values() -> None:
    # dlib modularity_explicitness_test: a code that depends on two factors equally scores 0.
    v = grid(4, 4)
    z = np.stack([v[:, 0] * 4 + v[:, 1], v[:, 0] * 4 + v[:, 1]], 1).astype(float)
    m = mutual_info_matrix(z, v)
    assert np.allclose(m[:, 0], m[:, 1])
    assert modularity(z, v) == pytest.approx(0.0, abs=1e-12)


def test_dci_of_a_diagonal_and_a_uniform_importance() -> None:
    v = grid(4, 4)
    d = dci(v.astype(float), v)
    assert d.disentanglement == pytest.approx(1.0, abs=1e-8)
    # a code that is the sum of both factors: importance rows (1, 1) -> D = 0
    z = np.stack([v.sum(1), np.random.default_rng(0).standard_normal(16)], 1)
    assert dci(z, v).disentanglement < 0.05


# ---------------------------------------------------------------------------------------------
# Invariances


def test_metrics_are_invariant_to_permuting_and_rescaling_codes() -> None:
    v = grid(3, 4, 5)
    rng = np.random.default_rng(1)
    z = v + 0.3 * rng.standard_normal(v.shape)
    base = [mig(z, v), sap(z, v), modularity(z, v), *dci(z, v)]
    permuted = z[:, [2, 0, 1]]
    scaled = z * np.array([-2.0, 0.5, 3.0]) + np.array([1.0, -4.0, 0.0])
    for other in (permuted, scaled):
        values = [mig(other, v), sap(other, v), modularity(other, v), *dci(other, v)]
        np.testing.assert_allclose(values, base, rtol=1e-9, atol=1e-12)


def test_duplicated_perfect_code() -> None:
    v = grid(2, 3, 4, 2, 3)
    z = np.concatenate([v, v], axis=1).astype(float)  # J = 10 codes, K = 5 factors
    assert mig(z, v) == pytest.approx(0.0, abs=1e-12)
    assert sap(z, v) == pytest.approx(0.0, abs=1e-12)
    assert modularity(z, v) == pytest.approx(1.0, abs=1e-12)
    result = dci(z, v)
    assert result.disentanglement == pytest.approx(1.0, abs=1e-8)
    assert result.completeness == pytest.approx(1 - math.log(2) / math.log(10), abs=1e-8)


@pytest.mark.parametrize("degrees", [0.0, 10.0, 25.0, 40.0, 45.0, 60.0, 135.0])
def test_rotation_closed_forms(degrees: float) -> None:
    theta = math.radians(degrees)
    z, v = rotated(theta)
    assert sap(z, v) == pytest.approx(abs(math.cos(2 * theta)), abs=1e-12)
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    expected = 1 - binary_entropy_bits(c / (c + s))
    result = dci(z, v)
    # the 1e-11 that dlib adds to the importances moves the value by about 1e-9
    assert result.disentanglement == pytest.approx(expected, abs=1e-8)
    assert result.completeness == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("degrees", [0.0, 15.0, 30.0])
def test_supervised_scores_are_blind_to_small_rotations(degrees: float) -> None:
    z, v = rotated(math.radians(degrees))
    assert factor_vae_score(z, v, num_train=500, num_eval=500) == 1.0
    assert beta_vae_score(z, v, num_train=1000, num_eval=500) > 0.97


def test_supervised_scores_fall_to_chance_at_45_degrees() -> None:
    z, v = rotated(math.pi / 4)
    # chance is 1/2; 500 votes give a standard error of 0.022
    assert abs(factor_vae_score(z, v, num_train=500, num_eval=500) - 0.5) < 0.1
    assert abs(beta_vae_score(z, v, num_train=1000, num_eval=500) - 0.5) < 0.1


def test_factor_vae_prunes_collapsed_codes() -> None:
    v = grid(4, 4)
    z = v.astype(float) + 0.01 * np.random.default_rng(0).standard_normal(v.shape)
    with_constant = np.concatenate([z, np.full((16, 1), 3.0)], axis=1)
    kwargs = {"num_train": 300, "num_eval": 300, "num_variance": 16}
    assert factor_vae_score(with_constant, v, **kwargs) == factor_vae_score(z, v, **kwargs) == 1.0
    # without pruning (dlib's and disent's default threshold 0), the constant code's 0/0 ratio is
    # NaN, which argmin picks: it wins every vote and the score falls to chance (1/2)
    assert factor_vae_score(with_constant, v, prune_threshold=0.0, **kwargs) < 0.7


def test_hadamard_rotation_sends_factor_vae_to_one_over_d() -> None:
    v = grid(6, 6, 6, 6)
    standard = (v - v.mean(0)) / v.std(0)
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2
    score = factor_vae_score(standard @ h.T, v, num_train=2000, num_eval=2000)
    assert abs(score - 0.25) < 0.08


def test_callable_representation_equals_the_code_table() -> None:
    v = grid(3, 4)
    table = v * np.array([1.0, -2.0])
    score_table = beta_vae_score(table, v, num_train=300, num_eval=200, rng=3)
    score_callable = beta_vae_score(
        lambda f: f.double() * torch.tensor([1.0, -2.0], dtype=torch.float64),
        sizes=(3, 4),
        num_train=300,
        num_eval=200,
        rng=3,
    )
    assert score_table == score_callable
    assert factor_vae_score(table, v, rng=3, num_train=200, num_eval=100) == factor_vae_score(
        lambda f: f.double() * torch.tensor([1.0, -2.0], dtype=torch.float64),
        sizes=(3, 4),
        rng=3,
        num_train=200,
        num_eval=100,
    )


def test_gaussian_total_correlation_matches_dlib() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400_000, 2)) @ np.linalg.cholesky([[1, 0.9], [0.9, 1]]).T
    assert gaussian_total_correlation(z) == pytest.approx(-0.5 * math.log(1 - 0.81), abs=5e-3)
    assert gaussian_total_correlation(rng.standard_normal((1000, 3)) * [1, 5, 9]) < 0.01


def test_tensors_on_any_device(device: torch.device) -> None:
    v = torch.as_tensor(grid(3, 4), device=device)
    z = v.double()
    assert mig(z, v) == pytest.approx(1.0) and sap(z, v) == pytest.approx(1.0)
    assert dci(z, v).disentanglement == pytest.approx(1.0, abs=1e-8)
    assert factor_vae_score(z, v, num_train=100, num_eval=100) == 1.0


# ---------------------------------------------------------------------------------------------
# Bad inputs

V = grid(3, 4)
Z = V.astype(float)


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "error", "match"),
    [
        (mig, ([1.0, 2.0], V), {}, TypeError, "NumPy array or a torch.Tensor"),
        (mig, (V, V), {}, TypeError, "floating dtype"),
        (mig, (Z, Z), {}, TypeError, "integer factor indices"),
        (mig, (Z[:, :1], V), {}, ValueError, "J >= 2"),
        (mig, (Z, V[:5]), {}, ValueError, "same number of rows"),
        (mig, (Z, -V), {}, ValueError, "non-negative"),
        (mig, (Z, np.zeros_like(V)), {}, ValueError, "constant"),
        (mig, (Z, V), {"num_bins": 1}, ValueError, "num_bins"),
        (mig, (np.full_like(Z, np.nan), V), {}, ValueError, "finite"),
        (modularity, (Z, V[:, :1]), {}, ValueError, "K >= 2"),
        (sap, (Z, V), {"continuous": 1}, TypeError, "continuous"),
        (sap, (Z, V), {"test_codes": Z}, ValueError, "both test_codes"),
        (dci, (Z, V), {"importance": "lasso"}, ValueError, "importance"),
        (dci, (Z, V), {"test_codes": Z[:, :1], "test_factors": V}, ValueError, "test_codes"),
        (dci, (Z, V), {"test_codes": Z, "test_factors": Z}, TypeError, "test_factors"),
        (beta_vae_score, (Z[:-1], V[:-1]), {}, ValueError, "full factorial grid"),
        (
            beta_vae_score,
            (np.concatenate([Z, Z]), np.concatenate([V, V])),
            {},
            ValueError,
            "full factorial grid",
        ),
        (beta_vae_score, (Z,), {}, ValueError, "needs its factors"),
        (beta_vae_score, (lambda f: f.double(),), {}, TypeError, "needs sizes"),
        (beta_vae_score, (Z, V), {"sizes": (3, 4)}, ValueError, "sizes is only"),
        (beta_vae_score, (Z, V), {"batch_size": 1}, ValueError, "batch_size"),
        (beta_vae_score, (Z, V), {"rng": -1}, TypeError, "rng"),
        (factor_vae_score, (Z, V), {"prune_threshold": -0.1}, ValueError, "prune_threshold"),
        (factor_vae_score, (Z, V), {"num_variance": 1}, ValueError, "num_variance"),
        (gaussian_total_correlation, (np.ones((5, 2)),), {}, ValueError, "positive definite"),
    ],
)
def test_bad_inputs(function, args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        function(*args, **kwargs)
