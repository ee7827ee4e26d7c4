"""Tests for gdmlib.vae.disentanglement: DIP-VAE's covariance, β-TCVAE's total correlation,
the exact decomposition, the linear-Gaussian β-optimum and the batched ensemble."""

from __future__ import annotations

import math

import pytest
import torch

from gdmlib.training import NonFiniteLossError, fit
from gdmlib.vae import (
    DisentanglingEnsemble,
    Objective,
    aggregate_covariance,
    beta_tc_decomposition,
    dip_regularizer,
    linear_gaussian_rate_distortion,
    mss_log_weights,
    total_correlation_mss,
    total_correlation_mws,
)

F64 = torch.float64
HAND_MEAN = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])


def test_dip_hand_oracle(device: torch.device) -> None:
    mean = HAND_MEAN.to(device)
    torch.testing.assert_close(
        aggregate_covariance(mean), torch.diag(torch.tensor([0.5, 2.0], device=device))
    )
    assert float(dip_regularizer(mean, lambda_od=1.0, lambda_d=1.0)) == pytest.approx(1.25)
    assert float(dip_regularizer(mean, lambda_od=10.0, lambda_d=100.0)) == pytest.approx(125.0)
    variance = torch.full((4, 2), 0.5, device=device)
    assert float(dip_regularizer(mean, variance, lambda_od=1.0, lambda_d=1.0)) == pytest.approx(
        2.25
    )


def test_dip_ii_target_adds_only_a_diagonal() -> None:
    g = torch.Generator().manual_seed(0)
    mean, variance = torch.randn(7, 3, generator=g), torch.rand(7, 3, generator=g) + 0.1
    full, means_only = aggregate_covariance(mean, variance), aggregate_covariance(mean)
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.equal(full[off], means_only[off])  # not a scalar added everywhere
    torch.testing.assert_close(torch.diagonal(full - means_only), variance.mean(0))  # not sigma^4
    torch.testing.assert_close(means_only, torch.cov(mean.T, correction=0))  # batch axis, 1/B


def test_law_of_total_covariance_by_sampling() -> None:
    g = torch.Generator().manual_seed(1)
    mean, std = (
        torch.randn(50, 3, generator=g, dtype=F64),
        torch.rand(50, 3, generator=g, dtype=F64) + 0.2,
    )
    n = 200_000
    which = torch.randint(50, (n,), generator=g)
    z = mean[which] + std[which] * torch.randn(n, 3, generator=g, dtype=F64)
    centred = z - z.mean(0)
    products = centred.unsqueeze(2) * centred.unsqueeze(1)
    sample, stderr = products.mean(0), products.std(0) / math.sqrt(n)
    expected = aggregate_covariance(mean, std.square())
    assert bool(((sample - expected).abs() <= 4 * stderr + 1e-12).all())


@pytest.mark.parametrize(("batch", "size"), [(2, 2), (6, 100), (64, 2304)])
def test_mss_weights_rows_sum_to_one(batch: int, size: int) -> None:
    weights = mss_log_weights(batch, size, dtype=F64).exp()
    torch.testing.assert_close(weights.sum(1), torch.ones(batch, dtype=F64))
    torch.testing.assert_close(torch.diagonal(weights), torch.full((batch,), 1 / size, dtype=F64))


def test_identical_posteriors_give_zero_tc_for_mss_and_d_minus_1_log_n_for_mws(device) -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(1, 5, generator=g, dtype=F64).expand(16, 5).to(device)
    std = (torch.rand(1, 5, generator=g, dtype=F64) + 0.5).expand(16, 5).to(device)
    z = mean + std * torch.randn(16, 5, generator=g, dtype=F64).to(device)
    assert abs(float(total_correlation_mss(z, mean, std, 1000))) < 1e-10
    assert float(total_correlation_mws(z, mean, std, 1000)) == pytest.approx(4 * math.log(1000))


