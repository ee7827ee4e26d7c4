"""Tests for gdmlib.ot against POT, SciPy and closed forms."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot as pot
import pytest
import scipy.stats
import torch

from gdmlib.ot import (
    DecoderBound,
    KRDual,
    LatentCoupling,
    coupling_through_latent,
    energy_distance,
    gaussian_w2,
    kr_dual,
    sinkhorn,
    stochastic_decoder_bound,
    wasserstein,
    wasserstein_1d,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Sinkhorn on small problems is thousands of tiny ops; on a busy two-core machine a second
    intra-op thread makes each of them wait (measured: 20 times slower). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cloud(
    n: int, d: int, shift: float = 0.0, seed: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) + shift).to(device)


def simplex(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return (w / w.sum()).to(device)


def pot_wasserstein(x: torch.Tensor, y: torch.Tensor, p: float, a=None, b=None) -> float:
    """W_p from POT's emd2 on the cost |x - y|^p, everything in NumPy float64."""
    xs, ys = x.cpu().numpy(), y.cpu().numpy()
    cost = pot.dist(xs, ys, metric="euclidean") ** p
    a = np.full(len(xs), 1 / len(xs)) if a is None else a.cpu().numpy()
    b = np.full(len(ys), 1 / len(ys)) if b is None else b.cpu().numpy()
    return float(pot.emd2(a, b, cost)) ** (1 / p)


# ---------------------------------------------------------------------------------------------
# wasserstein
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 1.5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sizes", [(30, 30), (25, 40)])
def test_wasserstein_equals_pot_emd2(device, p, weighted, sizes) -> None:
    n, m = sizes
    x, y = cloud(n, 3, device=device), cloud(m, 3, shift=0.7, seed=1, device=device)
    a, b = (simplex(n, 2, device), simplex(m, 3, device)) if weighted else (None, None)
    value = wasserstein(x, y, p=p, a=a, b=b)
    assert value.shape == () and value.device == x.device and value.dtype == torch.float64
    assert float(value) == pytest.approx(pot_wasserstein(x, y, p, a, b), rel=1e-12)
    # With autograd the value is rebuilt from the plan's support: the same number.
    tracked = wasserstein(x.clone().requires_grad_(), y, p=p, a=a, b=b)
    assert tracked.requires_grad and float(tracked.detach()) == pytest.approx(
        float(value), rel=1e-12
    )


def test_wasserstein_known_values_and_metric_properties() -> None:
    x = cloud(20, 2)
    assert float(wasserstein(x, x)) == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([3.0, 4.0], dtype=torch.float64)
    for p in (1, 2, 3):  # a translation moves every point by |shift| = 5
        assert float(wasserstein(x, x + shift, p=p)) == pytest.approx(5.0, rel=1e-12)
    y, z = cloud(15, 2, 1.0, seed=1), cloud(25, 2, -1.0, seed=2)
    assert float(wasserstein(x, y)) == pytest.approx(float(wasserstein(y, x)), rel=1e-12)
    assert float(wasserstein(x, z)) <= float(wasserstein(x, y)) + float(wasserstein(y, z)) + 1e-12
    # W_p is non-decreasing in p (Jensen).
    assert float(wasserstein(x, y, p=1)) <= float(wasserstein(x, y, p=2)) + 1e-12


def test_wasserstein_in_one_dimension_matches_scipy_and_the_quantile_formula() -> None:
    u, v = cloud(17, 1)[:, 0], cloud(11, 1, 0.5, seed=1)[:, 0]
    a, b = simplex(17, 2), simplex(11, 3)
    expected = scipy.stats.wasserstein_distance(u.numpy(), v.numpy(), a.numpy(), b.numpy())
    assert float(wasserstein(u, v, a=a, b=b)) == pytest.approx(expected, rel=1e-12)
    for p in (1, 2):
        assert float(wasserstein(u, v, p=p, a=a, b=b)) == pytest.approx(
            float(wasserstein_1d(u, v, p, a, b)), rel=1e-10
        )


