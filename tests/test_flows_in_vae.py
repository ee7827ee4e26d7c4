"""Tests of the flow-in-VAE additions to gdmlib.flows: TransformedPosterior and TransformedInput,
and the theorem that a shared posterior flow and a flow prior give the same ELBO."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdmlib.flows import Inverse, TransformedInput, TransformedPosterior, iaf, maf, realnvp
from gdmlib.vae import VAE, BernoulliDecoder, FlowPrior, GaussianPosterior, StandardNormalPrior

SHAPE, LATENT = (1, 3, 3), 2


def two_models(device: torch.device) -> tuple[VAE, VAE]:
    """Model A (posterior T_# q0, prior N(0, I)) and model B (q0, flow prior, decoder on T(z0))."""
    transform = iaf(LATENT, 2, hidden=(16,))
    gaussian = GaussianPosterior(SHAPE, LATENT, hidden=(16,))
    decoder_a = BernoulliDecoder(LATENT, SHAPE, hidden=(16,))
    model_a = VAE(TransformedPosterior(gaussian, transform), decoder_a, StandardNormalPrior(LATENT))
    decoder_b = BernoulliDecoder(LATENT, SHAPE, net=TransformedInput(transform, decoder_a.net))
    model_b = VAE(gaussian, decoder_b, FlowPrior(LATENT, flow=Inverse(transform)))
    return model_a.to(device), model_b.to(device)


def test_shared_flow_posterior_and_flow_prior_have_the_same_elbo(device: torch.device) -> None:
    model_a, model_b = two_models(device)
    x = (torch.rand(7, *SHAPE) < 0.4).float().to(device)
    elbos = []
    for model in (model_a, model_b):
        generator = torch.Generator(device).manual_seed(3)
        elbos.append(model.elbo(x, num_samples=5, reduction="none", generator=generator))
    assert torch.allclose(elbos[0].value, elbos[1].value, atol=1e-5)
    assert torch.allclose(elbos[0].kl, elbos[1].kl, atol=1e-5)
    assert torch.allclose(elbos[0].reconstruction, elbos[1].reconstruction, atol=1e-5)


def test_posterior_log_prob_matches_the_flow_density_of_the_samples(device: torch.device) -> None:
    # With the base at a fixed Gaussian, q = T_# N(loc, scale^2): compare with Flow.log_prob.
    transform = maf(LATENT, 2, hidden=(16,)).to(device)
    gaussian = GaussianPosterior(SHAPE, LATENT, hidden=(8,)).to(device)
    posterior = TransformedPosterior(gaussian, transform)
    x = torch.rand(4, *SHAPE, device=device)
    z, log_q = posterior.rsample_and_log_prob(x, 3)
    loc, scale = gaussian.params(x)
    z0, ladj_forward = transform(z)  # forward = T^{-1}, back to the base variable
    base = torch.distributions.Normal(loc, scale).log_prob(z0).sum(-1)
    assert z.shape == (3, 4, LATENT) and log_q.shape == (3, 4)
    assert torch.allclose(log_q, base + ladj_forward, atol=1e-4)


def test_transformed_input_applies_the_sampling_direction(device: torch.device) -> None:
    transform, net = realnvp(LATENT, 2, hidden=(8,)).to(device), nn.Linear(LATENT, 5).to(device)
    z0 = torch.randn(2, 3, LATENT, device=device)
    out = TransformedInput(transform, net)(z0)
    assert out.shape == (2, 3, 5)
    assert torch.allclose(out, net(transform.inverse(z0)[0]))


def test_bad_inputs_raise_clear_errors() -> None:
    gaussian = GaussianPosterior(SHAPE, LATENT, hidden=(8,))
    with pytest.raises(TypeError, match="base must be a posterior"):
        TransformedPosterior(nn.Linear(2, 2), iaf(LATENT, 1))
    with pytest.raises(TypeError, match="Transform"):
        TransformedPosterior(gaussian, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="features"):
        TransformedPosterior(gaussian, iaf(3, 1))
    with pytest.raises(ValueError, match="unconditional"):
        TransformedPosterior(gaussian, iaf(LATENT, 2, context_features=4))
    with pytest.raises(ValueError, match="unconditional"):
        TransformedInput(iaf(LATENT, 1, context_features=4), nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        TransformedInput(iaf(LATENT, 1), lambda z: z)
    with pytest.raises(ValueError, match="z0 must have shape"):
        TransformedInput(iaf(LATENT, 1), nn.Linear(2, 2))(torch.zeros(4, 3))