def test_mss_is_consistent_on_the_whole_data_set() -> None:
    # with B = N the stratified estimate uses every posterior: compare with the exact mixture
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(40, 2, generator=g, dtype=F64) @ torch.tensor(
        [[1.0, 0.8], [0.0, 0.6]], dtype=F64
    )
    std = torch.full((40, 2), 0.3, dtype=F64)
    estimates = [
        float(
            total_correlation_mss(
                mean + std * torch.randn(40, 2, generator=g, dtype=F64), mean, std, 40
            )
        )
        for _ in range(200)
    ]
    exact = beta_tc_decomposition(mean, std, num_samples=200, generator=g).total_correlation
    mc = torch.tensor(estimates)
    assert (
        abs(float(mc.mean()) - exact.value)
        < 4 * math.hypot(float(mc.std()) / math.sqrt(200), exact.stderr) + 0.05
    )


def test_decomposition_sums_to_the_average_kl() -> None:
    g = torch.Generator().manual_seed(3)
    mean, std = (
        torch.randn(300, 3, generator=g, dtype=F64),
        torch.rand(300, 3, generator=g, dtype=F64) + 0.1,
    )
    split = beta_tc_decomposition(mean, std, num_samples=4, generator=g)
    assert abs(split.sum.value - split.average_kl) < 4 * split.sum.stderr
    for term in (split.mutual_info, split.total_correlation, split.dimensionwise_kl):
        assert term.value > -4 * term.stderr
    assert split.mutual_info.value <= math.log(300) + 4 * split.mutual_info.stderr


def test_identical_posteriors_give_zero_mutual_information_and_total_correlation() -> None:
    g = torch.Generator().manual_seed(4)
    mean, std = torch.full((64, 3), 0.7, dtype=F64), torch.full((64, 3), 0.4, dtype=F64)
    split = beta_tc_decomposition(mean, std, generator=g)
    assert abs(split.mutual_info.value) < 1e-10 and abs(split.total_correlation.value) < 1e-10
    prior = beta_tc_decomposition(torch.zeros(64, 3), torch.ones(64, 3), generator=g)
    assert prior.average_kl == 0.0
    for term in prior[1:]:
        assert abs(term.value) < 1e-10


def test_linear_gaussian_optimum() -> None:
    w, sigma = 1.3, 0.4
    exact = linear_gaussian_rate_distortion(1.0, w, sigma)
    assert exact.gain == pytest.approx(w / (w * w + sigma**2))
    assert exact.variance == pytest.approx(sigma**2 / (w * w + sigma**2))
    # gradient of D + beta R vanishes at the optimum
    for beta in (0.3, 1.0, 4.0):
        opt = linear_gaussian_rate_distortion(beta, w, sigma)
        params = torch.tensor([opt.gain, math.log(opt.variance)], dtype=F64, requires_grad=True)
        a, s2 = params[0], params[1].exp()
        v = w * w + sigma**2
        loss = ((1 - w * a) ** 2 * v + w * w * s2) / (2 * sigma**2) + beta * 0.5 * (
            a * a * v + s2 - 1 - s2.log()
        )
        (grad,) = torch.autograd.grad(loss, params)
        assert float(grad.abs().max()) < 1e-12
    # beta is minus the slope of the rate-distortion curve
    h, beta = 1e-5, 2.0
    up, down = (linear_gaussian_rate_distortion(beta + s, w, sigma) for s in (h, -h))
    slope = (up.distortion - down.distortion) / (up.rate - down.rate)
    assert slope == pytest.approx(-beta, rel=1e-6)


