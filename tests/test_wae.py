"""Tests for gdmlib.vae.wae (the regularised autoencoders of chapter 9) and gdmlib.vae.avb."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdmlib.nets import MLP
from gdmlib.training import NonFiniteLossError
from gdmlib.two_sample import mmd2_imq
from gdmlib.vae import (
    RegularizedAutoencoder,
    adversarial_kl,
    fit_autoencoder,
    linear_gaussian_decoder_costs,
    make_autoencoder,
    quadratic_features,
)

KINDS = ["ae", "vae", "wae-mmd", "wae-gan", "aae"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("members", [None, 3])
def test_every_kind_has_the_shapes_of_its_contract(device, kind, members) -> None:
    torch.manual_seed(0)
    model = make_autoencoder(kind, 5, 2, hidden=(8,), members=members, lam=2.0).to(device)
    x = torch.rand(7, 5, device=device)
    prefix = () if members is None else (members,)
    assert model.encode(x).shape == (*prefix, 7, 2)
    assert model.reconstruct(x).shape == (*prefix, 7, 5)
    assert model.sample(4).shape == (*prefix, 4, 5)
    terms = model.terms(x)
    assert terms.reconstruction.shape == prefix and terms.penalty.shape == prefix
    assert terms.reconstruction.device.type == device.type
    assert model.stochastic == (kind in ("vae", "aae"))
    if kind in ("wae-gan", "aae"):
        with pytest.raises(TypeError, match="fit_autoencoder"):
            model.loss(x)
    else:
        loss = model.loss(x)
        expected = (terms.reconstruction + 2.0 * terms.penalty).mean()
        if not model.stochastic:  # deterministic codes: the same terms (the MMD's prior draws
            # differ, so compare the reconstruction part only there)
            if kind == "ae":
                torch.testing.assert_close(loss, expected)
        assert loss.shape == () and torch.isfinite(loss)


def test_reconstruction_is_the_squared_error_summed_over_coordinates() -> None:
    torch.manual_seed(0)
    model = make_autoencoder("ae", 3, 2, hidden=(4,))
    x = torch.randn(6, 3)
    z = model.encode(x)
    expected = (model.decode(z) - x).square().sum(-1).mean()
    torch.testing.assert_close(model.reconstruction_cost(x, z), expected)


def test_kl_penalty_is_the_closed_form_against_the_scaled_prior() -> None:
    torch.manual_seed(0)
    model = make_autoencoder("vae", 4, 3, hidden=(8,), prior_scale=2.0).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    loc, scale = model._posterior(x)
    q = torch.distributions.Normal(loc, scale)
    p = torch.distributions.Normal(torch.zeros_like(loc), torch.full_like(loc, 2.0))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    torch.testing.assert_close(model.terms(x).penalty, expected, rtol=0, atol=1e-12)


def test_mmd_penalty_is_the_imq_statistic_with_the_prior_scale() -> None:
    torch.manual_seed(0)
    model = make_autoencoder("wae-mmd", 4, 3, hidden=(8,), members=2, prior_scale=0.5).double()
    x = torch.randn(10, 4, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    penalty = model.terms(x, generator=generator).penalty
    prior = 0.5 * torch.randn(
        2, 10, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    expected = mmd2_imq(model.encode(x), prior, c_base=2 * 3 * 0.5**2)
    torch.testing.assert_close(penalty, expected, rtol=0, atol=1e-12)


def test_a_vae_penalty_weight_is_twice_the_decoder_variance() -> None:
    # -log N(x; G(z), s^2 I) = |x - G(z)|^2 / (2 s^2) + D/2 log(2 pi s^2): so 2 s^2 (-ELBO) is the
    # objective with lam = 2 s^2, up to the constant D s^2 log(2 pi s^2).
    torch.manual_seed(0)
    variance, dim = 0.3, 4
    model = make_autoencoder("vae", dim, 2, hidden=(8,), lam=2 * variance).double()
    x = torch.randn(6, dim, dtype=torch.float64)
    torch.manual_seed(1)
    terms = model.terms(x)
    torch.manual_seed(1)
    z = model.encode(x)
    log_likelihood = torch.distributions.Normal(model.decode(z), math.sqrt(variance)).log_prob(x)
    negative_elbo = -log_likelihood.sum(-1).mean() + terms.penalty
    objective = terms.reconstruction + 2 * variance * terms.penalty
    constant = dim * variance * math.log(2 * math.pi * variance)
    assert float((2 * variance * negative_elbo - objective).detach()) == pytest.approx(
        constant, abs=1e-12
    )


def test_penalty_weights_per_member_weigh_each_member() -> None:
    torch.manual_seed(0)
    model = make_autoencoder("vae", 3, 2, hidden=(4,), members=2, lam=[0.0, 5.0])
    x = torch.randn(8, 3)
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    terms = model.terms(x)
    expected = (terms.reconstruction + torch.tensor([0.0, 5.0]) * terms.penalty).mean()
    torch.testing.assert_close(loss, expected)


def test_wae_mmd_matches_the_prior_where_the_autoencoder_does_not() -> None:
    # Data far from the prior: lam = 0 keeps the codes where they land, lam = 30 pulls Q_Z to P_Z.
    g = torch.Generator().manual_seed(0)
    data = 3.0 + 0.5 * torch.randn(512, 1, generator=g)
    torch.manual_seed(0)
    model = make_autoencoder("wae-mmd", 1, 1, hidden=(16,), members=2, lam=[0.0, 30.0])
    fit_autoencoder(model, data, steps=300, batch_size=128, lr=5e-3, generator=g)
    with torch.no_grad():
        penalty = mmd2_imq(model.encode(data), model.prior_sample(512))
    assert penalty[1] < 0.05 < penalty[0]


def test_adversarial_training_runs_and_moves_the_codes_to_the_prior() -> None:
    g = torch.Generator().manual_seed(0)
    data = 4.0 + 0.5 * torch.randn(512, 1, generator=g)
    torch.manual_seed(0)
    model = make_autoencoder("wae-gan", 1, 1, hidden=(16,), members=2, lam=[0.0, 10.0])
    history = fit_autoencoder(
        model, data, steps=400, batch_size=128, lr=3e-3, adversary_lr=3e-3, generator=g
    )
    assert len(history) == 400
    with torch.no_grad():
        penalty = mmd2_imq(model.encode(data), model.prior_sample(512))
    # A few hundred steps only bring the codes part of the way (the adversarial penalty is slow
    # and fragile), but well ahead of the unpenalised member.
    assert penalty[1] < penalty[0] / 2


def test_training_stops_on_non_finite_losses() -> None:
    data = torch.randn(64, 2)
    data[3, 0] = math.nan
    for kind in ("wae-mmd", "aae"):
        torch.manual_seed(0)
        model = make_autoencoder(kind, 2, 1, hidden=(4,))
        with pytest.raises(NonFiniteLossError, match="step"):
            fit_autoencoder(model, data, steps=50, batch_size=64)


class _WrongWidth(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = MLP(3, width, hidden=(4,))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"penalty": "wasserstein"}, ValueError, "penalty must be one of"),
        ({"penalty": "mmd", "lam": -1.0}, ValueError, "non-negative"),
        ({"penalty": "mmd", "lam": math.inf}, ValueError, "finite"),
        ({"penalty": "mmd", "lam": "10"}, TypeError, "lam must be a number"),
        ({"penalty": "mmd", "lam": [1.0, 2.0]}, ValueError, "one number per member"),
        ({"penalty": "mmd", "lam": [1.0, 2.0], "members": 3}, ValueError, "3 members"),
        ({"penalty": "kl"}, ValueError, "stochastic encoder"),
        ({"penalty": "gan"}, TypeError, "adversary must be an nn.Module"),
        ({"penalty": "mmd", "adversary": nn.Linear(2, 1)}, ValueError, "only used by"),
        ({"penalty": "mmd", "stochastic": 1}, TypeError, "stochastic must be a bool"),
        ({"penalty": "mmd", "prior_scale": 0.0}, ValueError, "prior_scale"),
        ({"penalty": "mmd", "members": 0}, ValueError, "members"),
    ],
)
def test_model_rejects_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        RegularizedAutoencoder(MLP(3, 2, hidden=(4,)), MLP(2, 3, hidden=(4,)), 2, **kwargs)


@pytest.mark.parametrize(
    ("encoder_width", "decoder_out", "x", "error", "match"),
    [
        (3, 3, torch.zeros(4, 3), ValueError, r"encoder must return shape \(4, 2\)"),
        (2, 5, torch.zeros(4, 3), ValueError, "dimension 3"),
        (2, 3, torch.zeros(4, 3).double(), TypeError, "dtype"),
        (2, 3, torch.zeros(4, 1, 3), ValueError, r"shape \(N, D\)"),
        (2, 3, [[0.0, 0.0, 0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_model_rejects_bad_data_and_networks(encoder_width, decoder_out, x, error, match) -> None:
    model = RegularizedAutoencoder(
        _WrongWidth(encoder_width), MLP(2, decoder_out, hidden=(4,)), 2, penalty="none"
    )
    with pytest.raises(error, match=match):
        model.terms(x)


def test_decoder_with_the_wrong_leading_shape_is_refused() -> None:
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MLP(2, 3, hidden=(4,))

        def forward(self, z):
            return self.net(z).flatten()

    model = RegularizedAutoencoder(MLP(3, 2, hidden=(4,)), Flat(), 2, penalty="none")
    with pytest.raises(ValueError, match="decoder must map codes"):
        model.terms(torch.zeros(4, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "gan"}, ValueError, "kind must be one of"),
        ({"kind": "ae", "output": "tanh"}, ValueError, "output must be"),
        ({"kind": "ae", "lam": -0.5}, ValueError, "non-negative"),
    ],
)
def test_make_autoencoder_rejects_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        make_autoencoder(data_dim=3, latent_dim=2, **kwargs)


def test_fit_autoencoder_rejects_bad_arguments() -> None:
    model = make_autoencoder("wae-gan", 2, 1, hidden=(4,))
    with pytest.raises(TypeError, match="RegularizedAutoencoder"):
        fit_autoencoder(nn.Linear(2, 2), torch.zeros(4, 2), steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        fit_autoencoder(model, torch.zeros(4, 2), steps=1, batch_size=8)
    with pytest.raises(ValueError, match="adversary_lr"):
        fit_autoencoder(model, torch.zeros(4, 2), steps=1, batch_size=2, adversary_lr=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        fit_autoencoder(model, torch.zeros(4, 2).double(), steps=1, batch_size=2)


# ---------------------------------------------------------------------------------------------
# Gaussian decoders in closed form (Proposition 2 of the VEGAN cookbook)
# ---------------------------------------------------------------------------------------------


def test_linear_gaussian_decoder_costs_and_their_minimisers() -> None:
    s = 2.0
    slopes = torch.linspace(0.0, 3.0, 300_001, dtype=torch.float64)
    for sigma, optimum in [(0.0, 2.0), (0.5, 1.936492), (1.0, 1.732051), (1.5, 1.322876)]:
        costs = linear_gaussian_decoder_costs(s, slopes, sigma)
        assert bool((costs.wasserstein <= costs.upper_bound + 1e-15).all())
        assert float(slopes[costs.wasserstein.argmin()]) == pytest.approx(optimum, abs=1e-5)
        assert float(slopes[costs.upper_bound.argmin()]) == pytest.approx(s, abs=1e-5)
        assert float(costs.upper_bound.min()) == pytest.approx(sigma**2, abs=1e-9)
    with pytest.raises(ValueError, match="positive"):
        linear_gaussian_decoder_costs(-1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="non-negative"):
        linear_gaussian_decoder_costs(1.0, 1.0, -0.5)


# ---------------------------------------------------------------------------------------------
# AVB: the adversarial KL estimate
# ---------------------------------------------------------------------------------------------


def avb_toy(n: int, seed: int, device="cpu"):
    """AVB's four-point toy: Gaussian encoders around 0.8 (+-1, +-1), p = N(0, I_2)."""
    g = torch.Generator().manual_seed(seed)
    means = 0.8 * torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    scales = torch.tensor([0.3, 0.5, 0.7, 0.9])
    z_q = means[:, None] + scales[:, None, None] * torch.randn(4, n, 2, generator=g)
    z_p = torch.randn(4, n, 2, generator=g)
    kl = 0.5 * (2 * scales**2 + means.square().sum(-1) - 2 - 4 * scales.log())
    as64 = lambda t: t.double().to(device)  # noqa: E731
    return as64(z_q), as64(z_p), kl.double()