def test_wasserstein_keeps_float32_and_gradients(device) -> None:
    x = cloud(12, 2, device=device).float().requires_grad_()
    y = cloud(9, 2, 1.0, seed=1, device=device).float()
    value = wasserstein(x, y)
    assert value.dtype == torch.float32 and value.device == x.device
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_wasserstein_gradients_match_finite_differences() -> None:
    x, y = cloud(8, 2).requires_grad_(), cloud(6, 2, 0.5, seed=1).requires_grad_()
    a, b = simplex(8, 2).requires_grad_(), simplex(6, 3)
    for p in (1, 2):
        grad_x, grad_y, grad_a = torch.autograd.grad(wasserstein(x, y, p, a, b), (x, y, a))
        h = 1e-6
        direction = cloud(8, 2, seed=5)
        with torch.no_grad():
            numeric = (
                wasserstein(x + h * direction, y, p, a, b)
                - wasserstein(x - h * direction, y, p, a, b)
            ) / (2 * h)
        assert float((grad_x * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)
        # The weights stay on the simplex along a zero-sum direction.
        mass_direction = torch.linspace(-1, 1, 8, dtype=torch.float64)
        with torch.no_grad():
            plus = wasserstein(x, y, p, a + h * mass_direction, b)
            minus = wasserstein(x, y, p, a - h * mass_direction, b)
        assert float((grad_a * mass_direction).sum()) == pytest.approx(
            float((plus - minus) / (2 * h)), rel=1e-5
        )
        assert torch.isfinite(grad_y).all()


# ---------------------------------------------------------------------------------------------
# wasserstein_1d
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sizes", [(20, 20), (13, 29)])
def test_wasserstein_1d_equals_pot(device, p, weighted, sizes) -> None:
    n, m = sizes
    u, v = cloud(n, 1, device=device)[:, 0], cloud(m, 1, 0.3, seed=1, device=device)[:, 0] * 2
    a, b = (simplex(n, 2, device), simplex(m, 3, device)) if weighted else (None, None)
    value = wasserstein_1d(u, v, p, a, b)
    # POT's wasserstein_1d returns W_p^p.
    numpy = lambda t: None if t is None else t.cpu().numpy()  # noqa: E731
    expected = pot.wasserstein_1d(numpy(u), numpy(v), numpy(a), numpy(b), p=p)
    assert value.device == u.device and value.shape == ()
    assert float(value) ** p == pytest.approx(float(expected), rel=1e-10)
    assert float(value) == pytest.approx(
        pot_wasserstein(u[:, None], v[:, None], p, a, b), rel=1e-10
    )


def test_wasserstein_1d_known_values_batches_and_gradients() -> None:
    u = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    assert float(wasserstein_1d(u, u + 2.5, p=2)) == pytest.approx(2.5)
    # Equal sizes, uniform weights: the mean gap between order statistics.
    v = torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64)
    assert float(wasserstein_1d(u, v)) == pytest.approx((1 + 1 + 2) / 3)
    # Zero weights drop points: {0, 1} against {-1, 2}.
    a, b = (
        torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64),
    )
    assert float(wasserstein_1d(u, v, a=a, b=b)) == pytest.approx(1.0)
    batch_u, batch_v = cloud(3, 6).requires_grad_(), cloud(3, 5, 1.0, seed=1)
    batched = wasserstein_1d(batch_u, batch_v, p=2)
    looped = torch.stack([wasserstein_1d(batch_u[k], batch_v[k], p=2) for k in range(3)])
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, looped)
    assert torch.autograd.gradcheck(
        lambda t: wasserstein_1d(t, batch_v, p=2), (batch_u,), fast_mode=True
    )


# ---------------------------------------------------------------------------------------------
# gaussian_w2
# ---------------------------------------------------------------------------------------------


