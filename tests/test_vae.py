"""Tests of gdmlib.vae: decoders, priors, the ELBO's reduction convention, the IWAE bound, ELBO
surgery."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdmlib import vae
from gdmlib.flows import Flow, Transform
from gdmlib.training import NonFiniteLossError

SHAPE = (1, 4, 4)


def _binary(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return (torch.rand(n, *SHAPE) < 0.3).float().to(device)


def _model(
    prior: str = "standard",
    posterior: str = "gaussian",
    likelihood: str = "bernoulli",
    latent_dim: int = 2,
):
    return vae.make_vae(
        SHAPE,
        latent_dim,
        prior=prior,
        posterior=posterior,
        likelihood=likelihood,
        hidden=(16,),
        num_components=3,
        flow_hidden=(8,),
    )


# ---------------------------------------------------------------------------------------------
# Pairwise Gaussian densities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_pairwise_log_prob_matches_torch_distributions(
    device: torch.device, chunk_size: int
) -> None:
    z, loc, scale = (
        torch.randn(7, 3, device=device),
        torch.randn(5, 3, device=device),
        torch.rand(5, 3, device=device) + 0.5,
    )
    expected = torch.distributions.Normal(loc, scale).log_prob(z[:, None, :]).sum(-1)
    got = vae.gaussian_log_prob_pairwise(z, loc, scale, chunk_size=chunk_size)
    assert got.shape == (7, 5) and got.device == z.device
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _pairwise_broadcast(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The (M, N, D) broadcast reference that the matrix-product version replaced."""
    return (
        -0.5 * ((z[:, None, :] - loc) / scale).square() - scale.log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)


@pytest.mark.parametrize(("dim", "spread"), [(1, 1.0), (2, 5.0), (16, 3.0)])
def test_pairwise_log_prob_matches_the_broadcast_version_in_float64(
    device: torch.device, dim: int, spread: float
) -> None:
    # The expansion z^2/s^2 - 2 z mu/s^2 + mu^2/s^2 cancels large terms: float64 keeps it to ~1e-10.
    z = spread * torch.randn(300, dim, dtype=torch.float64, device=device)
    loc = spread * torch.randn(200, dim, dtype=torch.float64, device=device)
    scale = 0.05 + torch.rand(200, dim, dtype=torch.float64, device=device)
    expected = _pairwise_broadcast(z, loc, scale)
    got = vae.gaussian_log_prob_pairwise(z, loc, scale, chunk_size=128)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-12)
    # float32 inputs are computed in float64 too: as close as float32 rounding allows.
    got32 = vae.gaussian_log_prob_pairwise(z.float(), loc.float(), scale.float())
    assert got32.dtype == torch.float32
    exact32 = _pairwise_broadcast(z.float().double(), loc.float().double(), scale.float().double())
    torch.testing.assert_close(got32.double(), exact32, atol=1e-3, rtol=1e-6)


def test_pairwise_log_prob_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        vae.gaussian_log_prob_pairwise(torch.zeros(3, 2), torch.zeros(4, 3), torch.ones(4, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2), torch.zeros(4, 2), torch.ones(4, 2), chunk_size=0
        )


# ---------------------------------------------------------------------------------------------
# Decoders: log-likelihoods agree with torch.distributions, summed over pixels
# ---------------------------------------------------------------------------------------------


def test_bernoulli_decoder_log_prob(device: torch.device) -> None:
    decoder = vae.BernoulliDecoder(2, SHAPE, hidden=(8,)).to(device)
    x, z = _binary(5, device), torch.randn(3, 5, 2, device=device)
    logits = decoder.net(z)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x.flatten(1)).sum(-1)
    torch.testing.assert_close(decoder.log_prob(x, z), expected, atol=1e-5, rtol=1e-5)
    assert decoder.mean(z).shape == (3, 5, *SHAPE) and decoder.sample(z).shape == (3, 5, *SHAPE)


def test_categorical_decoder_log_prob(device: torch.device) -> None:
    decoder = vae.CategoricalDecoder(2, SHAPE, levels=5, hidden=(8,)).to(device)
    x = torch.randint(0, 5, (6, *SHAPE), device=device)
    z = torch.randn(2, 6, 2, device=device)
    logits = decoder.net(z).unflatten(-1, (5, 16)).transpose(-1, -2)  # (..., pixels, levels)
    expected = torch.distributions.Categorical(logits=logits).log_prob(x.flatten(1)).sum(-1)
    torch.testing.assert_close(decoder.log_prob(x, z), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoder.log_prob(x.float(), z), expected, atol=1e-5, rtol=1e-5)
    mean = decoder.mean(z)
    assert mean.shape == (2, 6, *SHAPE) and bool((mean >= 0).all() and (mean <= 4).all())
    sample = decoder.sample(z)
    assert sample.shape == (2, 6, *SHAPE) and int(sample.max()) <= 4


def test_categorical_decoder_rejects_non_levels() -> None:
    decoder = vae.CategoricalDecoder(2, SHAPE, levels=5, hidden=(8,))
    z = torch.randn(1, 3, 2)
    with pytest.raises(ValueError, match="integer levels"):
        decoder.log_prob(torch.full((3, *SHAPE), 0.5), z)
    with pytest.raises(ValueError, match="0..4"):
        decoder.log_prob(torch.full((3, *SHAPE), 5), z)
    with pytest.raises(ValueError, match="at least 2"):
        vae.CategoricalDecoder(2, SHAPE, levels=1)