def test_avb_toy_closed_form_values() -> None:
    _, _, kl = avb_toy(2, 0)
    torch.testing.assert_close(
        kl, torch.tensor([2.1379, 1.2763, 0.8433, 0.6607], dtype=torch.float64), atol=5e-5, rtol=0
    )


def test_adversarial_kl_approaches_the_closed_form(device) -> None:
    z_q, z_p, kl = avb_toy(10_000, 0, device)
    result = adversarial_kl(z_q, z_p)
    assert result.kl.device.type == device.type
    assert float((result.kl.cpu() - kl).abs().max()) < 0.1
    # The optimal discriminator log q(z|x) - log p(z) is in the family: its coefficients are
    # close to the fitted ones (constant, linear, then z1^2, z1 z2, z2^2).
    scale = torch.tensor([0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    z = torch.randn(4, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    means = 0.8 * torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    exact = torch.distributions.Normal(means[:, None].double(), scale[:, None, None]).log_prob(
        z
    ).sum(-1) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    fitted = result.logit(z.to(device)).cpu()
    assert float((fitted - exact).abs().median()) < 0.3


def test_adversarial_kl_error_shrinks_with_more_draws() -> None:
    errors = []
    for n in (4_000, 100_000):
        runs = [adversarial_kl(*avb_toy(n, seed)[:2]).kl - avb_toy(2, 0)[2] for seed in range(3)]
        errors.append(float(torch.stack(runs).square().mean().sqrt()))
    assert errors[1] < errors[0] / 2


def test_quadratic_features() -> None:
    z = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert quadratic_features(z).tolist() == [[[1.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]]


@pytest.mark.parametrize(
    ("z_q", "z_p", "error", "match"),
    [
        (torch.zeros(2, 5, 1), torch.zeros(3, 5, 1), ValueError, "same number of conditioning"),
        (torch.zeros(2, 5, 1), torch.zeros(2, 5, 2), ValueError, "dimension d"),
        (torch.zeros(2, 5), torch.zeros(2, 5), ValueError, r"shape \(K, n, d\)"),
        (torch.zeros(2, 1, 1), torch.zeros(2, 5, 1), ValueError, "n >= 2"),
        (torch.zeros(2, 5, 1), torch.zeros(2, 5, 1).double(), TypeError, "same dtype"),
        (torch.zeros(2, 5, 1, dtype=torch.long), torch.zeros(2, 5, 1), TypeError, "floating"),
        (torch.full((2, 5, 1), math.nan), torch.zeros(2, 5, 1), ValueError, "finite"),
    ],
)
def test_adversarial_kl_rejects_bad_inputs(z_q, z_p, error, match) -> None:
    with pytest.raises(error, match=match):
        adversarial_kl(z_q, z_p)


def test_adversarial_kl_refuses_separable_samples() -> None:
    z_q = 10.0 + 0.01 * torch.randn(1, 50, 1, dtype=torch.float64)
    z_p = torch.randn(1, 50, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="did not converge"):
        adversarial_kl(z_q, z_p)


def test_a_vae_member_becomes_a_gdmlib_vae_with_the_same_terms() -> None:
    from gdmlib.vae import elbo_surgery

    torch.manual_seed(0)
    model = make_autoencoder("vae", 5, 2, hidden=(8,), members=2, output="sigmoid").double()
    x = torch.rand(20, 5, dtype=torch.float64)
    vae = model.as_vae(1, decoder_scale=0.5)
    loc, scale = model._posterior(x)
    torch.testing.assert_close(vae.posterior.params(x)[0], loc[1])
    torch.testing.assert_close(vae.posterior.params(x)[1], scale[1])
    z = torch.randn(20, 2, dtype=torch.float64)
    torch.testing.assert_close(vae.decoder.mean(z), model.decode(z.expand(2, -1, -1))[1])
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc[1], scale[1]), torch.distributions.Normal(0.0, 1.0)
    )
    parts = elbo_surgery(vae, x, num_samples=4)
    assert parts["avg_kl"].value == pytest.approx(float(kl.sum(-1).mean().detach()), abs=1e-10)
    with pytest.raises(ValueError, match="member"):
        model.as_vae()
    with pytest.raises(ValueError, match="stochastic"):
        make_autoencoder("ae", 5, 2, hidden=(8,)).as_vae()