def test_gaussian_w2_known_values(device) -> None:
    kw = {"dtype": torch.float64, "device": device}
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2.
    one = gaussian_w2(
        torch.tensor([1.0], **kw),
        torch.tensor([[4.0]], **kw),
        torch.tensor([-2.0], **kw),
        torch.tensor([[9.0]], **kw),
    )
    assert one.device.type == device.type and float(one) ** 2 == pytest.approx(9 + 1)
    # Commuting covariances: |m1 - m2|^2 + |S1^1/2 - S2^1/2|_F^2.
    s1, s2 = torch.tensor([4.0, 1.0, 0.25], **kw), torch.tensor([1.0, 9.0, 0.0], **kw)
    m1, m2 = torch.tensor([0.0, 1.0, 2.0], **kw), torch.tensor([1.0, 1.0, 0.0], **kw)
    expected = 1 + 4 + ((s1.sqrt() - s2.sqrt()) ** 2).sum()
    value = gaussian_w2(m1, torch.diag(s1), m2, torch.diag(s2), squared=True)
    assert float(value) == pytest.approx(float(expected), rel=1e-12)
    # Two dimensions, non-commuting: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for a 2x2 PSD M,
    # and det(S1^1/2 S2 S1^1/2) = det S1 det S2, tr(S1^1/2 S2 S1^1/2) = tr(S1 S2).
    S1 = torch.tensor([[2.0, 0.5], [0.5, 1.0]], **kw)
    S2 = torch.tensor([[1.0, -0.7], [-0.7, 3.0]], **kw)
    cross = math.sqrt(
        float(torch.trace(S1 @ S2)) + 2 * math.sqrt(float(torch.det(S1) * torch.det(S2)))
    )
    expected = float(torch.trace(S1) + torch.trace(S2)) - 2 * cross
    zero = torch.zeros(2, **kw)
    assert float(gaussian_w2(zero, S1, zero, S2, squared=True)) == pytest.approx(
        expected, rel=1e-10
    )
    assert float(gaussian_w2(zero, S2, zero, S1, squared=True)) == pytest.approx(
        expected, rel=1e-10
    )
    # Singular covariances: two Dirac masses are |m1 - m2| apart.
    dirac = torch.zeros(2, 2, **kw)
    assert float(gaussian_w2(zero, dirac, torch.tensor([3.0, 4.0], **kw), dirac)) == pytest.approx(
        5.0
    )
    assert float(gaussian_w2(zero, S1, zero, S1)) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_w2_matches_pot_batched_and_differentiable() -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 4, 4, generator=g, dtype=torch.float64)
    B = torch.randn(5, 4, 4, generator=g, dtype=torch.float64)
    S1, S2 = A @ A.mT + 0.1 * torch.eye(4), B @ B.mT
    m1, m2 = (
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    batched = gaussian_w2(m1, S1, m2, S2)
    assert batched.shape == (5,)
    for k in range(5):
        expected = pot.gaussian.bures_wasserstein_distance(
            m1[k].numpy(), m2[k].numpy(), S1[k].numpy(), S2[k].numpy()
        )
        assert float(batched[k]) == pytest.approx(float(expected), rel=1e-8)
    mean = m1[0].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: gaussian_w2(t, S1[0], m2[0], S2[0]), (mean,), fast_mode=True
    )


# ---------------------------------------------------------------------------------------------
# sinkhorn
# ---------------------------------------------------------------------------------------------


def test_sinkhorn_approaches_the_exact_cost_as_eps_shrinks(device) -> None:
    n = 8
    x, y = cloud(n, 2, device=device), cloud(n, 2, 1.0, seed=1, device=device)
    exact = float(wasserstein(x, y, p=2)) ** 2
    gaps = []
    for eps in (1.0, 0.3, 0.1, 0.05):  # the iterations needed grow like 1 / eps
        cost, plan = sinkhorn(x, y, eps, n_iters=20_000, tol=1e-9, return_plan=True)
        assert cost.device == x.device and plan.shape == (n, n)
        torch.testing.assert_close(
            plan.sum(1), torch.full((n,), 1 / n, dtype=torch.float64, device=device)
        )
        torch.testing.assert_close(
            plan.sum(0),
            torch.full((n,), 1 / n, dtype=torch.float64, device=device),
            atol=1e-9,
            rtol=0,
        )
        gaps.append(float(cost) - exact)
        # <P_eps, C> - OT <= eps KL(P* | a b^T) = eps log n for an optimal permutation plan.
        assert -1e-8 <= gaps[-1] <= eps * math.log(n)
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < 0.005 * exact


