"""Tests of gdmlib.divergences against closed forms, in log-space extremes, and on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch.distributions import (
    Beta,
    Categorical,
    Cauchy,
    Gamma,
    Laplace,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    Uniform,
)

from gdmlib.divergences import Estimate, NormalFit, fit_normal, jsd, jsd_mc, kl, kl_mc, tv, tv_mc
from gdmlib.toy import two_gaussians


def f64(*values: float) -> list[torch.Tensor]:
    return [torch.tensor(v, dtype=torch.float64) for v in values]


def normal(loc: float, scale: float) -> Normal:
    return Normal(*f64(loc, scale))


def kl_gauss(m1: float, s1: float, m2: float, s2: float) -> float:
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def mixture(locs: list[float], scales: list[float], weights: list[float]) -> MixtureSameFamily:
    return MixtureSameFamily(
        Categorical(torch.tensor(weights, dtype=torch.float64)),
        Normal(torch.tensor(locs, dtype=torch.float64), torch.tensor(scales, dtype=torch.float64)),
    )


class TestKL:
    @pytest.mark.parametrize(
        "m1, s1, m2, s2",
        [
            (0, 1, 1, 2),
            (0, 1, 3, 0.5),
            (0, 1, 100, 0.1),
            (5, 0.01, -5, 3),
            (0, 1e-3, 0, 1e3),
            (2, 1, 2, 1),
        ],
    )
    def test_gaussians_match_closed_form(self, m1, s1, m2, s2):
        expected = kl_gauss(m1, s1, m2, s2)
        assert kl(normal(m1, s1), normal(m2, s2)) == pytest.approx(expected, rel=1e-9, abs=1e-9)

    def test_far_apart_gaussians_in_float32(self):
        # The oracle: a naive integral underflows q to 0 and returns inf.
        assert kl(Normal(0.0, 1.0), Normal(3.0, 0.5)) == pytest.approx(18.806853, abs=1e-6)

    def test_returns_python_float(self):
        assert type(kl(Normal(0.0, 1.0), Normal(1.0, 1.0))) is float

    def test_matches_torch_registry_for_other_families(self):
        pairs = [
            (Laplace(*f64(0, 1)), Laplace(*f64(1, 2))),
            (Gamma(*f64(2, 1)), Gamma(*f64(3, 2))),
            (Beta(*f64(2, 3)), Beta(*f64(0.5, 0.5))),
            (Uniform(*f64(-1, 1)), Normal(*f64(0, 1))),
        ]
        for p, q in pairs:
            expected = float(torch.distributions.kl_divergence(p, q))
            assert kl(p, q) == pytest.approx(expected, abs=1e-6), (p, q)

    def test_heavy_tails(self):
        g1, g2, x1, x2 = 1.0, 2.0, 0.0, 3.0
        expected = math.log(((g1 + g2) ** 2 + (x1 - x2) ** 2) / (4 * g1 * g2))
        assert kl(Cauchy(*f64(x1, g1)), Cauchy(*f64(x2, g2))) == pytest.approx(expected, abs=1e-6)

    def test_infinite_when_p_has_mass_where_q_has_none(self):
        assert kl(Uniform(0.0, 2.0), Uniform(0.0, 1.0)) == math.inf
        assert kl(Normal(0.0, 1.0), Uniform(-1.0, 1.0)) == math.inf

    def test_bounded_supports(self):
        assert kl(Uniform(*f64(0, 1)), Uniform(*f64(0, 2))) == pytest.approx(math.log(2), abs=1e-9)

    def test_zero_iff_equal_and_asymmetric(self):
        p, q = normal(0, 1), normal(1, 2)
        assert kl(p, p) == pytest.approx(0.0, abs=1e-12)
        assert kl(p, q) != pytest.approx(kl(q, p), abs=1e-3)

    def test_mixture_against_monte_carlo(self):
        p = mixture([-3.0, 3.0], [1.0, 0.5], [0.3, 0.7])
        q = normal(0.0, 3.0)
        estimate = kl_mc(p, q, 200_000, seed=0)
        assert abs(kl(p, q) - estimate.value) < 4 * estimate.stderr


class TestJSD:
    def test_bounds(self):
        assert jsd(normal(0, 1), normal(0, 1)) == pytest.approx(0.0, abs=1e-12)
        assert jsd(normal(0, 1), normal(80, 1)) == pytest.approx(math.log(2), abs=1e-9)
        assert jsd(Uniform(0.0, 1.0), Uniform(2.0, 3.0)) == pytest.approx(math.log(2), abs=1e-9)

    def test_overlapping_uniforms(self):
        # Half of each mass is shared: JSD = ½ log 2.
        assert jsd(Uniform(*f64(0, 1)), Uniform(*f64(0.5, 1.5))) == pytest.approx(
            0.5 * math.log(2), abs=1e-9
        )

    def test_symmetric(self):
        p, q = mixture([-2.0, 1.0], [0.5, 1.0], [0.5, 0.5]), normal(0.5, 2.0)
        assert jsd(p, q) == pytest.approx(jsd(q, p), abs=1e-10)

    def test_against_monte_carlo(self):
        p, q = normal(0, 1), normal(1.5, 0.7)
        estimate = jsd_mc(p, q, 100_000, seed=1)
        assert abs(jsd(p, q) - estimate.value) < 4 * estimate.stderr


class TestTV:
    @pytest.mark.parametrize("delta", [0.01, 0.5, 1.0, 3.0, 10.0])
    def test_shifted_gaussians(self, delta):
        expected = 2 * norm.cdf(delta / 2) - 1
        assert tv(normal(0, 1), normal(delta, 1)) == pytest.approx(expected, abs=1e-8)

    def test_different_scales(self):
        # Densities cross at ±c with c² = 8 log 2 / 3 (σ = 1 vs 2); TV = P(|X|<c) − Q(|X|<c).
        c = math.sqrt(8 * math.log(2) / 3)
        expected = (2 * norm.cdf(c) - 1) - (2 * norm.cdf(c / 2) - 1)
        assert tv(normal(0, 1), normal(0, 2)) == pytest.approx(expected, abs=1e-8)

    def test_uniforms_and_symmetry(self):
        p, q = Uniform(*f64(0, 1)), Uniform(*f64(0.5, 1.5))
        assert tv(p, q) == pytest.approx(0.5, abs=1e-9)
        assert tv(q, p) == pytest.approx(0.5, abs=1e-9)
        assert tv(p, Uniform(*f64(3, 4))) == pytest.approx(1.0, abs=1e-12)

    def test_pinsker_and_jsd_sandwich(self):
        # TV ≤ √(KL/2) (Pinsker) and TV²/2 ≤ JSD ≤ TV log 2 on a few asymmetric pairs.
        pairs = [
            (normal(0, 1), normal(1, 2)),
            (mixture([-2.0, 2.0], [1.0, 1.0], [0.5, 0.5]), normal(0, 1)),
        ]
        for p, q in pairs:
            t, j = tv(p, q), jsd(p, q)
            assert t <= math.sqrt(kl(p, q) / 2)
            assert t**2 / 2 <= j <= t * math.log(2)


def test_distributions_on_any_device(device):
    # Quadrature nodes live on the CPU; parameters on a GPU are evaluated there.
    p = Normal(torch.tensor(0.0, device=device), torch.tensor(1.0, device=device))
    q = mixture([-1.0, 2.0], [0.5, 1.0], [0.4, 0.6])
    q = MixtureSameFamily(
        Categorical(q.mixture_distribution.probs.to(device)),
        Normal(q.component_distribution.loc.to(device), q.component_distribution.scale.to(device)),
    )
    cpu_p = normal(0, 1)
    cpu_q = mixture([-1.0, 2.0], [0.5, 1.0], [0.4, 0.6])
    for divergence in (kl, jsd, tv):
        assert divergence(p, q) == pytest.approx(divergence(cpu_p, cpu_q), abs=1e-5)
    assert fit_normal(q, "reverse_kl", init=(2.0, 1.0)).value == pytest.approx(
        fit_normal(cpu_q, "reverse_kl", init=(2.0, 1.0)).value, abs=1e-5
    )


class TestMonteCarlo:
    def test_gaussians_in_higher_dimension(self):
        d = 5
        p = MultivariateNormal(
            torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
        )
        q = MultivariateNormal(
            0.3 * torch.ones(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
        )
        kl_exact = 0.5 * 0.09 * d
        tv_exact = 2 * norm.cdf(0.3 * math.sqrt(d) / 2) - 1
        for estimator, exact in [(kl_mc, kl_exact), (tv_mc, tv_exact)]:
            est = estimator(p, q, 50_000, seed=0)
            assert isinstance(est, Estimate)
            assert 0 < est.stderr < 0.01
            assert abs(est.value - exact) < 4 * est.stderr

    def test_seed_is_reproducible_and_leaves_global_state(self):
        p, q = Normal(0.0, 1.0), Normal(1.0, 1.0)
        state = torch.random.get_rng_state()
        assert kl_mc(p, q, 100, seed=3) == kl_mc(p, q, 100, seed=3)
        assert torch.equal(state, torch.random.get_rng_state())

    def test_string_form(self):
        assert str(Estimate(0.12345, 0.00678)) == "0.1235 ± 0.0068"


class TestFitNormal:
    @pytest.mark.parametrize("mu", [0.5, 2.0, 4.0])
    def test_forward_kl_is_moment_matching(self, mu):
        fit = fit_normal(
            two_gaussians(torch.tensor(mu, dtype=torch.float64)), "forward_kl", init=(1.0, 0.5)
        )
        assert isinstance(fit, NormalFit)
        assert fit.loc == pytest.approx(0.0, abs=1e-6)
        assert fit.scale == pytest.approx(math.sqrt(1 + mu**2), abs=1e-6)

    @pytest.mark.parametrize(
        "objective, divergence", [("reverse_kl", lambda q, t: kl(q, t)), ("jsd", jsd)]
    )
    def test_value_agrees_with_quadrature(self, objective, divergence):
        target = two_gaussians(torch.tensor(3.0, dtype=torch.float64))
        fit = fit_normal(target, objective, init=(3.0, 1.0))
        assert fit.value == pytest.approx(divergence(normal(fit.loc, fit.scale), target), abs=1e-9)

    def test_reverse_kl_seeks_a_mode_when_modes_are_far(self):
        target = two_gaussians(torch.tensor(4.0, dtype=torch.float64))
        symmetric = fit_normal(target, "reverse_kl", init=(0.0, 4.0))
        seeking = fit_normal(target, "reverse_kl", init=(4.0, 1.0))
        assert abs(symmetric.loc) < 1e-6 and seeking.loc == pytest.approx(4.0, abs=0.01)
        assert seeking.value < symmetric.value
        # A Gaussian sitting on one of two far modes misses half the mass: reverse KL -> log 2.
        assert seeking.value == pytest.approx(math.log(2), abs=1e-3)

    def test_fixed_location_is_a_profile(self):
        target = normal(1.0, 2.0)
        fit = fit_normal(target, "forward_kl", loc=0.0)
        assert fit.loc == 0.0
        assert fit.scale == pytest.approx(math.sqrt(4.0 + 1.0), abs=1e-6)  # s² = σ² + (μ − m)²

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="objective must be one of"):
            fit_normal(normal(0, 1), "hellinger")
        with pytest.raises(ValueError, match="initial scale must be positive"):
            fit_normal(normal(0, 1), "jsd", init=(0.0, 0.0))


class TestBadInput:
    def test_not_a_distribution(self):
        with pytest.raises(TypeError, match="torch.distributions.Distribution"):
            kl(torch.zeros(3), Normal(0.0, 1.0))
        with pytest.raises(TypeError, match="Distribution"):
            kl_mc(Normal(0.0, 1.0), "normal")

    def test_multivariate_rejected_by_quadrature(self):
        mvn = MultivariateNormal(torch.zeros(2), torch.eye(2))
        with pytest.raises(ValueError, match="univariate"):
            jsd(mvn, mvn)

    def test_batched_rejected(self):
        with pytest.raises(ValueError, match="batch_shape"):
            tv(Normal(torch.zeros(3), 1.0), Normal(0.0, 1.0))

    def test_monte_carlo_arguments(self):
        p = Normal(0.0, 1.0)
        with pytest.raises(ValueError, match="at least 2"):
            kl_mc(p, p, 1)
        with pytest.raises(TypeError, match="n must be an int"):
            tv_mc(p, p, 10.0)
        with pytest.raises(ValueError, match="same event_shape"):
            jsd_mc(p, MultivariateNormal(torch.zeros(2), torch.eye(2)), 10)


# ---------------------------------------------------------------------------------------------
# Issue 11: heavy tails, bad inputs
# ---------------------------------------------------------------------------------------------


def test_kl_is_infinite_when_p_has_heavier_tails_than_q() -> None:
    assert kl(Cauchy(0.0, 1.0), Normal(0.0, 1.0)) == math.inf  # was 1.04e13
    assert kl(Cauchy(0.0, 1.0), Laplace(0.0, 1.0)) == math.inf  # E|x| = inf under the Cauchy
    # The other direction is finite: E_N[log N - log Cauchy], by an independent quadrature.
    from scipy.integrate import quad
    from scipy.stats import cauchy, norm

    expected = quad(
        lambda t: norm.pdf(t) * (norm.logpdf(t) - cauchy.logpdf(t)), -40, 40, limit=200
    )[0]
    assert kl(Normal(0.0, 1.0), Cauchy(0.0, 1.0)) == pytest.approx(
        expected, abs=1e-7
    )  # float32 parameters
    # Two Cauchy laws: heavy tails on both sides, finite closed form
    # log((s1 + s2)^2 + d^2) / (4 s1 s2).
    assert kl(Cauchy(0.0, 1.0), Cauchy(1.0, 2.0)) == pytest.approx(math.log(10 / 8), abs=1e-7)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: kl_mc(Normal(0.0, 1.0), Normal(1.0, 1.0), 100, seed=1.5),
            TypeError,
            "seed must be an int",
        ),
        (
            lambda: kl_mc(Normal(0.0, 1.0), Normal(1.0, 1.0), 100, seed=-1),
            ValueError,
            "seed must be non-negative",
        ),
        (
            lambda: jsd_mc(Normal(0.0, 1.0), Normal(1.0, 1.0), 100, seed=2.0),
            TypeError,
            "seed must be an int",
        ),
        (lambda: tv_mc(Normal(0.0, 1.0), Normal(1.0, 1.0), 1), ValueError, "n must be at least 2"),
        (lambda: kl_mc(Normal(0.0, 1.0), Normal(1.0, 1.0), 10.0), TypeError, "n must be an int"),
        (
            lambda: fit_normal(Normal(0.0, 1.0), "forward_kl", init=(math.nan, 1.0)),
            ValueError,
            "initial mean",
        ),
        (
            lambda: fit_normal(Normal(0.0, 1.0), "reverse_kl", init=(0.0, math.inf)),
            ValueError,
            "initial scale",
        ),
        (
            lambda: fit_normal(Normal(0.0, 1.0), "jsd", init=(0.0, -1.0)),
            ValueError,
            "initial scale must be positive",
        ),
        (lambda: fit_normal(Normal(0.0, 1.0), "jsd", init=0.5), TypeError, "init must be a pair"),
        (
            lambda: fit_normal(Normal(0.0, 1.0), "jsd", loc=math.nan),
            ValueError,
            "loc must be finite",
        ),
        (lambda: fit_normal(Normal(0.0, 1.0), "kl"), ValueError, "objective must be one of"),
        (
            lambda: kl(Normal(0.0, 1.0), "normal"),
            TypeError,
            "q must be a torch.distributions.Distribution",
        ),
    ],
)
def test_divergences_refuse_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
