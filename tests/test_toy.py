"""Tests of gdmlib.toy: shapes, closed-form oracles, sampling moments, exact densities, bad
inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from gdmlib import toy

# ----------------------------------------------------------------------------------------------
# Helpers


def normal_log_density(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def reference_mixture_2d_log_prob(
    x: torch.Tensor, centers: torch.Tensor, std: float
) -> torch.Tensor:
    """logsumexp_k log N(x; c_k, std^2 I) - log K, written out by hand."""
    squared = ((x[..., None, :] - centers) ** 2).sum(-1)
    log_components = -squared / (2 * std**2) - math.log(2 * math.pi * std**2)
    return torch.logsumexp(log_components, dim=-1) - math.log(centers.shape[0])


def check_per_mode_moments(mixture: toy.GaussianMixture2d, n_samples: int) -> None:
    """Samples fall evenly into the modes, with the right mean and spread in each (4 standard
    errors)."""
    x = mixture.sample((n_samples,)).double().cpu()
    centers = mixture.centers.double().cpu()
    std, n_modes = mixture.std, mixture.n_modes
    nearest = torch.cdist(x, centers).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=n_modes).double()
    p = 1 / n_modes
    assert (counts - n_samples * p).abs().max() <= 4 * math.sqrt(n_samples * p * (1 - p))
    for k in range(n_modes):
        in_mode = x[nearest == k]
        n_k = in_mode.shape[0]
        mean_error = (in_mode.mean(0) - centers[k]).abs().max().item()
        std_error = (in_mode.std(0) - std).abs().max().item()
        assert mean_error <= 4 * std / math.sqrt(n_k)
        assert std_error <= 4 * std / math.sqrt(2 * n_k)


# ----------------------------------------------------------------------------------------------
# 1-D mixtures


def test_gaussian_mixture_1d_matches_formula(device: torch.device) -> None:
    means, stds, weights = [-1.0, 0.5, 3.0], [0.5, 1.0, 2.0], [0.2, 0.3, 0.5]
    p = toy.gaussian_mixture_1d(
        torch.tensor(means, device=device, dtype=torch.float64), stds, weights
    )
    assert p.batch_shape == () and p.event_shape == ()
    x = torch.linspace(-5, 8, 101, device=device, dtype=torch.float64)
    reference = torch.logsumexp(
        torch.stack(
            [math.log(w) + normal_log_density(x, m, s) for m, s, w in zip(means, stds, weights)]
        ),
        dim=0,
    )
    torch.testing.assert_close(p.log_prob(x), reference, rtol=0, atol=1e-12)
    assert p.mean.item() == pytest.approx(sum(w * m for m, w in zip(means, weights)))
    assert p.sample((4, 3)).shape == (4, 3)
    assert p.sample().shape == ()
    assert p.sample().device.type == device.type


def test_gaussian_mixture_1d_dtype_and_default_weights() -> None:
    p = toy.gaussian_mixture_1d([0.0, 1.0], [1.0, 1.0])
    assert p.mean.dtype == torch.get_default_dtype()
    torch.testing.assert_close(p.mixture_distribution.probs, torch.tensor([0.5, 0.5]))
    p64 = toy.gaussian_mixture_1d(torch.tensor([0.0, 1.0], dtype=torch.float64), [1.0, 1.0])
    assert p64.mean.dtype == torch.float64
    assert toy.gaussian_mixture_1d((0.0,), (1.0,), dtype=torch.float64).mean.dtype == torch.float64
    # Weights summing to 1 up to float rounding are accepted.
    toy.gaussian_mixture_1d([0.0] * 3, [1.0] * 3, [1 / 3] * 3)


@pytest.mark.parametrize(
    ("means", "stds", "weights", "message"),
    [
        ([0.0, 1.0], [1.0], None, "same length"),
        ([0.0, 1.0], [1.0, 1.0], [1.0], "same length"),
        ([], [], None, "non-empty"),
        ([[0.0, 1.0]], [[1.0, 1.0]], None, "1-D"),
        ([0.0, 1.0], [1.0, 0.0], None, "stds must all be > 0"),
        ([0.0, 1.0], [1.0, -1.0], None, "stds must all be > 0"),
        ([0.0, float("nan")], [1.0, 1.0], None, "finite"),
        ([0.0, 1.0], [1.0, 1.0], [1.5, -0.5], "weights must be >= 0"),
        ([0.0, 1.0], [1.0, 1.0], [0.5, 0.6], "sum to 1"),
    ],
)
def test_gaussian_mixture_1d_rejects_bad_input(means, stds, weights, message) -> None:
    with pytest.raises(ValueError, match=message):
        toy.gaussian_mixture_1d(means, stds, weights)


def test_gaussian_mixture_1d_rejects_integer_dtype() -> None:
    with pytest.raises(TypeError, match="floating-point dtype"):
        toy.gaussian_mixture_1d([0.0], [1.0], dtype=torch.int64)


def test_two_gaussians(device: torch.device) -> None:
    mu = torch.tensor(1.5, device=device, dtype=torch.float64, requires_grad=True)
    p = toy.two_gaussians(mu, std=0.5)
    assert p.mean.dtype == torch.float64 and p.mean.device.type == device.type
    x = torch.linspace(-4, 4, 41, device=device, dtype=torch.float64)
    reference = torch.logsumexp(
        torch.stack([normal_log_density(x, -1.5, 0.5), normal_log_density(x, 1.5, 0.5)]), dim=0
    ) - math.log(2)
    torch.testing.assert_close(p.log_prob(x), reference.detach(), rtol=0, atol=1e-12)
    assert p.variance.item() == pytest.approx(1.5**2 + 0.5**2)
    # The mixture stays differentiable in mu (chapter 1 sweeps it).
    p.log_prob(torch.tensor(1.0, device=device, dtype=torch.float64)).backward()
    assert mu.grad is not None and torch.isfinite(mu.grad)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        toy.two_gaussians(1.0, std=0.0)
    with pytest.raises(ValueError, match="single number"):
        toy.two_gaussians(torch.ones(2))


# ----------------------------------------------------------------------------------------------
# Ring and grid


@pytest.mark.parametrize("n_modes", [1, 3, 8])
def test_ring_centres(n_modes: int) -> None:
    p = toy.ring(n_modes=n_modes, radius=1.5, std=0.1, dtype=torch.float64)
    assert isinstance(p, toy.GaussianMixture2d)
    assert p.centers.shape == (n_modes, 2) and p.n_modes == n_modes and p.std == 0.1
    torch.testing.assert_close(
        p.centers.norm(dim=1), torch.full((n_modes,), 1.5, dtype=torch.float64)
    )
    angles = torch.atan2(p.centers[:, 1], p.centers[:, 0]) % (2 * math.pi)
    expected = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    torch.testing.assert_close(angles, expected, rtol=0, atol=1e-12)


def test_grid_centres_are_exact() -> None:
    p = toy.grid()
    assert p.centers.shape == (25, 2) and p.std == 0.05
    values = {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert {tuple(c) for c in p.centers.tolist()} == {(a, b) for a in values for b in values}
    even = toy.grid(n_per_side=2, spacing=1.0)
    assert {tuple(c) for c in even.centers.tolist()} == {
        (a, b) for a in (-0.5, 0.5) for b in (-0.5, 0.5)
    }


@pytest.mark.parametrize("make", [toy.ring, toy.grid], ids=["ring", "grid"])
def test_mixture_2d_shapes_device_and_dtype(make, device: torch.device) -> None:
    p = make(device=device, dtype=torch.float64)
    assert p.centers.device.type == device.type and p.centers.dtype == torch.float64
    assert p.batch_shape == () and p.event_shape == (2,)
    for sample_shape, expected in [((), (2,)), ((7,), (7, 2)), ((2, 3), (2, 3, 2))]:
        x = p.sample(sample_shape)
        assert x.shape == expected and x.device.type == device.type and x.dtype == torch.float64
    assert p.log_prob(p.sample((2, 3))).shape == (2, 3)
    assert p.expand((4,)).sample((5,)).shape == (5, 4, 2)


@pytest.mark.parametrize("make", [toy.ring, toy.grid], ids=["ring", "grid"])
def test_mixture_2d_log_prob_matches_reference(make, device: torch.device) -> None:
    p = make(device=device, dtype=torch.float64)
    x = torch.cat([p.sample((500,)), 5 * torch.randn(500, 2, device=device, dtype=torch.float64)])
    torch.testing.assert_close(
        p.log_prob(x), reference_mixture_2d_log_prob(x, p.centers, p.std), rtol=0, atol=1e-6
    )


def test_ring_per_mode_moments() -> None:
    check_per_mode_moments(toy.ring(), n_samples=40_000)


def test_grid_per_mode_moments() -> None:
    check_per_mode_moments(toy.grid(), n_samples=50_000)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "message"),
    [
        (toy.ring, {"n_modes": 0}, ValueError, "n_modes must be >= 1"),
        (toy.ring, {"n_modes": 2.5}, TypeError, "n_modes must be an int"),
        (toy.ring, {"radius": 0.0}, ValueError, "radius must be a finite number > 0"),
        (toy.ring, {"radius": -1.0}, ValueError, "radius must be a finite number > 0"),
        (toy.ring, {"std": 0.0}, ValueError, "std must be a finite number > 0"),
        (toy.ring, {"std": float("inf")}, ValueError, "std must be a finite number > 0"),
        (toy.grid, {"n_per_side": 0}, ValueError, "n_per_side must be >= 1"),
        (toy.grid, {"spacing": -2.0}, ValueError, "spacing must be a finite number > 0"),
        (toy.grid, {"std": -0.1}, ValueError, "std must be a finite number > 0"),
        (toy.grid, {"dtype": torch.int32}, TypeError, "floating-point dtype"),
    ],
)
def test_mixture_2d_constructors_reject_bad_input(make, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        make(**kwargs)


def test_gaussian_mixture_2d_rejects_bad_centres() -> None:
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        toy.GaussianMixture2d(torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        toy.GaussianMixture2d(torch.zeros(0, 2), 0.1)
    with pytest.raises(TypeError, match="floating-point tensor"):
        toy.GaussianMixture2d(torch.zeros(3, 2, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="finite"):
        toy.GaussianMixture2d(torch.full((3, 2), float("nan")), 0.1)


# ----------------------------------------------------------------------------------------------
# Swiss roll


@pytest.fixture(scope="module")
def swiss_roll_on_a_grid() -> tuple[toy.SwissRoll, torch.Tensor, torch.Tensor, float]:
    """The default roll's density on a lattice finer than its noise, covering it with 9 sigma to
    spare."""
    roll = toy.swiss_roll(dtype=torch.float64)
    step = 0.04  # 1.2 sigma (sigma = 1/30): a lattice sum of each Gaussian is its integral to ~1e-6
    first = torch.arange(-1.6, 2.0, step, dtype=torch.float64)
    second = torch.arange(-1.8, 2.2, step, dtype=torch.float64)
    points = torch.stack(torch.meshgrid(first, second, indexing="ij"), dim=-1)
    return roll, points, roll.log_prob(points).exp(), step


def test_swiss_roll_density_integrates_to_one(swiss_roll_on_a_grid) -> None:
    _, _, density, step = swiss_roll_on_a_grid
    assert (density * step**2).sum().item() == pytest.approx(1.0, abs=1e-3)


def test_swiss_roll_samples_follow_the_density(swiss_roll_on_a_grid) -> None:
    """The mass of a half-plane by the density equals the fraction of samples in it (4 standard
    errors)."""
    roll, points, density, step = swiss_roll_on_a_grid
    for coordinate in (0, 1):
        mass = (density * step**2)[points[..., coordinate] > 0.3].sum().item()
        n = 20_000
        fraction = (roll.sample((n,))[:, coordinate] > 0.3).double().mean().item()
        assert abs(fraction - mass) <= 4 * math.sqrt(mass * (1 - mass) / n)


def test_swiss_roll_log_prob_matches_adaptive_quadrature() -> None:
    roll = toy.swiss_roll(noise=0.25, dtype=torch.float64)
    a, b, scale, sigma = roll.t_low, roll.t_high, roll.scale, roll.sigma
    points = torch.cat(
        [roll.sample((3,)), torch.tensor([[0.0, 0.0], [1.7, 0.2]], dtype=torch.float64)]
    )

    def density(x: np.ndarray) -> float:
        def integrand(t: float) -> float:
            squared = (x[0] - t * math.cos(t) / scale) ** 2 + (x[1] - t * math.sin(t) / scale) ** 2
            return math.exp(-squared / (2 * sigma**2)) / (2 * math.pi * sigma**2 * (b - a))

        edges = np.linspace(a, b, 301)  # pieces narrower than a few bumps, so quad cannot miss one
        pieces = zip(edges[:-1], edges[1:])
        return sum(
            integrate.quad(integrand, lo, hi, epsabs=0, epsrel=1e-10)[0] for lo, hi in pieces
        )

    reference = torch.tensor([math.log(density(x)) for x in points.numpy()], dtype=torch.float64)
    torch.testing.assert_close(roll.log_prob(points), reference, rtol=1e-8, atol=1e-6)


def test_swiss_roll_shapes_and_scale(device: torch.device) -> None:
    roll = toy.swiss_roll(device=device)
    assert roll.batch_shape == () and roll.event_shape == (2,)
    assert roll.support.event_dim == 1
    for sample_shape, expected in [((), (2,)), ((5,), (5, 2)), ((2, 3), (2, 3, 2))]:
        x = roll.sample(sample_shape)
        assert (
            x.shape == expected
            and x.device.type == device.type
            and x.dtype == torch.get_default_dtype()
        )
    x = roll.rsample((10_000,))
    assert x.abs().max().item() < 2.1  # the roll fits in [-2, 2]^2 like the ring and the grid
    log_density = roll.log_prob(x.reshape(100, 100, 2))
    assert log_density.shape == (100, 100) and torch.isfinite(log_density).all()


def test_swiss_roll_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="noise must be a finite number > 0"):
        toy.swiss_roll(noise=0.0)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        toy.swiss_roll(scale=-1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        toy.swiss_roll().log_prob(torch.zeros(4, 3))


# ----------------------------------------------------------------------------------------------
# Parallel lines


def test_parallel_lines_samples(device: torch.device) -> None:
    p = toy.parallel_lines(0.7, device=device)
    assert p.batch_shape == () and p.event_shape == (2,) and p.theta.item() == pytest.approx(0.7)
    x = p.sample((1000,))
    assert x.shape == (1000, 2) and x.device.type == device.type
    assert (x[:, 0] == p.theta).all()
    assert ((x[:, 1] >= 0) & (x[:, 1] <= 1)).all()
    assert p.support.check(x).all() and not p.support.check(x + 0.1).any()
    assert p.sample().shape == (2,) and p.sample((2, 3)).shape == (2, 3, 2)
    # Z is uniform: mean 1/2 and variance 1/12 within 4 standard errors.
    z = p.sample((20_000,))[:, 1].double()
    assert abs(z.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / 20_000)
    torch.testing.assert_close(p.mean, torch.tensor([0.7, 0.5], device=device))
    torch.testing.assert_close(p.variance, torch.tensor([0.0, 1 / 12], device=device))


def test_parallel_lines_batch_of_thetas_and_gradient(device: torch.device) -> None:
    theta = torch.tensor([-1.0, 0.0, 2.0], device=device, requires_grad=True)
    p = toy.ParallelLines(theta)
    assert p.batch_shape == (3,) and p.event_shape == (2,)
    x = p.rsample((5,))
    assert x.shape == (5, 3, 2)
    assert torch.equal(x[..., 0].detach(), theta.detach().expand(5, 3))
    x[..., 0].sum().backward()
    torch.testing.assert_close(theta.grad, torch.full((3,), 5.0, device=device))
    assert p.expand((2, 3)).sample().shape == (2, 3, 2)


def test_parallel_lines_has_no_density() -> None:
    p = toy.parallel_lines(0.0)
    with pytest.raises(NotImplementedError, match="no density.*singular with respect to Lebesgue"):
        p.log_prob(p.sample())
    with pytest.raises(ValueError, match="theta must be finite"):
        toy.parallel_lines(float("nan"))
    with pytest.raises(TypeError, match="theta must be a number"):
        toy.parallel_lines("1")