def test_gaussian_decoder_log_prob(device: torch.device) -> None:
    decoder = vae.GaussianDecoder(2, SHAPE, scale=0.3, hidden=(8,)).to(device)
    x, z = torch.randn(4, *SHAPE, device=device), torch.randn(4, 2, device=device)
    expected = torch.distributions.Normal(decoder.net(z), 0.3).log_prob(x.flatten(1)).sum(-1)
    torch.testing.assert_close(decoder.log_prob(x, z), expected, atol=1e-4, rtol=1e-5)


def test_decoder_rejects_mismatched_batch() -> None:
    decoder = vae.BernoulliDecoder(2, SHAPE, hidden=(8,))
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 3, 2\)"):
        decoder.log_prob(_binary(3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        decoder.log_prob(torch.zeros(3, 16), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        decoder.mean(torch.randn(3, 5))


# ---------------------------------------------------------------------------------------------
# Priors: normalised densities, samples, devices
# ---------------------------------------------------------------------------------------------


def _priors() -> dict[str, vae.Prior]:
    encoder = vae.GaussianPosterior(SHAPE, 2, hidden=(8,))
    return {
        "standard": vae.StandardNormalPrior(2),
        "mixture": vae.MixturePrior(2, 3),
        "vamp": vae.VampPrior(encoder, torch.rand(4, *SHAPE)),
        "flow": vae.FlowPrior(2, 2, hidden=(8,)),
        "aggregate": vae.AggregatePosterior(encoder, _binary(20), chunk_size=7),
    }


@pytest.mark.parametrize("name", ["standard", "mixture", "vamp", "flow", "aggregate"])
def test_prior_density_integrates_to_one(name: str) -> None:
    prior = _priors()[name].double()
    if name == "vamp":
        prior.encoder.double()
    axis = torch.linspace(-9, 9, 361, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)
    with torch.no_grad():
        density = prior.log_prob(grid).exp()
    cell = float(axis[1] - axis[0]) ** 2
    assert density.shape == (361, 361)
    assert float(density.sum()) * cell == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("name", ["standard", "mixture", "vamp", "flow", "aggregate"])
def test_prior_samples_have_the_right_shape_and_device(name: str, device: torch.device) -> None:
    prior = _priors()[name]
    if name == "vamp":
        prior.encoder.to(device)
    prior = prior.to(device)
    samples = prior.sample(11, generator=None)
    assert samples.shape == (11, 2) and samples.device.type == device.type
    assert prior.log_prob(samples).shape == (11,)


def test_mixture_prior_matches_torch_mixture() -> None:
    prior = vae.MixturePrior(2, 3)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.1, -0.5, 1.0]))
        prior.log_scale.copy_(torch.randn(3, 2) * 0.3)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.logits),
        torch.distributions.Independent(
            torch.distributions.Normal(prior.loc, prior.log_scale.exp()), 1
        ),
    )
    z = torch.randn(6, 2)
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), atol=1e-5, rtol=1e-5)


def test_mixture_prior_samples_follow_the_mixture() -> None:
    prior = vae.MixturePrior(1, 2)
    with torch.no_grad():
        prior.loc.copy_(torch.tensor([[-3.0], [3.0]]))
        prior.logits.copy_(torch.log(torch.tensor([0.25, 0.75])))
    samples = prior.sample(20_000, generator=torch.Generator().manual_seed(0))
    fraction = float((samples > 0).float().mean())
    assert (
        abs(fraction - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 20_000) + 2e-3
    )  # + the tails' crossing mass


def test_aggregate_posterior_is_the_average_of_the_posteriors() -> None:
    encoder = vae.GaussianPosterior(SHAPE, 2, hidden=(8,))
    data = _binary(9)
    prior = vae.AggregatePosterior(encoder, data, chunk_size=2)
    z = torch.randn(5, 2)
    loc, scale = encoder.params(data)
    each = torch.distributions.Normal(loc, scale).log_prob(z[:, None, :]).sum(-1)
    expected = torch.logsumexp(each, -1) - math.log(9)
    torch.testing.assert_close(prior.log_prob(z), expected.detach(), atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in prior.parameters())


def test_vamp_prior_is_the_average_posterior_of_its_pseudo_inputs() -> None:
    encoder = vae.GaussianPosterior(SHAPE, 2, hidden=(8,))
    pseudo = torch.rand(4, *SHAPE)
    prior = vae.VampPrior(encoder, pseudo)
    z = torch.randn(3, 2)
    expected = vae.AggregatePosterior(encoder, pseudo).log_prob(z)
    torch.testing.assert_close(prior.log_prob(z), expected, atol=1e-5, rtol=1e-5)


def test_vamp_prior_shares_the_encoder_without_registering_it_twice() -> None:
    model = _model("vamp")
    names = [name for name, _ in model.named_parameters()]
    assert "prior.pseudo_inputs" in names
    assert not any(name.startswith("prior.") and "net" in name for name in names)
    assert model.prior.encoder is model.posterior


