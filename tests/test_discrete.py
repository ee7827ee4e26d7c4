"""Tests of gdmlib.discrete: exactness of Gumbel-max, the bias of the Gumbel-softmax relaxation, the
gradient paths of the vector quantiser, the categorical KL, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from gdmlib.discrete import (
    VQVAE,
    CategoricalVAE,
    VectorQuantizer,
    annealed_loss,
    categorical_kl_uniform,
    codebook_perplexity,
    gumbel_max,
    gumbel_softmax,
    sample_gumbel,
)
from gdmlib.nets import ConvDecoder8, ConvEncoder8
from gdmlib.training import fit

PROBS = [0.6, 0.25, 0.1, 0.05]


def seeded(device: torch.device | str = "cpu", seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Gumbel noise and the Gumbel-max trick
# ---------------------------------------------------------------------------------------------


def test_gumbel_noise_has_the_gumbel_law() -> None:
    noise = sample_gumbel((50_000,), dtype=torch.float64, generator=seeded())
    assert stats.kstest(noise.numpy(), "gumbel_r").pvalue > 1e-3
    assert float(noise.mean()) == pytest.approx(
        0.5772156649, abs=4 * math.pi / math.sqrt(6 * 50_000)
    )


def test_gumbel_max_frequencies_match_softmax(device: torch.device) -> None:
    n = 100_000
    probs = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4], dtype=torch.float64)
    logits = (
        (torch.log(probs) + 3.0).float().to(device)
    )  # unnormalised: a constant shift changes nothing
    draws = gumbel_max(logits.expand(n, 5), generator=seeded(device))
    assert draws.shape == (n,) and draws.dtype == torch.long and draws.device.type == device.type
    counts = torch.bincount(draws, minlength=5).cpu().numpy()
    assert stats.chisquare(counts, n * probs.numpy()).pvalue > 1e-3


def test_gumbel_max_never_draws_impossible_categories_and_keeps_batch_shape() -> None:
    logits = torch.tensor([0.0, -math.inf, 1.0]).expand(2, 3, 1000, 3)
    draws = gumbel_max(logits, generator=seeded())
    assert draws.shape == (2, 3, 1000) and not torch.any(draws == 1)
    assert gumbel_max(torch.tensor([2.0])).item() == 0  # K = 1


# ---------------------------------------------------------------------------------------------
# Gumbel-softmax
# ---------------------------------------------------------------------------------------------


def test_relaxed_samples_lie_on_the_simplex(device: torch.device) -> None:
    logits = torch.randn(3, 7, 5, device=device)
    for tau in (0.1, 1.0, 10.0):
        y = gumbel_softmax(logits, tau, generator=seeded(device))
        assert y.shape == logits.shape and y.device.type == device.type and torch.all(y >= 0)
        torch.testing.assert_close(y.sum(-1), torch.ones(3, 7, device=device))


def test_hard_sample_is_one_hot_with_the_soft_gradient(device: torch.device) -> None:
    logits = torch.randn(64, 6, device=device, requires_grad=True)
    weights = torch.randn(64, 6, device=device)
    soft = gumbel_softmax(logits, 0.5, generator=seeded(device))
    hard = gumbel_softmax(logits, 0.5, hard=True, generator=seeded(device))
    assert torch.equal(hard, F.one_hot(soft.argmax(-1), 6).to(hard.dtype))  # exactly one-hot
    assert torch.equal(hard.argmax(-1), gumbel_max(logits, generator=seeded(device)))  # same noise
    (grad_soft,) = torch.autograd.grad((weights * soft).sum(), logits)
    (grad_hard,) = torch.autograd.grad((weights * hard).sum(), logits)
    torch.testing.assert_close(grad_hard, grad_soft, atol=0, rtol=0)
    assert grad_soft.abs().sum() > 0


def test_relaxation_is_biased_and_the_bias_vanishes_as_tau_goes_to_zero() -> None:
    n = 100_000
    pi = torch.tensor(PROBS)
    logits = torch.log(pi).expand(n, 4)

    def deviation(tau: float) -> tuple[float, float]:
        y = gumbel_softmax(logits, tau, generator=seeded())
        gap = (y.mean(0) - pi).abs()
        return float(gap.max()), float((gap / (y.std(0) / math.sqrt(n))).max())

    gaps = {tau: deviation(tau) for tau in (2.0, 1.0, 0.5, 0.01)}
    assert gaps[1.0][1] > 20  # E[y] != pi at tau = 1, by many standard errors
    assert gaps[2.0][0] > gaps[1.0][0] > gaps[0.5][0] > gaps[0.01][0]
    assert gaps[0.01][1] < 4  # indistinguishable from pi at tau = 0.01


def test_bad_temperatures_and_logits_raise() -> None:
    logits = torch.zeros(4)
    for tau in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="tau must be a finite positive number"):
            gumbel_softmax(logits, tau)
    with pytest.raises(TypeError, match="tau must be a number"):
        gumbel_softmax(logits, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau must be a single number"):
        gumbel_softmax(logits, torch.ones(2))  # type: ignore[arg-type]
    assert gumbel_softmax(logits, torch.tensor(0.5)).shape == (4,)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        gumbel_max(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="K >= 1"):
        gumbel_max(torch.tensor(1.0))
    with pytest.raises(ValueError, match="K >= 1"):
        gumbel_softmax(torch.zeros(3, 0), 1.0)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        gumbel_max([0.0, 1.0])  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_generator_on_the_wrong_device_raises() -> None:
    with pytest.raises(ValueError, match="generator is on"):
        gumbel_max(torch.zeros(3, device="cuda"), generator=seeded("cpu"))


# ---------------------------------------------------------------------------------------------
# Vector quantiser
# ---------------------------------------------------------------------------------------------


def brute_force_nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(-1)


def test_quantiser_picks_the_nearest_code_in_both_layouts(device: torch.device) -> None:
    vq = VectorQuantizer(16, 3).to(device)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(16, 3))
    vectors = torch.randn(50, 3, device=device)
    z_q, indices, losses = vq(vectors)
    assert indices.shape == (50,) and torch.equal(
        indices, brute_force_nearest(vectors, vq.codebook)
    )
    assert torch.equal(z_q, vq.codebook[indices]) and z_q.device.type == device.type
    maps = torch.randn(2, 3, 4, 5, device=device)
    z_q, indices, _ = vq(maps)
    assert z_q.shape == maps.shape and indices.shape == (2, 4, 5)
    flat = maps.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(indices.flatten(), brute_force_nearest(flat, vq.codebook))
    assert torch.equal(z_q[1, :, 2, 3], vq.codebook[indices[1, 2, 3]])  # channel dim = D
    assert torch.equal(z_q, vq.embed(indices))


def test_encoder_gets_the_decoder_gradient_unchanged_plus_commitment(device: torch.device) -> None:
    vq = VectorQuantizer(8, 4, beta=0.3).to(device)
    z_e = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    decoder_grad = torch.randn_like(z_e)
    z_q, indices, losses = vq(z_e)
    (grad_decoder_only,) = torch.autograd.grad((decoder_grad * z_q).sum(), z_e, retain_graph=True)
    assert torch.equal(grad_decoder_only, decoder_grad)  # straight through, unchanged
    (grad,) = torch.autograd.grad((decoder_grad * z_q).sum() + losses.total, z_e)
    codes = vq.embed(indices).detach()
    expected = decoder_grad + 0.3 * 2 * (z_e.detach() - codes) / z_e.numel()
    torch.testing.assert_close(grad, expected)


def test_codebook_learns_only_from_the_codebook_loss() -> None:
    vq = VectorQuantizer(8, 2, beta=0.25)
    z_e = torch.randn(40, 2, requires_grad=True)
    z_q, indices, losses = vq(z_e)
    # The decoder's loss and the commitment loss do not reach the codebook at all.
    ((torch.randn_like(z_q) * z_q).sum() + losses.commitment).backward(retain_graph=True)
    assert vq.codebook.grad is None or torch.all(vq.codebook.grad == 0)
    z_e.grad = None
    losses.codebook.backward()
    assert z_e.grad is None or torch.all(z_e.grad == 0)  # ... and the codebook loss not the encoder
    expected = torch.zeros_like(vq.codebook).index_add_(
        0, indices, 2 * (vq.codebook[indices] - z_e) / z_e.numel()
    )
    torch.testing.assert_close(vq.codebook.grad, expected.detach())


def test_beta_scales_the_commitment_term_only() -> None:
    z_e = torch.randn(30, 4)
    outputs = {}
    for beta in (0.0, 0.25, 1.0):
        vq = VectorQuantizer(10, 4, beta=beta)
        with torch.no_grad():
            vq.codebook.copy_(torch.linspace(-1, 1, 40).reshape(10, 4))
        outputs[beta] = vq(z_e)
    squared_error = F.mse_loss(z_e, outputs[1.0][0])
    for beta, (z_q, indices, losses) in outputs.items():
        assert torch.equal(z_q, outputs[1.0][0]) and torch.equal(indices, outputs[1.0][1])
        torch.testing.assert_close(losses.codebook, squared_error)
        torch.testing.assert_close(losses.commitment, beta * squared_error)
        torch.testing.assert_close(losses.total, (1 + beta) * squared_error)


def test_codebook_loss_is_stationary_at_the_cluster_means() -> None:
    # For fixed assignments the codebook loss is k-means' objective: its gradient vanishes exactly
    # when each used code is the mean of the encoder outputs assigned to it.
    vq = VectorQuantizer(4, 2)
    z_e = torch.randn(200, 2) * 3
    _, indices, _ = vq(z_e)
    with torch.no_grad():
        for k in indices.unique():
            vq.codebook[k] = z_e[indices == k].mean(0)
    F.mse_loss(vq.embed(indices), z_e).backward()
    torch.testing.assert_close(vq.codebook.grad, torch.zeros_like(vq.codebook), atol=1e-7, rtol=0)


def test_perplexity_counts_the_codes_in_use() -> None:
    assert float(codebook_perplexity(torch.arange(8).repeat(3), 8)) == pytest.approx(8.0)
    assert float(codebook_perplexity(torch.zeros(10, dtype=torch.long), 8)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"lie in 0\.\.7"):
        codebook_perplexity(torch.tensor([8]), 8)


def test_quantiser_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_codes must be a positive int"):
        VectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        VectorQuantizer(4, 0)
    with pytest.raises(TypeError, match="num_codes must be an int"):
        VectorQuantizer(4.0, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta must be a finite non-negative number"):
        VectorQuantizer(4, 2, beta=-0.1)
    vq = VectorQuantizer(4, 3)
    with pytest.raises(ValueError, match=r"z_e must have shape \(N, 3\) or \(N, 3, H, W\)"):
        vq(torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"z_e must have shape"):
        vq(torch.randn(3))
    with pytest.raises(ValueError, match=r"z_e must have shape"):
        vq(torch.randn(2, 4, 3, 3))  # channels last by mistake
    with pytest.raises(TypeError, match="floating-point"):
        vq(torch.ones(5, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        vq.embed(torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# Categorical KL
# ---------------------------------------------------------------------------------------------


def test_categorical_kl_matches_the_direct_formula(device: torch.device) -> None:
    logits = 3 * torch.randn(5, 7, 10, device=device, dtype=torch.float64)
    q = torch.softmax(logits, -1)
    direct = (q * torch.log(q * 10)).sum(-1)
    kl = categorical_kl_uniform(logits)
    assert kl.shape == (5, 7)
    torch.testing.assert_close(kl, direct)
    entropy = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(kl, math.log(10) - entropy)
    assert float(categorical_kl_uniform(torch.zeros(6))) == pytest.approx(0.0, abs=1e-6)
    assert float(categorical_kl_uniform(torch.tensor([50.0, 0.0, 0.0]))) == pytest.approx(
        math.log(3), abs=1e-6
    )


def test_categorical_kl_handles_impossible_categories_with_finite_gradients() -> None:
    logits = torch.tensor([1.0, -math.inf, 0.0, 2.0], requires_grad=True)
    kl = categorical_kl_uniform(logits)
    finite = torch.tensor([1.0, 0.0, 2.0])
    q = torch.softmax(finite, -1)
    assert float(kl.detach()) == pytest.approx(float((q * q.log()).sum() + math.log(4)), abs=1e-6)
    kl.backward()
    assert torch.all(torch.isfinite(logits.grad)) and logits.grad[1] == 0
    with pytest.raises(TypeError, match="floating-point"):
        categorical_kl_uniform(torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# VQ-VAE
# ---------------------------------------------------------------------------------------------


def binary_batch(n: int = 24, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=seeded("cpu", seed)) < 0.3).float().to(device)


def test_vqvae_shapes_and_loss_formula(device: torch.device) -> None:
    model = VQVAE((1, 8, 8), num_codes=8, code_dim=3, num_latents=4, hidden=(16,), beta=0.4).to(
        device
    )
    x = binary_batch(device=device)
    z_q, indices, losses = model.quantize(x)
    assert z_q.shape == (24, 12) and indices.shape == (24, 4) and z_q.device.type == device.type
    assert torch.equal(model.codes(x), indices)
    torch.testing.assert_close(z_q, model.embed(indices))  # forward value = the codes
    # Per data point: -log p(x | z_q) + sum over the M * D coordinates of (1 + beta) * squared
    # error.
    squared = (model.encode(x) - model.quantizer.embed(indices)).square().sum((1, 2))
    expected = -model.decoder.log_prob(x, z_q).mean() + 1.4 * squared.mean()
    torch.testing.assert_close(model.loss(x), expected)
    assert model.reconstruct(x).shape == x.shape and model.sample(5).shape == (5, 1, 8, 8)


def test_vqvae_gradients_reach_the_right_parameters() -> None:
    model = VQVAE((1, 8, 8), num_codes=8, code_dim=2, num_latents=3, hidden=(16,))
    x = binary_batch()
    encoder_weight = model.encoder[1].net[0].weight
    z_q, _, losses = model.quantize(x)
    reconstruction = -model.decoder.log_prob(x, z_q).mean()
    grad_encoder, grad_codebook = torch.autograd.grad(
        reconstruction,
        [encoder_weight, model.quantizer.codebook],
        allow_unused=True,
        retain_graph=True,
    )
    assert (
        grad_encoder is not None and grad_encoder.abs().sum() > 0
    )  # straight through to the encoder
    assert grad_codebook is None or torch.all(grad_codebook == 0)  # ... and never to the codebook
    # The whole loss moves the codebook exactly as the (scaled) codebook loss alone does.
    (full,) = torch.autograd.grad(model.loss(x), model.quantizer.codebook)
    _, _, losses = model.quantize(x)
    (codebook_only,) = torch.autograd.grad(
        model.latent_dim * losses.codebook, model.quantizer.codebook
    )
    torch.testing.assert_close(full, codebook_only)
    assert full.abs().sum() > 0


def test_vqvae_elbo_with_uniform_and_fitted_priors() -> None:
    model = VQVAE((1, 8, 8), num_codes=5, code_dim=2, num_latents=3, hidden=(16,))
    with torch.no_grad():
        model.quantizer.codebook.copy_(torch.randn(5, 2))  # spread codes: several in use
    x = binary_batch(200)
    with torch.no_grad():
        terms = model.elbo(x, reduction="none")
        torch.testing.assert_close(terms.kl, torch.full((200,), 3 * math.log(5)))
        torch.testing.assert_close(terms.value, terms.reconstruction - 3 * math.log(5))
        log_prior = model.code_log_prior(x, pseudocount=1e-12)
        fitted = model.elbo(x, log_prior=log_prior)
        codes = model.codes(x)
    # Average KL to the code frequencies = sum over positions of their entropies (log perplexities).
    entropies = sum(math.log(float(codebook_perplexity(codes[:, m], 5))) for m in range(3))
    assert float(fitted.kl) == pytest.approx(entropies, abs=1e-5)
    manual = -sum(log_prior[m, codes[:, m]] for m in range(3)).mean()
    assert float(fitted.kl) == pytest.approx(float(manual), abs=1e-6)
    assert float(fitted.value) >= float(terms.value.mean()) - 1e-5
    with pytest.raises(ValueError, match="log_prior must be a tensor of shape"):
        model.elbo(x, log_prior=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="normalised"):
        model.elbo(x, log_prior=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="pseudocount"):
        model.code_log_prior(x, pseudocount=0)


def test_vqvae_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="num_codes must be a positive int"):
        VQVAE((1, 8, 8), 0, 2)
    with pytest.raises(TypeError, match="input_shape"):
        VQVAE("1x8x8", 4, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="likelihood must be"):
        VQVAE((1, 8, 8), 4, 2, likelihood="poisson")
    model = VQVAE((1, 8, 8), 4, 2, num_latents=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\)"):
        model.loss(torch.zeros(3, 64))
    with pytest.raises(ValueError, match="reduction"):
        model.elbo(torch.zeros(3, 1, 8, 8), reduction="sum")
    with pytest.raises(ValueError, match=r"indices must have shape \(\.\.\., 2\)"):
        model.embed(torch.zeros(3, 5, dtype=torch.long))
    wrong_encoder = VQVAE(
        (1, 8, 8), 4, 2, num_latents=2, encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    )
    with pytest.raises(ValueError, match=r"the encoder must map a batch of 3 to \(3, 4\)"):
        wrong_encoder.loss(torch.zeros(3, 1, 8, 8))


def test_vqvae_with_the_convolutional_nets() -> None:
    model = VQVAE(
        (1, 8, 8),
        8,
        4,
        num_latents=2,
        encoder=ConvEncoder8(8, channels=4),
        decoder_net=nn.Sequential(ConvDecoder8(8, channels=4), nn.Flatten()),
    )
    x = binary_batch(6)
    model.loss(x).backward()
    assert model.codes(x).shape == (6, 2) and model.quantizer.codebook.grad is not None


# ---------------------------------------------------------------------------------------------
# Categorical VAE
# ---------------------------------------------------------------------------------------------


def test_categorical_vae_kl_is_summed_over_latents_and_averaged_over_the_batch(
    device: torch.device,
) -> None:
    model = CategoricalVAE((1, 8, 8), num_latents=5, num_classes=4, hidden=(16,)).to(device)
    x = binary_batch(device=device)
    logits = model.logits(x)
    assert logits.shape == (24, 5, 4) and logits.device.type == device.type
    per_point = (torch.softmax(logits, -1) * (torch.log_softmax(logits, -1) + math.log(4))).sum(
        (-1, -2)
    )
    torch.testing.assert_close(model.kl(x), per_point)
    terms = model.relaxed_elbo(x, generator=seeded(device, 3))
    torch.testing.assert_close(terms.kl, per_point.mean())
    y = gumbel_softmax(logits, model.tau, generator=seeded(device, 3))
    reconstruction = model.decoder.log_prob(x, y.flatten(1))
    torch.testing.assert_close(terms.reconstruction, reconstruction.mean())
    torch.testing.assert_close(terms.value, (reconstruction - per_point).mean())
    beta_terms = model.relaxed_elbo(x, beta=0.5, reduction="none", generator=seeded(device, 3))
    torch.testing.assert_close(beta_terms.value, reconstruction - 0.5 * per_point)
    hard = model.elbo(x, num_samples=3, reduction="none", generator=seeded(device, 4))
    assert hard.value.shape == (24,) and torch.all(hard.kl <= 5 * math.log(4) + 1e-5)


def exact_log_likelihood_and_elbo(
    model: CategoricalVAE, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """By enumerating the K^M latent values."""
    m, k = model.num_latents, model.num_classes
    grids = torch.cartesian_prod(*[torch.arange(k)] * m).reshape(-1, m)  # (K^M, M)
    one_hot = F.one_hot(grids, k).float().flatten(1)  # (K^M, M K)
    log_lik = model.decoder.log_prob(x, one_hot[:, None, :].expand(-1, x.shape[0], -1))  # (K^M, B)
    log_q_table = torch.log_softmax(model.logits(x), -1)  # (B, M, K)
    log_q = log_q_table[:, torch.arange(m)[None, :], grids].sum(-1).T  # (K^M, B)
    log_px = torch.logsumexp(log_lik, 0) - m * math.log(k)
    elbo = (log_q.exp() * log_lik).sum(0) - model.kl(x)
    return log_px, elbo


def test_hard_elbo_and_iwae_against_enumeration() -> None:
    model = CategoricalVAE((1, 8, 8), num_latents=2, num_classes=3, hidden=(16,))
    x = binary_batch(8)
    with torch.no_grad():
        log_px, exact_elbo = exact_log_likelihood_and_elbo(model, x)
        draws = 4000
        estimate = model.elbo(x, num_samples=draws, reduction="none", generator=seeded())
        per_draw = torch.stack(
            [model.elbo(x, reduction="none", generator=seeded("cpu", s)).value for s in range(50)]
        )
        stderr = per_draw.std(0) / math.sqrt(draws)
        assert torch.all((estimate.value - exact_elbo).abs() <= 4 * stderr + 1e-4)
        iwae = model.iwae_bound(x, 3000, chunk_size=1000, generator=seeded())
    assert torch.all(exact_elbo <= log_px + 1e-5)
    # A lower bound in expectation only; with K^M = 9 latent values, 3000 draws are nearly exact.
    torch.testing.assert_close(iwae, log_px, atol=0.05, rtol=0)


def test_hard_training_samples_are_one_hot_for_the_decoder() -> None:
    model = CategoricalVAE((1, 8, 8), 3, 4, hidden=(8,), hard=True)
    seen = []
    model.decoder.net.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].detach())
    )
    model.loss(binary_batch(5)).backward()
    z = seen[0].reshape(5, 3, 4)
    assert torch.equal(z.sum(-1), torch.ones(5, 3)) and set(z.unique().tolist()) == {0.0, 1.0}
    assert (
        model.encoder[1].net[0].weight.grad.abs().sum() > 0
    )  # straight-through reaches the encoder


def test_annealed_training_lowers_the_loss_and_the_temperature() -> None:
    torch.manual_seed(0)
    model = CategoricalVAE((1, 8, 8), 4, 4, hidden=(32,))
    x = binary_batch(128)
    history = fit(
        model,
        x,
        steps=40,
        batch_size=64,
        lr=5e-3,
        log_every=20,
        loss=annealed_loss(model, start=1.0, end=0.5, steps=40),
        generator=seeded(),
    )
    assert model.tau == pytest.approx(0.5)
    assert history.losses[-1] < history.losses[0]


def test_annealed_training_resumes_bitwise_with_its_temperature(tmp_path) -> None:
    # The schedule's count of calls lives outside the model: fit checkpoints it with the loss, so
    # that a run resumed half-way anneals like an uninterrupted one, and a finished run restores
    # the final temperature. (Without it, a resumed run restarted the schedule at tau = 1.)
    x = binary_batch(128)

    def run(steps: int, path=None) -> tuple[CategoricalVAE, list[float]]:
        torch.manual_seed(0)
        model = CategoricalVAE((1, 8, 8), 4, 4, hidden=(16,))
        history = fit(
            model,
            x,
            steps=steps,
            batch_size=32,
            lr=5e-3,
            log_every=5,
            loss=annealed_loss(model, start=1.0, end=0.25, steps=20),
            generator=seeded(),
            checkpoint_path=path,
            checkpoint_every=5,
        )
        return model, history.losses

    whole, whole_losses = run(20)
    run(10, tmp_path / "run.pt")  # interrupted half-way
    resumed, resumed_losses = run(20, tmp_path / "run.pt")
    assert resumed_losses == whole_losses and resumed.tau == whole.tau == pytest.approx(0.25)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))
    finished, _ = run(20, tmp_path / "run.pt")  # nothing left to train: the state is restored
    assert finished.tau == pytest.approx(0.25)
    assert all(torch.equal(a, b) for a, b in zip(finished.parameters(), whole.parameters()))


def test_categorical_vae_bad_inputs_raise() -> None:
    for tau in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="tau must be a finite positive number"):
            CategoricalVAE((1, 8, 8), 2, 3, tau=tau)
    model = CategoricalVAE((1, 8, 8), 2, 3, hidden=(8,))
    with pytest.raises(ValueError, match="tau must be a finite positive number"):
        model.tau = 0.0
    x = binary_batch(4)
    with pytest.raises(ValueError, match="tau must be a finite positive number"):
        model.loss(x, tau=-0.5)
    with pytest.raises(ValueError, match="beta must be a finite non-negative number"):
        model.loss(x, beta=-1.0)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        CategoricalVAE((1, 8, 8), 2, 1)
    with pytest.raises(TypeError, match="hard must be a bool"):
        CategoricalVAE((1, 8, 8), 2, 3, hard=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\)"):
        model.elbo(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        model.elbo(x, num_samples=0)
    with pytest.raises(TypeError, match="must be a CategoricalVAE"):
        annealed_loss(VQVAE((1, 8, 8), 4, 2), start=1.0, end=0.5, steps=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau must be a finite positive number"):
        annealed_loss(model, start=1.0, end=0.0, steps=10)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: categorical_kl_uniform(torch.tensor([0.0, float("inf")])),
            ValueError,
            r"NaN or \+inf",
        ),
        (
            lambda: categorical_kl_uniform(torch.tensor([0.0, float("nan")])),
            ValueError,
            r"NaN or \+inf",
        ),
        (lambda: VectorQuantizer(4, 2).embed(torch.tensor([0, 4])), ValueError, r"0\.\.3 .* got 4"),
        (lambda: VectorQuantizer(4, 2).embed(torch.tensor([-1])), ValueError, "got -1"),
        (
            lambda: VectorQuantizer(4, 2).embed(torch.tensor([0], device="meta")),
            ValueError,
            "indices are on meta but the codebook on cpu",
        ),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_error(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