def test_ensemble_trains_and_stops_on_nan() -> None:
    torch.manual_seed(0)
    objectives = [
        Objective("beta-vae"),
        Objective("beta-vae", beta=4.0),
        Objective("dip-vae-i", lambda_od=1.0, lambda_d=10.0),
        Objective("dip-vae-ii", lambda_od=1.0, lambda_d=1.0),
        Objective("beta-tcvae", beta=6.0),
    ]
    data = (torch.rand(256, 16) < 0.3).float()
    model = DisentanglingEnsemble(objectives, 16, 2, 256, hidden=(16,))
    history = fit(model, data, steps=30, batch_size=32, generator=torch.Generator().manual_seed(0))
    assert len(history.losses) > 0
    terms = model.terms(data)
    assert terms["kl"].shape == (5,) and bool(torch.isfinite(terms["loss"]).all())
    mean, std = model.encode(data)
    assert mean.shape == (5, 256, 2) and bool((std > 0).all())
    assert [o.label for o in objectives][:2] == ["VAE", "β-VAE β=4"]
    with pytest.raises(NonFiniteLossError):
        fit(model, torch.full((64, 16), float("nan")), steps=2, batch_size=32)


def test_ensemble_members_are_independent() -> None:
    torch.manual_seed(0)
    model = DisentanglingEnsemble([Objective("beta-vae")] * 3, 8, 2, 100, hidden=(8,))
    x = torch.rand(10, 8, requires_grad=False)
    model.terms(x)["loss"][1].backward()
    for weight in model.encoder.weights:
        assert float(weight.grad[0].abs().sum()) == 0 and float(weight.grad[2].abs().sum()) == 0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: dip_regularizer(HAND_MEAN, lambda_od=-1.0, lambda_d=1.0), ValueError, "lambda_od"),
        (lambda: dip_regularizer(HAND_MEAN, lambda_od=1.0, lambda_d=True), TypeError, "lambda_d"),
        (lambda: dip_regularizer(HAND_MEAN[0], lambda_od=1.0, lambda_d=1.0), ValueError, "shape"),
        (
            lambda: dip_regularizer(HAND_MEAN.long(), lambda_od=1.0, lambda_d=1.0),
            TypeError,
            "floating",
        ),
        (lambda: aggregate_covariance(HAND_MEAN, torch.ones(4, 3)), ValueError, "shape of mean"),
        (lambda: aggregate_covariance(HAND_MEAN, -torch.ones(4, 2)), ValueError, "non-negative"),
        (lambda: aggregate_covariance(HAND_MEAN, torch.ones(4, 2, dtype=F64)), TypeError, "dtype"),
        (lambda: mss_log_weights(1, 10), ValueError, "batch_size"),
        (lambda: mss_log_weights(8, 4), ValueError, "at least batch_size"),
        (
            lambda: total_correlation_mss(HAND_MEAN, HAND_MEAN, torch.zeros(4, 2), 10),
            ValueError,
            "positive",
        ),
        (
            lambda: total_correlation_mss(HAND_MEAN[:1], HAND_MEAN[:1], torch.ones(1, 2), 10),
            ValueError,
            "B >= 2",
        ),
        (
            lambda: beta_tc_decomposition(HAND_MEAN, torch.ones(4, 2), num_samples=0),
            ValueError,
            "num_samples",
        ),
        (lambda: linear_gaussian_rate_distortion(0.0), ValueError, "beta"),
        (lambda: linear_gaussian_rate_distortion(1.0, weight=0.0), ValueError, "weight"),
        (lambda: Objective("factor-vae"), None, None),
        (lambda: DisentanglingEnsemble([Objective("factor-vae")], 4, 2, 10), ValueError, "kind"),
        (lambda: DisentanglingEnsemble([], 4, 2, 10), ValueError, "at least one"),
        (lambda: DisentanglingEnsemble(Objective("beta-vae"), 4, 2, 10), TypeError, "sequence"),
        (
            lambda: DisentanglingEnsemble([Objective("beta-vae", beta=-1.0)], 4, 2, 10),
            ValueError,
            "beta",
        ),
        (
            lambda: DisentanglingEnsemble([Objective("beta-vae")], 4, 2, 10).loss(torch.rand(5, 3)),
            ValueError,
            "4 pixels",
        ),
    ],
)
def test_bad_inputs(call, error, match) -> None:
    if error is None:
        call()  # constructing an Objective does not validate; the ensemble does
        return
    with pytest.raises(error, match=match):
        call()
