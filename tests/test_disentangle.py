"""Tests for gdmlib.disentangle: the entangling bijection of Locatello et al.'s Theorem 1."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Exponential, Gamma, Laplace, Normal, Uniform

from gdmlib.disentangle import entangling_bijection, hadamard_rotation, random_dense_rotation

F64 = torch.float64


def uniform_prior(device: torch.device | str = "cpu") -> Uniform:
    return Uniform(
        torch.tensor(0.0, dtype=F64, device=device), torch.tensor(1.0, dtype=F64, device=device)
    )


@pytest.mark.parametrize("d", [2, 4, 8])
def test_hadamard_is_orthogonal_and_dense(d: int) -> None:
    a = hadamard_rotation(d)
    torch.testing.assert_close(a @ a.T, torch.eye(d, dtype=F64), atol=1e-15, rtol=0)
    assert torch.allclose(a.abs(), torch.full((d, d), d**-0.5, dtype=F64))


def test_random_dense_rotation_is_orthogonal_dense_and_reproducible() -> None:
    a = random_dense_rotation(5, torch.Generator().manual_seed(3))
    b = random_dense_rotation(5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    torch.testing.assert_close(a @ a.T, torch.eye(5, dtype=F64), atol=1e-13, rtol=0)
    assert bool((a.abs() > 0).all())


def test_uniform_prior_is_preserved_and_volume_is_preserved(device: torch.device) -> None:
    f = entangling_bijection(hadamard_rotation(4, device=device), uniform_prior(device))
    u = torch.rand(20_000, 4, dtype=F64, generator=torch.Generator().manual_seed(0)).to(device)
    out = f(u)
    assert out.device.type == device.type and out.dtype == F64
    for i in range(4):  # each coordinate still uniform: KS does not reject
        assert stats.kstest(out[:, i].cpu().numpy(), "uniform").pvalue > 1e-3
    # entangled: f_1 depends on u_1 (correlation about 0.48) and is not u_1
    assert 0.3 < float(torch.corrcoef(torch.stack([u[:, 0], out[:, 0]]))[0, 1]) < 0.7
    jac = f.jacobian(u[:200])
    assert float((jac.det().abs() - 1).abs().max()) < 1e-12
    assert float(jac.abs().min()) > 0


def test_closed_form_jacobian_equals_autograd() -> None:
    f = entangling_bijection(
        random_dense_rotation(3, torch.Generator().manual_seed(1)),
        Laplace(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)),
    )
    z = torch.randn(10, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    auto = torch.stack(
        [torch.autograd.functional.jacobian(lambda r: f(r[None])[0], row) for row in z]
    )
    torch.testing.assert_close(f.jacobian(z), auto, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize(
    "marginal",
    [
        Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)),
        Exponential(torch.tensor(2.0, dtype=F64)),
        uniform_prior(),
    ],
)
def test_inverse_undoes_forward(marginal) -> None:
    f = entangling_bijection(hadamard_rotation(2), marginal)
    z = marginal.sample((100, 2))
    torch.testing.assert_close(f.inverse(f(z)), z, atol=1e-8, rtol=1e-8)


def test_gaussian_prior_gives_the_rotation_itself() -> None:
    a = random_dense_rotation(4, torch.Generator().manual_seed(0))
    f = entangling_bijection(a, Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)))
    z = torch.randn(50, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(f(z), z @ a.T, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: hadamard_rotation(3), ValueError, "power of 2"),
        (lambda: hadamard_rotation(1), ValueError, "at least 2"),
        (lambda: hadamard_rotation(2.0), TypeError, "must be an int"),
        (lambda: hadamard_rotation(2, dtype=torch.int64), TypeError, "floating"),
        (lambda: random_dense_rotation(3, generator=0), TypeError, "generator"),
        (
            lambda: entangling_bijection(torch.eye(2, dtype=F64) * 2, uniform_prior()),
            ValueError,
            "orthogonal",
        ),
        (
            lambda: entangling_bijection(torch.ones(2, 3, dtype=F64), uniform_prior()),
            ValueError,
            "square",
        ),
        (
            lambda: entangling_bijection(torch.eye(2, dtype=torch.int64), uniform_prior()),
            TypeError,
            "floating",
        ),
        (lambda: entangling_bijection(hadamard_rotation(2), "normal"), TypeError, "Distribution"),
        (lambda: entangling_bijection(hadamard_rotation(2), Gamma(2.0, 1.0)), ValueError, "icdf"),
        (
            lambda: entangling_bijection(
                hadamard_rotation(2),
                torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)),
            ),
            ValueError,
            "univariate",
        ),
        (
            lambda: entangling_bijection(hadamard_rotation(2), uniform_prior())(torch.rand(3, 3)),
            ValueError,
            r"shape \(N, 2\)",
        ),
        (
            lambda: entangling_bijection(hadamard_rotation(2), uniform_prior())(
                torch.ones(3, 2, dtype=torch.int64)
            ),
            TypeError,
            "floating",
        ),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_volume_factor_is_one_only_for_uniform_prior() -> None:
    f = entangling_bijection(hadamard_rotation(2), Exponential(torch.tensor(1.0, dtype=F64)))
    z = Exponential(torch.tensor(1.0, dtype=F64)).sample((100, 2))
    # |det J| = p(z) / p(f(z)) for a general prior
    expected = (-z.sum(1) + f(z).sum(1)).exp()
    torch.testing.assert_close(f.jacobian(z).det().abs(), expected, atol=1e-9, rtol=1e-8)
    assert not math.isclose(float(expected.std()), 0.0)