def test_priors_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        vae.StandardNormalPrior(0)
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        vae.StandardNormalPrior(2).log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="num_components"):
        vae.MixturePrior(2, 0)
    with pytest.raises(ValueError, match="pseudo_inputs must have shape"):
        vae.VampPrior(vae.GaussianPosterior(SHAPE, 2, hidden=(8,)), torch.rand(4, 16))
    with pytest.raises(TypeError, match="GaussianPosterior"):
        vae.VampPrior(nn.Linear(2, 2), torch.rand(4, *SHAPE))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        vae.FlowPrior(3, flow=vae.FlowPrior(2).flow)
    with pytest.raises(TypeError, match="Flow"):
        vae.FlowPrior(2, flow=nn.Linear(2, 2))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The ELBO: reduction convention, β, MC vs closed form KL, gradients
# ---------------------------------------------------------------------------------------------


def test_kl_is_summed_over_latents_and_averaged_over_the_batch(device: torch.device) -> None:
    model = _model(latent_dim=3).to(device)
    x = _binary(8, device)
    loc, scale = model.posterior.params(x)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale),
        torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(scale)),
    )
    reference, terms = reference.detach(), model.elbo(x)
    torch.testing.assert_close(terms.kl.detach(), reference.sum(-1).mean(), atol=1e-5, rtol=1e-5)
    # The classic bugs give these instead; they must differ from the convention.
    assert abs(float(terms.kl.detach()) - float(reference.mean())) > 1e-3
    assert abs(float(terms.kl.detach()) - float(reference.sum())) > 1e-3
    per_point = model.elbo(x, reduction="none")
    assert per_point.kl.shape == (8,)
    torch.testing.assert_close(per_point.kl.mean().detach(), terms.kl.detach())


def test_beta_weights_only_the_kl() -> None:
    model, x = _model(), _binary(8)
    one = model.elbo(x, generator=torch.Generator().manual_seed(1))
    four = model.elbo(x, beta=4.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(four.reconstruction, one.reconstruction)
    torch.testing.assert_close(four.kl, one.kl)
    torch.testing.assert_close(four.value, one.reconstruction - 4.0 * one.kl)
    zero = model.elbo(x, beta=0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(zero.value, one.reconstruction)


def test_monte_carlo_kl_agrees_with_the_closed_form() -> None:
    model, x = _model(latent_dim=3), _binary(4)
    exact = model.elbo(x, reduction="none").kl
    draws = model.elbo(x, num_samples=20_000, analytic_kl=False, reduction="none").kl
    # Per point, the MC KL is a mean of 20 000 draws of log q - log p; bound it by 4 s.e.
    z, log_q = model.posterior.rsample_and_log_prob(x, 20_000)
    stderr = (log_q - model.prior.log_prob(z)).std(0) / math.sqrt(20_000)
    assert bool(((draws - exact).abs() <= 4 * stderr).all())


def test_gradients_reach_every_parameter() -> None:
    for prior in ("standard", "mixture", "vamp", "flow"):
        for posterior in ("gaussian", "iaf") if prior != "vamp" else ("gaussian",):
            model = _model(prior, posterior)
            model.loss(_binary(6)).backward()
            missing = [
                name
                for name, p in model.named_parameters()
                if p.grad is None or not p.grad.abs().sum() > 0
            ]
            assert not missing, (prior, posterior, missing)


def test_elbo_on_the_device_matches_a_cpu_copy(device: torch.device) -> None:
    import copy

    for prior in ("standard", "mixture", "vamp", "flow"):
        reference = _model(prior)
        model = copy.deepcopy(reference).to(device)
        x, z = _binary(5), torch.randn(7, 2)
        terms = model.elbo(x.to(device), reduction="none")
        assert terms.value.device.type == device.type and terms.value.shape == (5,)
        torch.testing.assert_close(terms.value, terms.reconstruction - terms.kl)
        assert bool(torch.isfinite(terms.value).all()) and bool((terms.reconstruction <= 0).all())
        # Deterministic quantities agree with the CPU model to rounding: the device changes nothing.
        with torch.no_grad():
            expected = reference.log_joint_pairs(x, z)
            got = model.log_joint_pairs(x.to(device), z.to(device))
            torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(
                model.posterior.params(x.to(device))[1].cpu(),
                reference.posterior.params(x)[1],
                atol=1e-5,
                rtol=1e-5,
            )
        bound = model.iwae_bound(x.to(device), 8)
        assert bound.device.type == device.type and bool(torch.isfinite(bound).all())
        samples = model.sample(3)
        assert samples.shape == (3, *SHAPE) and samples.device.type == device.type
        assert bool(((samples >= 0) & (samples <= 1)).all())


def test_elbo_rejects_bad_inputs() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 4, 4\)"):
        model.elbo(torch.zeros(3, 16))
    with pytest.raises(ValueError, match="beta"):
        model.elbo(_binary(3), beta=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        model.elbo(_binary(3), num_samples=0)
    with pytest.raises(ValueError, match="reduction"):
        model.elbo(_binary(3), reduction="sum")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x must be a tensor"):
        model.elbo([[0.0]])  # type: ignore[arg-type]


_BAD_INPUTS = [
    # (call, error, match): each bad input is refused with an error naming the argument.
    (lambda: _model().elbo(_binary(3, "meta")), ValueError, "x is on meta but the encoder on cpu"),
    (
        lambda: _model().elbo(_binary(3).double()),
        TypeError,
        "x has dtype torch.float64 but the model computes in torch.float32",
    ),
    (lambda: _model().iwae_bound(_binary(3).double(), 4), TypeError, "float64"),
    (
        lambda: vae.BernoulliDecoder(2, SHAPE).log_prob(
            torch.full((3, *SHAPE), 5.0), torch.randn(3, 2)
        ),
        ValueError,
        r"Bernoulli data x must lie in \[0, 1\], got a value 5",
    ),
    (
        lambda: vae.BernoulliDecoder(2, SHAPE).log_prob_pairs(-_binary(3) - 1, torch.randn(4, 2)),
        ValueError,
        r"\[0, 1\]",
    ),
    (
        lambda: vae.BernoulliDecoder(2, SHAPE).log_prob(_binary(3).double(), torch.randn(3, 2)),
        TypeError,
        "float64",
    ),
    (lambda: vae.GaussianDecoder(2, SHAPE, scale=float("inf")), ValueError, "scale must be finite"),
    (lambda: vae.GaussianDecoder(2, SHAPE, scale=True), TypeError, "scale must be a number"),
    (lambda: vae.GaussianDecoder(2, SHAPE, scale=-1.0), ValueError, "scale must be positive"),
    (
        lambda: vae.GaussianDecoder(2, SHAPE, learn_scale="yes"),
        TypeError,
        "learn_scale must be a bool",
    ),
    (
        lambda: vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4, 2)
        ),
        ValueError,
        "scale must be positive and finite everywhere, got an entry 0",
    ),
    (
        lambda: vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2), torch.zeros(4, 2), -torch.ones(4, 2)
        ),
        ValueError,
        "scale must be positive",
    ),
    (
        lambda: vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2), torch.zeros(4, 2), torch.full((4, 2), math.nan)
        ),
        ValueError,
        "scale must be positive",
    ),
    (
        lambda: vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2, dtype=torch.long), torch.zeros(4, 2), torch.ones(4, 2)
        ),
        TypeError,
        "z must be a floating tensor",
    ),
    (
        lambda: vae.gaussian_log_prob_pairwise(
            torch.zeros(3, 2, device="meta"), torch.zeros(4, 2), torch.ones(4, 2)
        ),
        ValueError,
        "different devices",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), _BAD_INPUTS)