@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_equals_pot_log_sinkhorn(p) -> None:
    x, y = cloud(20, 2), cloud(15, 2, 0.5, seed=1)
    a, b = simplex(20, 2), simplex(15, 3)
    cost = pot.dist(x.numpy(), y.numpy(), metric="euclidean") ** p
    expected = pot.sinkhorn2(
        a.numpy(), b.numpy(), cost, 0.2, method="sinkhorn_log", numItermax=5000, stopThr=1e-12
    )
    assert float(sinkhorn(x, y, 0.2, a, b, p=p, tol=1e-10)) == pytest.approx(
        float(expected), rel=1e-8
    )


def test_sinkhorn_iterates_are_those_of_pot() -> None:
    x, y = cloud(20, 2), cloud(15, 2, 0.5, seed=1)
    cost = pot.dist(x.numpy(), y.numpy())
    uniform_x, uniform_y = np.full(20, 1 / 20), np.full(15, 1 / 15)
    for iterations in (1, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT: "did not converge"
            expected = pot.sinkhorn2(
                uniform_x,
                uniform_y,
                cost,
                0.05,
                method="sinkhorn_log",
                numItermax=iterations,
                stopThr=0,
            )
        assert float(sinkhorn(x, y, 0.05, n_iters=iterations, tol=0)) == pytest.approx(
            float(expected), rel=1e-10
        )


def test_sinkhorn_batched_equals_looped(device) -> None:
    B, n, m = 3, 12, 9
    x = torch.stack([cloud(n, 2, seed=k, device=device) for k in range(B)])
    y = torch.stack([cloud(m, 2, 1.0, seed=10 + k, device=device) for k in range(B)])
    a = torch.stack([simplex(n, 20 + k, device) for k in range(B)])
    costs, plans = sinkhorn(x, y, 0.5, a, tol=1e-10, return_plan=True)
    assert costs.shape == (B,) and plans.shape == (B, n, m)
    for k in range(B):
        cost, plan = sinkhorn(x[k], y[k], 0.5, a[k], tol=1e-10, return_plan=True)
        torch.testing.assert_close(costs[k], cost)
        torch.testing.assert_close(plans[k], plan)
    # Weights shared by the batch may be given once.
    torch.testing.assert_close(sinkhorn(x, y, 0.5, a[0], tol=1e-10)[0], costs[0])


def test_sinkhorn_float32_small_eps_and_gradients(device) -> None:
    x = cloud(30, 2, device=device).float().requires_grad_()
    y = cloud(30, 2, 2.0, seed=1, device=device).float()
    cost = sinkhorn(
        x, y, 0.05, n_iters=200, tol=0
    )  # exp(-C / eps) underflows: the log domain copes
    assert cost.dtype == torch.float32 and torch.isfinite(cost)
    cost.backward()
    assert torch.isfinite(x.grad).all()


def test_sinkhorn_stopping_rule() -> None:
    x, y = cloud(15, 2), cloud(15, 2, 1.0, seed=1)
    with pytest.warns(RuntimeWarning, match="raise n_iters"):
        sinkhorn(x, y, 0.01, n_iters=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sinkhorn(x, y, 0.01, n_iters=5, tol=0)  # a fixed number of iterations: no warning
        converged = sinkhorn(x, y, 1.0, tol=1e-12)
    torch.testing.assert_close(converged, sinkhorn(x, y, 1.0, n_iters=3000, tol=0))


# ---------------------------------------------------------------------------------------------
# kr_dual
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_kr_dual_value_equals_the_primal_and_the_potential_is_1_lipschitz(device, weighted) -> None:
    x, y = cloud(15, 2, device=device), cloud(10, 2, 1.0, seed=1, device=device)
    a, b = (simplex(15, 2, device), simplex(10, 3, device)) if weighted else (None, None)
    result = kr_dual(x, y, a, b)
    assert isinstance(result, KRDual)
    assert result.value == pytest.approx(float(wasserstein(x, y, 1, a, b)), abs=1e-8)
    assert result.support.device == x.device and result.support.shape == (25, 2)
    torch.testing.assert_close(result.support, torch.cat([x, y]))
    assert float(result.potential[0]) == 0.0
    assert result.value == pytest.approx(float((result.mass * result.potential).sum()), abs=1e-12)
    differences = (result.potential[:, None] - result.potential[None, :]).abs()
    distances = torch.cdist(result.support, result.support)
    assert bool((differences <= distances + 1e-9).all())


def test_kr_dual_merges_repeated_points_and_small_cases() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    result = kr_dual(x, y)
    assert result.support.shape == (3, 2)  # (1, 0) is in both supports
    torch.testing.assert_close(result.mass, torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64))
    assert result.value == pytest.approx(1.5)
    same = kr_dual(torch.tensor([2.0]), torch.tensor([2.0]))
    assert same.value == 0.0 and same.potential.tolist() == [0.0]


# ---------------------------------------------------------------------------------------------
# energy_distance
# ---------------------------------------------------------------------------------------------


def test_energy_distance_formula_and_scipy(device) -> None:
    x, y = cloud(7, 3, device=device), cloud(5, 3, 0.5, seed=1, device=device)
    xs, ys = x.cpu().numpy(), y.cpu().numpy()
    dist = lambda s, t: float(np.linalg.norm(s - t))  # noqa: E731
    between = sum(dist(s, t) for s in xs for t in ys) / (7 * 5)
    within_x = sum(dist(xs[i], xs[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    within_y = sum(dist(ys[i], ys[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    value = energy_distance(x, y)
    assert value.device == x.device and value.shape == ()
    assert float(value) == pytest.approx(2 * between - within_x - within_y, rel=1e-12)
    # SciPy's is the square root of the biased V-statistic, whose within-sample means count the
    # zero diagonal: V = 2 between - (n-1)/n within_x - (m-1)/m within_y.
    u, v = x[:, 0], y[:, 0]
    unbiased = float(energy_distance(u, v))
    n, m = 7, 5
    within_u = float(torch.pdist(u[:, None]).mean())
    within_v = float(torch.pdist(v[:, None]).mean())
    biased = unbiased + within_u / n + within_v / m
    assert math.sqrt(biased) == pytest.approx(
        scipy.stats.energy_distance(u.cpu().numpy(), v.cpu().numpy()), rel=1e-12
    )


def test_energy_distance_is_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    reps, n, shift = 400, 10, 1.0

    def estimates(mean_y: float) -> torch.Tensor:
        pairs = [
            (torch.randn(n, generator=g), torch.randn(n, generator=g) + mean_y) for _ in range(reps)
        ]
        return torch.stack([energy_distance(x, y) for x, y in pairs])

    null, alt = estimates(0.0), estimates(shift)
    se_null, se_alt = float(null.std()) / math.sqrt(reps), float(alt.std()) / math.sqrt(reps)
    assert abs(float(null.mean())) < 4 * se_null
    assert float(null.min()) < 0  # unbiased, hence sometimes negative under H0
    # E|X - Y| for X - Y ~ N(shift, 2) and E|X - X'| = 2 / sqrt(pi) for N(0, 1).
    sigma = math.sqrt(2)
    folded = sigma * math.sqrt(2 / math.pi) * math.exp(-(shift**2) / (2 * sigma**2))
    folded += shift * (1 - 2 * scipy.stats.norm.cdf(-shift / sigma))
    population = 2 * folded - 2 * 2 / math.sqrt(math.pi)
    assert population > 0
    assert float(alt.mean()) == pytest.approx(population, abs=4 * se_alt)


def test_energy_distance_gradients(device) -> None:
    x = cloud(6, 2, device=device).requires_grad_()
    y = torch.cat(
        [x.detach()[:2], cloud(3, 2, seed=1, device=device)]
    )  # shared points: zero distances
    energy_distance(x, y).backward()
    assert torch.isfinite(x.grad).all()
    far = cloud(6, 2, 3.0, seed=2, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: energy_distance(t, y), (far,), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    x, y = cloud(5, 2), cloud(4, 2, seed=1)
    with pytest.raises(ValueError, match="same dimension"):
        wasserstein(x, cloud(4, 3))
    with pytest.raises(ValueError, match="same dimension"):
        sinkhorn(x, cloud(4, 3), 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        wasserstein(x, y, a=torch.tensor([0.5, 0.5, 0.5, -0.5, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="sum to 1"):
        wasserstein(x, y, b=torch.full((4,), 0.3, dtype=torch.float64))
    with pytest.raises(ValueError, match="sum to 1"):
        kr_dual(x, y, a=torch.full((5,), 0.3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        wasserstein(x, y, a=torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="sum to 1"):
        wasserstein_1d(x[:, 0], y[:, 0], b=torch.full((4,), 0.2, dtype=torch.float64))
    for eps in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="eps must be"):
            sinkhorn(x, y, eps)
    for p in (0.5, 0, math.nan):
        with pytest.raises(ValueError, match="p must be"):
            wasserstein(x, y, p=p)
        with pytest.raises(ValueError, match="p must be"):
            wasserstein_1d(x[:, 0], y[:, 0], p=p)
        with pytest.raises(ValueError, match="p must be"):
            sinkhorn(x, y, 0.1, p=p)
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn(x, y, 0.1, n_iters=0)
    with pytest.raises(ValueError, match="tol"):
        sinkhorn(x, y, 0.1, tol=-1.0)
    with pytest.raises(ValueError, match="batch size"):
        sinkhorn(torch.stack([x, x]), torch.stack([y, y, y]), 0.1)
    with pytest.raises(TypeError, match="floating"):
        wasserstein(torch.arange(5), torch.arange(4))
    with pytest.raises(TypeError, match="same dtype"):
        energy_distance(x, y.float())
    with pytest.raises(ValueError, match="finite"):
        energy_distance(x, torch.full((4, 2), math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        energy_distance(x, y[:1])
    with pytest.raises(ValueError, match="leading"):
        wasserstein_1d(cloud(2, 5), cloud(3, 5))
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_w2(
            torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)
        )
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_w2(torch.zeros(2), torch.eye(2), torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="same dimension"):
        gaussian_w2(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="m1 must have shape"):
        gaussian_w2(torch.zeros(3), torch.eye(2), torch.zeros(2), torch.eye(2))


# ---------------------------------------------------------------------------------------------
# Issue 11: a Sinkhorn run that stops short never reports a cost below the optimum
# ---------------------------------------------------------------------------------------------


def test_sinkhorn_that_did_not_converge_returns_a_feasible_plan_above_the_optimum() -> None:
    from gdmlib.ot import SinkhornConvergenceWarning

    x, y = cloud(15, 2), cloud(15, 2, 1.0, seed=1)
    exact = float(wasserstein(x, y, p=2)) ** 2
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        cost, plan = sinkhorn(x, y, 0.01, n_iters=5, return_plan=True)
    uniform = torch.full((15,), 1 / 15, dtype=plan.dtype)
    torch.testing.assert_close(plan.sum(0), uniform, rtol=0, atol=1e-12)
    torch.testing.assert_close(plan.sum(1), uniform, rtol=0, atol=1e-12)
    assert (plan >= 0).all()
    assert float(cost) >= exact - 1e-12
    assert float(cost) == pytest.approx(float((plan * torch.cdist(x, y) ** 2).sum()), rel=1e-12)
    # The raw last iterate is what used to be returned: infeasible, and below the optimum here.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = float(sinkhorn(x, y, 0.01, n_iters=5, tol=0))
    assert raw < exact < float(cost)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": 0.0}, ValueError, "eps must be positive"),
        ({"eps": math.inf}, ValueError, "eps must be finite"),
        ({"eps": "0.1"}, TypeError, "eps must be a number"),
        ({"eps": 0.1, "n_iters": 0}, ValueError, "n_iters must be a positive int"),
        ({"eps": 0.1, "n_iters": 10.0}, TypeError, "n_iters must be an int"),
        ({"eps": 0.1, "tol": -1.0}, ValueError, "tol must be non-negative"),
        ({"eps": 0.1, "tol": math.nan}, ValueError, "tol must be finite"),
        ({"eps": 0.1, "return_plan": "yes"}, TypeError, "return_plan must be a bool"),
        ({"eps": 0.1, "p": 0.5}, ValueError, "p must be"),
    ],
)
def test_sinkhorn_refuses_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        sinkhorn(cloud(5, 2), cloud(4, 2, seed=1), **kwargs)


# ---------------------------------------------------------------------------------------------
# Couplings through a latent space: Theorem 1 of the WAE (chapter 9)
# ---------------------------------------------------------------------------------------------


def pushforward_wasserstein(a: np.ndarray, x: np.ndarray, b: np.ndarray, decoded: np.ndarray, p):
    """W_p^p(P_X, G#P_Z) with equal outputs of G merged into one atom (the left side)."""
    atoms, inverse = np.unique(decoded, axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=b)
    cost = pot.dist(x, atoms, metric="euclidean") ** p
    return float(pot.emd2(a, weights, cost))


@pytest.mark.parametrize("p", [1, 2])
def test_coupling_through_latent_equals_the_wasserstein_of_the_pushforward(device, p) -> None:
    rng = np.random.default_rng(0)
    worst = 0.0
    for trial in range(60):
        n, m = rng.integers(2, 20, size=2)
        d_x, d_z = rng.integers(1, 4, size=2)
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
        x, z = rng.normal(size=(n, d_x)), rng.normal(size=(m, d_z))
        weight = torch.from_numpy(rng.normal(size=(d_z, d_x))).to(device)
        rounded = trial % 2 == 1  # a non-injective decoder on odd trials

        def decoder(latent, weight=weight, rounded=rounded):
            out = torch.tanh(latent @ weight)
            return torch.round(out * 2) / 2 if rounded else out

        t = lambda v: torch.from_numpy(v).to(device)  # noqa: E731
        result = coupling_through_latent(t(a), t(x), t(b), t(z), decoder, p=p)
        assert isinstance(result, LatentCoupling) and result.plan.device.type == device.type
        decoded = result.decoded.cpu().numpy()
        worst = max(worst, abs(result.value - pushforward_wasserstein(a, x, b, decoded, p)))
        plan = result.plan.cpu().numpy()
        np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)
        np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)
        encoder = result.encoder.cpu().numpy()
        np.testing.assert_allclose(encoder.sum(1), 1.0, atol=1e-12)
        np.testing.assert_allclose(a @ encoder, b, atol=1e-12)  # the aggregate posterior is P_Z
    assert worst < 1e-9


def test_coupling_through_latent_hand_oracles() -> None:
    x, z = torch.tensor([0.0, 2.0], dtype=torch.float64), torch.arange(3, dtype=torch.float64)
    for p in (1, 2):
        result = coupling_through_latent(None, x, None, z, lambda latent: latent, p=p)
        assert result.value == pytest.approx(1 / 3, abs=1e-12)
        expected_plan = torch.tensor(
            [[1 / 3, 1 / 6, 0.0], [0.0, 1 / 6, 1 / 3]], dtype=torch.float64
        )
        torch.testing.assert_close(result.plan, expected_plan, rtol=0, atol=1e-12)
        expected_encoder = torch.tensor(
            [[2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 2 / 3]], dtype=torch.float64
        )
        torch.testing.assert_close(result.encoder, expected_encoder, rtol=0, atol=1e-12)
    # A non-injective decoder: G = (0, 0, 1, 3), P_G = {0: 1/2, 1: 1/4, 3: 1/4}.
    x, z = torch.arange(4, dtype=torch.float64), torch.arange(4, dtype=torch.float64)
    table = torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    for p in (1, 2):
        result = coupling_through_latent(None, x, None, z, lambda latent: table[latent.long()], p=p)
        assert result.value == pytest.approx(0.5, abs=1e-12)
        assert float(wasserstein(x, table, p=p)) ** p == pytest.approx(0.5, abs=1e-12)


def test_stochastic_decoder_bound(device) -> None:
    rng = np.random.default_rng(1)
    for _trial in range(40):
        n, m, k = rng.integers(2, 12, size=3)
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(k, 2))
        kernel = rng.dirichlet(np.ones(k), size=m)
        t = lambda v: torch.from_numpy(v).to(device)  # noqa: E731
        bound = stochastic_decoder_bound(t(a), t(x), t(b), t(kernel), t(y))
        assert isinstance(bound, DecoderBound)
        assert bound.wasserstein <= bound.upper_bound + 1e-12
        # The upper bound is the LP over couplings of (P_X, P_Z) with the averaged cost.
        cost = pot.dist(x, y) @ kernel.T
        assert bound.upper_bound == pytest.approx(float(pot.emd2(a, b, cost)), abs=1e-12)
        one_hot = np.eye(k)[rng.integers(0, k, size=m)]
        equal = stochastic_decoder_bound(t(a), t(x), t(b), t(one_hot), t(y))
        assert abs(equal.wasserstein - equal.upper_bound) < 1e-9


def test_stochastic_decoder_bound_hand_value() -> None:
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    noisy = torch.full((2, 2), 0.5, dtype=torch.float64)
    assert stochastic_decoder_bound(None, x, None, noisy, x) == (0.0, 0.5)


def _identity(latent):
    return latent


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (
            (torch.full((3,), 0.5), torch.zeros(3, 1), None, torch.zeros(2, 1), _identity),
            ValueError,
            "sum to 1",
        ),
        (
            (torch.full((2,), 0.5), torch.zeros(3, 1), None, torch.zeros(2, 1), _identity),
            ValueError,
            "one weight per point",
        ),
        (
            (None, torch.zeros(3, 1), torch.tensor([1.5, -0.5]), torch.zeros(2, 1), _identity),
            ValueError,
            "non-negative",
        ),
        (
            (None, torch.zeros(3, 2), None, torch.zeros(2, 1), _identity),
            ValueError,
            r"shape \(2, 2\)",
        ),
        (
            (None, torch.zeros(3, 1), None, torch.zeros(2, 1), lambda z: z.double()),
            TypeError,
            "dtype",
        ),
        (
            (None, torch.zeros(3, 1), None, torch.zeros(2, 1), lambda z: z.numpy()),
            TypeError,
            "return a torch.Tensor",
        ),
        ((None, torch.zeros(3, 1), None, torch.zeros(2, 1), "G"), TypeError, "callable"),
        ((None, torch.zeros(3, 1), None, torch.zeros(2, 2, 1), _identity), ValueError, "shape"),
        (
            (None, torch.zeros(3, 1), None, torch.full((2, 1), math.nan), _identity),
            ValueError,
            "finite",
        ),
        ((None, torch.arange(3), None, torch.zeros(2, 1), _identity), TypeError, "floating"),
    ],
)
def test_coupling_through_latent_rejects_bad_inputs(arguments, error, match) -> None:
    with pytest.raises(error, match=match):
        coupling_through_latent(*arguments)


@pytest.mark.parametrize(
    ("kernel", "p", "error", "match"),
    [
        (torch.full((2, 2), 0.7), 2, ValueError, "sum to 1"),
        (torch.tensor([[1.5, -0.5], [0.5, 0.5]]), 2, ValueError, "non-negative"),
        (torch.full((2, 3), 1 / 3), 2, ValueError, r"shape \(m, 2\)"),
        (torch.full((2, 2), 0.5), 0.5, ValueError, "p must be"),
        (torch.full((2, 2), 0.5).double(), 2, TypeError, "dtype"),
    ],
)
def test_stochastic_decoder_bound_rejects_bad_inputs(kernel, p, error, match) -> None:
    with pytest.raises(error, match=match):
        stochastic_decoder_bound(None, torch.zeros(3), None, kernel, torch.arange(2.0), p=p)