def test_bad_inputs_are_refused_with_a_clear_error(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_vae_rejects_mismatched_parts() -> None:
    encoder = vae.GaussianPosterior(SHAPE, 2, hidden=(8,))
    with pytest.raises(ValueError, match="latent dimensions disagree"):
        vae.VAE(encoder, vae.BernoulliDecoder(3, SHAPE))
    with pytest.raises(ValueError, match="reads"):
        vae.VAE(encoder, vae.BernoulliDecoder(2, (1, 8, 8)))
    with pytest.raises(TypeError, match="prior"):
        vae.VAE(encoder, vae.BernoulliDecoder(2, SHAPE), nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="likelihood"):
        vae.make_vae(SHAPE, 2, likelihood="poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prior"):
        vae.make_vae(SHAPE, 2, prior="laplace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="posterior"):
        vae.make_vae(SHAPE, 2, posterior="mixture")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VampPrior needs the Gaussian posterior"):
        vae.make_vae(SHAPE, 2, prior="vamp", posterior="iaf")


# ---------------------------------------------------------------------------------------------
# IAF posterior: its log-density is that of its samples
# ---------------------------------------------------------------------------------------------


def test_iaf_posterior_log_prob_matches_the_density_direction() -> None:
    posterior = vae.IAFPosterior(
        SHAPE, 3, hidden=(8,), num_layers=2, flow_hidden=(8,), context_features=4
    )
    x = _binary(5)
    z, log_q = posterior.rsample_and_log_prob(x, 2)
    loc, scale, context = posterior.gaussian(x)
    z0, ladj = posterior.transform(z, context.expand(2, *context.shape))  # data -> noise: D passes
    expected = torch.distributions.Normal(loc, scale).log_prob(z0).sum(-1) + ladj
    torch.testing.assert_close(log_q, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# IWAE bound: k = 1 is the ELBO, and it tightens towards an exact log-likelihood
# ---------------------------------------------------------------------------------------------


def test_iwae_with_one_sample_is_the_monte_carlo_elbo() -> None:
    model, x = _model("mixture"), _binary(6)
    iwae = model.iwae_bound(x, 1, generator=torch.Generator().manual_seed(3))
    elbo = model.elbo(
        x, analytic_kl=False, reduction="none", generator=torch.Generator().manual_seed(3)
    ).value
    torch.testing.assert_close(iwae, elbo.detach(), atol=1e-5, rtol=1e-5)


def _linear_gaussian_model(
    features: int, scale: float, batch: int
) -> tuple[vae.VAE, torch.Tensor, torch.Tensor]:
    """A VAE whose log-likelihood is known: p(z) = N(0, I_2), p(x | z) = N(W z + b, s^2 I), so
    log p(x) = log N(x; b, W W^T + s^2 I). Returns the model, data and the exact log p(x)."""
    net = nn.Linear(2, features)
    decoder = vae.GaussianDecoder(2, (features,), scale=scale, learn_scale=False, net=net)
    model = vae.VAE(vae.GaussianPosterior((features,), 2, hidden=(8,)), decoder)
    x = torch.randn(batch, features)
    covariance = net.weight @ net.weight.T + scale**2 * torch.eye(features)
    exact = torch.distributions.MultivariateNormal(net.bias, covariance).log_prob(x).detach()
    return model, x, exact


def test_iwae_approaches_the_exact_log_likelihood_of_a_linear_gaussian_model() -> None:
    torch.manual_seed(1)
    model, x, exact = _linear_gaussian_model(features=4, scale=0.5, batch=5)
    elbo = model.elbo(
        x, num_samples=20_000, reduction="none"
    ).value.detach()  # its expectation, nearly
    iwae = model.iwae_bound(x, 20_000, chunk_size=5000, generator=torch.Generator().manual_seed(0))
    assert bool((elbo <= exact + 1e-4).all())
    assert bool((iwae <= exact + 0.05).all())  # a bound, up to Monte Carlo error
    assert bool(((exact - iwae) < 0.5 * (exact - elbo) + 0.02).all())  # much tighter than the ELBO


# ---------------------------------------------------------------------------------------------
# ELBO surgery and the optimal prior
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["standard", "mixture"])
def test_elbo_surgery_identity_holds_within_four_standard_errors(
    prior: str, device: torch.device
) -> None:
    model = _model(prior, latent_dim=3).to(device)
    data = _binary(300, device)
    parts = vae.elbo_surgery(model, data, num_samples=8, chunk_size=64, generator=None)
    gap = parts["identity_gap"]
    assert abs(gap.value) <= 4 * gap.stderr, gap
    assert abs(
        parts["avg_kl"].value - parts["mutual_info"].value - parts["marginal_kl"].value
    ) == pytest.approx(abs(gap.value), abs=1e-9)
    assert parts["mutual_info"].value <= math.log(300)
    assert parts["mutual_info"].value > 0 and parts["marginal_kl"].value > 0
    assert parts["elbo"].value == pytest.approx(
        parts["reconstruction"].value - parts["avg_kl"].value, abs=1e-5
    )


def test_elbo_surgery_reconstruction_matches_the_models_elbo() -> None:
    model, data = _model(latent_dim=3), _binary(400)
    parts = vae.elbo_surgery(model, data, num_samples=4)
    with torch.no_grad():
        direct = model.elbo(data, num_samples=4, reduction="none")
    stderr = float(direct.value.std() / 20)
    assert parts["elbo"].value == pytest.approx(
        float(direct.value.mean()), abs=4 * stderr + 4 * parts["elbo"].stderr
    )


def test_mutual_information_never_exceeds_log_n() -> None:
    # A very informative encoder: tiny posterior scales, so I_q(n; z) is close to log N.
    model, data = _model(latent_dim=4), torch.eye(16).reshape(16, *SHAPE)
    with torch.no_grad():
        last = model.posterior.net.net[-1]
        last.bias[4:8] = -8.0  # log-scales
        last.weight.mul_(10.0)
    parts = vae.elbo_surgery(model, data, num_samples=16)
    assert parts["mutual_info"].value <= math.log(16) + 1e-9
    assert parts["mutual_info"].value > math.log(16) - 0.2


def test_the_aggregated_posterior_is_the_best_prior_for_a_fixed_encoder() -> None:
    model, data = _model(latent_dim=2), _binary(200)
    optimal = vae.AggregatePosterior(model.posterior, data)
    candidates = {
        "standard": vae.StandardNormalPrior(2),
        "mixture": vae.MixturePrior(2, 3),
        "flow": vae.FlowPrior(2, 2, hidden=(8,)),
        "vamp": vae.VampPrior(model.posterior, data[:5]),
    }
    best = vae.VAE(model.posterior, model.decoder, optimal)
    for name, prior in candidates.items():
        other = vae.VAE(model.posterior, model.decoder, prior)
        # Same draws for both: the difference per point is log q_agg(z) - log p(z).
        with torch.no_grad():
            a = best.elbo(
                data,
                num_samples=64,
                analytic_kl=False,
                reduction="none",
                generator=torch.Generator().manual_seed(0),
            ).value
            b = other.elbo(
                data,
                num_samples=64,
                analytic_kl=False,
                reduction="none",
                generator=torch.Generator().manual_seed(0),
            ).value
        difference = a - b
        stderr = float(difference.std() / math.sqrt(len(difference)))
        assert float(difference.mean()) > 4 * stderr, (name, float(difference.mean()), stderr)


def test_elbo_surgery_rejects_bad_inputs() -> None:
    with pytest.raises(TypeError, match="GaussianPosterior"):
        vae.elbo_surgery(_model(posterior="iaf"), _binary(10))
    with pytest.raises(TypeError, match="VAE"):
        vae.elbo_surgery(nn.Linear(2, 2), _binary(10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data must have shape"):
        vae.elbo_surgery(_model(), torch.zeros(10, 16))


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------


def test_fit_lowers_the_loss_to_the_pixel_entropy_and_is_reproducible() -> None:
    data = _binary(200)
    # The best model that ignores z pays the empirical entropy of each pixel; a short fit gets near
    # it.
    frequency = data.flatten(1).mean(0).clamp(1e-6, 1 - 1e-6)
    entropy = float(-(frequency * frequency.log() + (1 - frequency) * (1 - frequency).log()).sum())
    histories, losses = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = _model()
        with torch.no_grad():
            initial = float(model.loss(data))
        histories.append(
            vae.fit(
                model,
                data,
                steps=300,
                batch_size=50,
                lr=1e-2,
                log_every=100,
                generator=torch.Generator().manual_seed(0),
            )
        )
        with torch.no_grad():
            losses.append(float(model.loss(data)))
    assert histories[0] == histories[1] and losses[0] == losses[1]
    assert histories[0].steps == [100, 200, 300]
    assert initial - losses[0] > 1.5
    assert losses[0] < entropy + 0.2


class _Scalar(nn.Module):
    """One parameter w whose own loss, (w - 1)^2, differs from the custom loss given to fit."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w - 1).square()


def test_fit_minimises_the_custom_loss_not_the_models_own() -> None:
    # The custom loss E (x - w)^2 is minimised at the data mean, 3; model.loss would give w = 1.
    model, data = _Scalar(), 3 + 0.1 * torch.randn(64)
    history = vae.fit(
        model,
        data,
        steps=300,
        batch_size=16,
        lr=0.05,
        log_every=100,
        loss=lambda x: (x - model.w).square().mean(),
    )
    assert float(model.w.detach()) == pytest.approx(float(data.mean()), abs=0.05)
    # The history records the custom loss, near its minimum (the variance 0.01), not (w - 1)^2 = 4.
    assert history.losses[-1] < 0.05


def test_fit_uses_one_permutation_per_epoch() -> None:
    # Every point is seen exactly once per epoch: with N = 4 batch_size and a loss recording the
    # batches.
    model, data, seen = _Scalar(), torch.arange(40.0), []

    def loss(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return (x - model.w).square().mean()

    vae.fit(
        model, data, steps=8, batch_size=10, loss=loss, generator=torch.Generator().manual_seed(0)
    )
    for epoch in (seen[:4], seen[4:]):
        assert torch.equal(torch.cat(epoch).sort().values, data)


def test_fit_stops_on_non_finite_parameters_naming_the_step_and_the_parameter() -> None:
    # sqrt(w - w) = 0 is a finite loss whose gradient, 0 / (2 sqrt(0)), is NaN: the update poisons
    # w.
    model = _Scalar()
    with pytest.raises(NonFiniteLossError, match=r"parameter w is nan at step 0") as error:
        vae.fit(
            model,
            torch.zeros(8),
            steps=5,
            batch_size=4,
            loss=lambda x: torch.sqrt(model.w - model.w) + x.sum(),
        )
    assert error.value.step == 0 and error.value.loss == "parameter w"


def test_fit_resumes_bitwise_from_a_checkpoint(tmp_path) -> None:
    data = _binary(60)

    def run(steps: int, path=None) -> tuple[vae.FitHistory, dict]:
        history = vae.fit(
            model,
            data,
            steps=steps,
            batch_size=16,
            lr=1e-2,
            log_every=7,
            generator=torch.Generator().manual_seed(3),
            checkpoint_path=path,
            checkpoint_every=5,
        )
        return history, {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(0)
    model = _model()
    whole, whole_state = run(20)
    torch.manual_seed(0)
    model = _model()
    run(10, tmp_path / "run.pt")  # "interrupted" after 10 steps, with its checkpoint
    torch.manual_seed(1)  # the global state differs: the checkpoint restores it
    model = _model()
    resumed, resumed_state = run(20, tmp_path / "run.pt")
    assert resumed == whole
    assert all(torch.equal(resumed_state[k], whole_state[k]) for k in whole_state)


def test_fit_stops_on_a_non_finite_loss_naming_the_step() -> None:
    data = _binary(40)
    data[3] = float("nan")
    model = _model(likelihood="gaussian")
    with pytest.raises(NonFiniteLossError, match="at step 0"):
        vae.fit(model, data, steps=5, batch_size=40)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 50}, ValueError, "batch_size 50 exceeds"),
        ({"steps": 0}, ValueError, "steps must be a positive int"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"lr": 0.0}, ValueError, "lr must be positive"),
        ({"lr": float("inf")}, ValueError, "lr must be finite"),
        ({"lr": True}, TypeError, "lr must be a number"),
        ({"log_every": 0}, ValueError, "log_every"),
        ({"data": torch.zeros(0, *SHAPE)}, ValueError, "non-empty"),
        ({"data": [[0.0]]}, TypeError, "data must be a tensor"),
        (
            {"data": _binary(40).double()},
            TypeError,
            "float64 but the model's parameters torch.float32",
        ),
        ({"model": nn.Linear(2, 2), "data": torch.zeros(10, 2)}, TypeError, "no loss"),
        ({"model": "vae"}, TypeError, "model must be an nn.Module"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"model": _model(), "data": _binary(40), "steps": 1, "batch_size": 10} | kwargs
    with pytest.raises(error, match=match):
        vae.fit(**arguments)


def test_fit_rejects_data_on_another_device() -> None:
    if not torch.cuda.is_available():
        data = _binary(40, "meta")
    else:
        data = _binary(40).cuda()
    with pytest.raises(ValueError, match="move one of them"):
        vae.fit(_model(), data, steps=1, batch_size=10)


# ---------------------------------------------------------------------------------------------
# All-pairs likelihoods and the exact log-likelihood of a low-dimensional model on a grid
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical", "gaussian"])
def test_log_prob_pairs_matches_log_prob_for_every_pair(
    likelihood: str, device: torch.device
) -> None:
    decoder = vae.make_decoder(likelihood, 2, SHAPE, levels=5, hidden=(8,)).to(device)
    x = (
        torch.randint(0, 5, (4, *SHAPE), device=device)
        if likelihood == "categorical"
        else _binary(4, device)
    )
    z = torch.randn(7, 2, device=device)
    with torch.no_grad():
        pairs = decoder.log_prob_pairs(x, z)
        expected = torch.stack([decoder.log_prob(x, z_g.expand(4, 2)) for z_g in z], 1)
    assert pairs.shape == (4, 7)
    torch.testing.assert_close(pairs, expected, atol=1e-4, rtol=1e-5)


def test_log_prob_pairs_rejects_batched_latents() -> None:
    decoder = vae.BernoulliDecoder(2, SHAPE, hidden=(8,))
    with pytest.raises(ValueError, match=r"z must have shape \(G, 2\)"):
        decoder.log_prob_pairs(_binary(3), torch.randn(2, 3, 2))


def test_log_marginal_on_grid_is_exact_for_a_linear_gaussian_model() -> None:
    torch.manual_seed(2)
    model, x, exact = _linear_gaussian_model(features=3, scale=0.7, batch=6)
    torch.testing.assert_close(
        vae.log_marginal_on_grid(model, x, limit=7.0, points=201), exact, atol=1e-4, rtol=0
    )


def test_log_marginal_on_grid_bounds_the_iwae_and_handles_one_latent() -> None:
    model, x = _model(latent_dim=1), _binary(5)
    exact = vae.log_marginal_on_grid(model, x, points=2001)
    assert exact.shape == (5,)
    iwae = model.iwae_bound(x, 2000, generator=torch.Generator().manual_seed(0))
    assert bool((iwae <= exact + 0.01).all()) and bool((iwae >= exact - 0.1).all())


def test_log_marginal_on_grid_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="1- or 2-dimensional"):
        vae.log_marginal_on_grid(_model(latent_dim=3), _binary(2))
    with pytest.raises(ValueError, match="points must be at least 2"):
        vae.log_marginal_on_grid(_model(), _binary(2), points=1)
    with pytest.raises(ValueError, match="limit"):
        vae.log_marginal_on_grid(_model(), _binary(2), limit=-1.0)


# ---------------------------------------------------------------------------------------------
# A flow is the zero-noise limit of a VAE
# ---------------------------------------------------------------------------------------------


class _Affine(Transform):
    """f(x) = A x + b, a flow whose noisy-VAE ELBO has a closed form."""

    def __init__(self, matrix: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.features = matrix.shape[0]
        self.register_buffer("matrix", matrix)
        self.register_buffer("shift", shift)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ladj = torch.linalg.slogdet(self.matrix).logabsdet
        return x @ self.matrix.T + self.shift, ladj.expand(x.shape[:-1])

    def inverse(
        self, z: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ladj = -torch.linalg.slogdet(self.matrix).logabsdet
        return torch.linalg.solve(self.matrix, (z - self.shift).T).T, ladj.expand(z.shape[:-1])


def test_flow_as_vae_elbo_of_an_affine_flow_is_the_log_likelihood_minus_sigma_squared_d_over_2(
    device: torch.device,
) -> None:
    matrix = torch.tensor([[1.5, 0.4], [-0.3, 0.8]], dtype=torch.float64)
    flow = Flow(_Affine(matrix, torch.tensor([0.2, -0.1], dtype=torch.float64))).to(device)
    x = torch.randn(3, 2, dtype=torch.float64, device=device)
    sigma = 0.5
    terms = vae.flow_as_vae_elbo(flow, x, sigma, num_samples=20_000, generator=None)
    expected = flow.log_prob(x) - sigma**2 * 2 / 2
    # Per draw the ELBO deviates by -sigma f(x).eps - sigma^2 (|eps|^2 - D) / 2: bound 5 standard
    # errors.
    stderr = (sigma * flow.transform(x)[0].norm(dim=-1) + sigma**2) / math.sqrt(20_000)
    assert bool(((terms.value - expected).abs() < 5 * stderr).all())
    torch.testing.assert_close(terms.value, terms.reconstruction - terms.kl)


def test_flow_as_vae_elbo_terms_diverge_while_the_elbo_converges() -> None:
    from gdmlib.flows import realnvp

    flow = Flow(realnvp(2, num_layers=2, hidden=(8,))).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    coarse = vae.flow_as_vae_elbo(flow, x, 1e-3, generator=torch.Generator().manual_seed(0))
    fine = vae.flow_as_vae_elbo(flow, x, 1e-4, generator=torch.Generator().manual_seed(0))
    exact = flow.log_prob(x).detach()
    assert float((fine.value - exact).abs().max()) < float((coarse.value - exact).abs().max()) / 3
    assert float((fine.value - exact).abs().max()) < 1e-3
    for term in ("reconstruction", "kl"):  # each grows by D log 10 per decade of sigma
        growth = getattr(fine, term) - getattr(coarse, term)
        torch.testing.assert_close(
            growth, torch.full_like(growth, 2 * math.log(10)), atol=2e-2, rtol=0
        )


def test_flow_as_vae_elbo_rejects_bad_inputs() -> None:
    flow = Flow(_Affine(torch.eye(2), torch.zeros(2)))
    with pytest.raises(ValueError, match="sigma"):
        vae.flow_as_vae_elbo(flow, torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        vae.flow_as_vae_elbo(flow, torch.zeros(3, 3), 0.1)
    with pytest.raises(TypeError, match="Flow"):
        vae.flow_as_vae_elbo(nn.Linear(2, 2), torch.zeros(3, 2), 0.1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ELBO surgery by quadrature
# ---------------------------------------------------------------------------------------------


def _aggregate_with(loc: torch.Tensor, scale: torch.Tensor) -> vae.AggregatePosterior:
    """An AggregatePosterior whose posteriors are the given Gaussians (the buffers replaced)."""
    dim = loc.shape[1]
    aggregate = vae.AggregatePosterior(_model(latent_dim=dim).posterior, _binary(loc.shape[0]))
    aggregate.loc, aggregate.scale = loc, scale
    return aggregate


@pytest.mark.parametrize("dim", [1, 2])
def test_elbo_surgery_on_grid_of_identical_posteriors_is_the_closed_form_kl(dim: int) -> None:
    # N copies of one Gaussian: q(z) is that Gaussian, I_q(n; z) = 0 and the marginal KL is
    # closed-form.
    loc, scale = (
        torch.tensor([[0.7, -1.2][:dim]]).repeat(5, 1),
        torch.tensor([[0.4, 1.5][:dim]]).repeat(5, 1),
    )
    terms = vae.elbo_surgery_on_grid(_aggregate_with(loc, scale), vae.StandardNormalPrior(dim))
    exact = float(0.5 * (loc[0].square() + scale[0].square() - 1 - 2 * scale[0].log()).sum())
    assert terms["mass"] == pytest.approx(1.0, abs=1e-9)
    assert terms["mutual_info"] == pytest.approx(0.0, abs=1e-7)
    assert terms["marginal_kl"] == pytest.approx(exact, abs=1e-7)


def test_elbo_surgery_on_grid_of_separated_posteriors_has_mutual_information_log_n() -> None:
    # Four narrow posteriors far apart: the code identifies its point, I_q(n; z) = log 4.
    loc = torch.tensor([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]])
    terms = vae.elbo_surgery_on_grid(
        _aggregate_with(loc, torch.full((4, 2), 0.2)), vae.StandardNormalPrior(2)
    )
    assert terms["mutual_info"] == pytest.approx(math.log(4), abs=1e-6)


@pytest.mark.parametrize("prior", ["standard", "mixture"])
def test_elbo_surgery_on_grid_agrees_with_the_monte_carlo_surgery(prior: str) -> None:
    model, data = _model(prior, latent_dim=2), _binary(200)
    parts = vae.elbo_surgery(
        model, data, num_samples=32, generator=torch.Generator().manual_seed(0)
    )
    terms = vae.elbo_surgery_on_grid(vae.AggregatePosterior(model.posterior, data), model.prior)
    for key in ("mutual_info", "marginal_kl"):
        assert abs(parts[key].value - terms[key]) < 4 * parts[key].stderr, (
            key,
            parts[key],
            terms[key],
        )
    # The identity holds for the quadrature too (up to the rectangle rule's error).
    if prior == "standard":
        assert terms["mutual_info"] + terms["marginal_kl"] == pytest.approx(
            parts["avg_kl"].value, abs=1e-6
        )
    # A coarser grid gives the same numbers: the rule has converged.
    coarse = vae.elbo_surgery_on_grid(
        vae.AggregatePosterior(model.posterior, data), model.prior, points=101
    )
    assert coarse["marginal_kl"] == pytest.approx(terms["marginal_kl"], abs=1e-5)


def test_elbo_surgery_on_grid_rejects_bad_inputs() -> None:
    aggregate = vae.AggregatePosterior(_model(latent_dim=2).posterior, _binary(10))
    with pytest.raises(TypeError):
        vae.elbo_surgery_on_grid(_model(latent_dim=2).prior, aggregate)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vae.elbo_surgery_on_grid(aggregate, nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1- or 2-dimensional"):
        vae.elbo_surgery_on_grid(
            vae.AggregatePosterior(_model(latent_dim=3).posterior, _binary(10)),
            vae.StandardNormalPrior(3),
        )
    with pytest.raises(ValueError, match="latent dimension"):
        vae.elbo_surgery_on_grid(aggregate, vae.StandardNormalPrior(1))
    with pytest.raises(ValueError, match="limit"):
        vae.elbo_surgery_on_grid(aggregate, vae.StandardNormalPrior(2), limit=-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        vae.elbo_surgery_on_grid(aggregate, vae.StandardNormalPrior(2), points=2)
    with pytest.raises(ValueError, match="max_points"):
        vae.elbo_surgery_on_grid(aggregate, vae.StandardNormalPrior(2), points=50, max_points=40)
