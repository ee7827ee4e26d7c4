"""Tests of gdmlib.gan: closed-form oracles, loss signs, the gradient penalty and the training
loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from gdmlib import gan, nets
from gdmlib.nets import MLP

# --------------------------------------------------------------------------------------------------
# optimal discriminator


def test_optimal_discriminator_matches_closed_form_far_in_the_tails() -> None:
    # pi = N(0, 1), p = N(1, 1): log pi(x) - log p(x) = -x^2/2 + (x - 1)^2/2 = 1/2 - x.
    d_star = gan.optimal_discriminator(Normal(0.0, 1.0), Normal(1.0, 1.0))
    x = torch.linspace(-60.0, 60.0, 241, dtype=torch.float64)
    values = d_star(x)
    assert torch.isfinite(values).all()
    # The log-ratio is computed as a difference of numbers of size x^2/2 <= 1800, so its absolute
    # error is about 1800 * eps; sigmoid turns that into the same relative error.
    torch.testing.assert_close(values, torch.sigmoid(0.5 - x), rtol=1e-11, atol=0.0)
    at_60 = d_star(torch.tensor(60.0, dtype=torch.float64))
    assert 0.0 < at_60.item() and at_60.item() == pytest.approx(np.exp(-59.5), rel=1e-11)
    assert d_star(torch.tensor(-60.0, dtype=torch.float64)).item() == 1.0  # 1 - e^-60.5 rounds to 1
    # The naive ratio pi / (pi + p) is 0 / 0 there.
    pi_60, p_60 = (
        Normal(0.0, 1.0).log_prob(at_60.new_tensor(60.0)).exp(),
        Normal(1.0, 1.0).log_prob(at_60.new_tensor(60.0)).exp(),
    )
    assert torch.isnan(pi_60 / (pi_60 + p_60))


def test_optimal_discriminator_is_one_half_when_model_equals_data(device: torch.device) -> None:
    mean = torch.zeros(2, device=device)
    dist = MultivariateNormal(mean, torch.eye(2, device=device))
    values = gan.optimal_discriminator(dist, dist)(torch.randn(10, 2, device=device))
    assert values.shape == (10,)
    torch.testing.assert_close(values, torch.full_like(values, 0.5))


def test_optimal_discriminator_rejects_objects_without_log_prob() -> None:
    with pytest.raises(TypeError, match="p must have a log_prob"):
        gan.optimal_discriminator(Normal(0.0, 1.0), object())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# losses: values, stability, signs


def test_losses_match_direct_formulas(device: torch.device) -> None:
    real = torch.linspace(-5, 5, 7, dtype=torch.float64, device=device)
    fake = torch.linspace(-4, 3, 5, dtype=torch.float64, device=device)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    torch.testing.assert_close(
        gan.discriminator_loss(real, fake), -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
    )
    torch.testing.assert_close(gan.generator_loss(fake, "minimax"), torch.log(1 - d_fake).mean())
    torch.testing.assert_close(
        gan.generator_loss(fake, "non_saturating"), -torch.log(d_fake).mean()
    )
    torch.testing.assert_close(gan.generator_loss(fake), -torch.log(d_fake).mean())
    torch.testing.assert_close(gan.critic_loss_wasserstein(real, fake), fake.mean() - real.mean())
    torch.testing.assert_close(gan.generator_loss_wasserstein(fake), -fake.mean())


def test_losses_are_finite_at_extreme_logits(device: torch.device) -> None:
    big = torch.tensor([100.0, -100.0], device=device, requires_grad=True)
    losses = {
        "d": gan.discriminator_loss(big, big),
        "minimax": gan.generator_loss(big, "minimax"),
        "non_saturating": gan.generator_loss(big, "non_saturating"),
    }
    for name, loss in losses.items():
        assert torch.isfinite(loss), name
        (grad,) = torch.autograd.grad(loss, big)
        assert torch.isfinite(grad).all(), name
    # A perfect discriminator has loss ~0, a perfectly wrong one pays 100 per term.
    confident = torch.tensor([100.0], device=device)
    assert gan.discriminator_loss(confident, -confident).item() == pytest.approx(0.0, abs=1e-30)
    assert gan.discriminator_loss(-confident, confident).item() == pytest.approx(200.0)
    assert gan.generator_loss(-confident).item() == pytest.approx(100.0)


def test_discriminator_loss_decreases_when_the_discriminator_improves() -> None:
    real, fake = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    base = gan.discriminator_loss(real, fake)
    assert gan.discriminator_loss(real + 1, fake) < base  # more confident on data
    assert gan.discriminator_loss(real, fake - 1) < base  # more confident on samples
    real.requires_grad_(True), fake.requires_grad_(True)
    grad_real, grad_fake = torch.autograd.grad(gan.discriminator_loss(real, fake), (real, fake))
    assert (grad_real < 0).all() and (grad_fake > 0).all()


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_generator_losses_decrease_when_the_generator_fools_more(kind: str) -> None:
    fake = torch.randn(16, dtype=torch.float64)
    assert gan.generator_loss(fake + 1, kind) < gan.generator_loss(fake, kind)  # type: ignore[arg-type]
    fake.requires_grad_(True)
    (grad,) = torch.autograd.grad(gan.generator_loss(fake, kind), fake)  # type: ignore[arg-type]
    assert (grad < 0).all()


def test_wasserstein_losses_have_the_right_signs() -> None:
    real, fake = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    base = gan.critic_loss_wasserstein(real, fake)
    assert gan.critic_loss_wasserstein(real + 0.5, fake - 0.5) < base  # a larger real/fake gap
    assert gan.critic_loss_wasserstein(real + 0.5, fake - 0.5).item() == pytest.approx(
        base.item() - 1.0
    )
    assert gan.generator_loss_wasserstein(fake + 1) < gan.generator_loss_wasserstein(fake)


def test_minimax_gradient_vanishes_when_the_discriminator_wins_but_non_saturating_does_not() -> (
    None
):
    batch = 8
    for depth in (5.0, 10.0, 20.0, 40.0):
        fake = torch.full((batch,), -depth, dtype=torch.float64, requires_grad=True)
        (minimax,) = torch.autograd.grad(gan.generator_loss(fake, "minimax"), fake)
        (non_saturating,) = torch.autograd.grad(gan.generator_loss(fake, "non_saturating"), fake)
        # d/dl [-softplus(l)] = -sigmoid(l) ~ -e^l, d/dl [softplus(-l)] = -sigmoid(-l) ~ -1 (per
        # 1/N).
        torch.testing.assert_close(
            minimax, torch.full_like(fake, -torch.sigmoid(torch.tensor(-depth)).item() / batch)
        )
        torch.testing.assert_close(
            non_saturating,
            torch.full_like(fake, -torch.sigmoid(torch.tensor(depth)).item() / batch),
        )
        assert minimax.abs().max() < 1e-2 / batch and non_saturating.abs().min() > 0.99 / batch


def test_loss_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="kind must be 'non_saturating' or 'minimax'"):
        gan.generator_loss(torch.zeros(2), "wasserstein")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        gan.discriminator_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match="real_scores is empty"):
        gan.critic_loss_wasserstein(torch.zeros(0), torch.zeros(2))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        gan.generator_loss_wasserstein([1.0, 2.0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# gradient penalty


class _ImageCritic(nn.Module):
    """A nonlinear critic on (N, C, H, W) batches that scores each sample independently."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.net = MLP(int(np.prod(shape)), 1, hidden=(16,), activation="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(start_dim=1)).squeeze(-1) + (x**3).sum(dim=(1, 2, 3))


def test_gradient_penalty_of_a_linear_critic_is_closed_form(device: torch.device) -> None:
    critic = nn.Linear(5, 1).to(device=device, dtype=torch.float64)
    real, fake = (
        torch.randn(7, 5, dtype=torch.float64, device=device),
        torch.randn(7, 5, dtype=torch.float64, device=device),
    )
    expected = (critic.weight.norm() - 1) ** 2  # the gradient is w everywhere
    torch.testing.assert_close(gan.gradient_penalty(critic, real, fake), expected)


def test_gradient_penalty_on_images_matches_a_per_sample_reference(device: torch.device) -> None:
    shape = (2, 3, 3)
    critic = _ImageCritic(shape).to(device=device, dtype=torch.float64)
    real = torch.randn(6, *shape, dtype=torch.float64, device=device)
    fake = torch.randn(6, *shape, dtype=torch.float64, device=device)
    penalty = gan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    weights = torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(
        device
    )
    reference = []
    for i in range(6):  # one sample at a time, norm over all of its C*H*W coordinates
        point = (weights[i] * real[i : i + 1] + (1 - weights[i]) * fake[i : i + 1]).requires_grad_(
            True
        )
        (gradient,) = torch.autograd.grad(critic(point).sum(), point)
        reference.append((gradient.reshape(-1).norm() - 1) ** 2)
    torch.testing.assert_close(penalty, torch.stack(reference).mean())
    torch.testing.assert_close(gan.gradient_penalty(critic, real, fake, weights=weights), penalty)
    torch.testing.assert_close(
        gan.gradient_penalty(critic, real, fake, weights=weights.reshape(6, 1, 1, 1)), penalty
    )


def test_gradient_penalty_uses_one_weight_per_sample(device: torch.device) -> None:
    seen: list[torch.Tensor] = []
    critic = _ImageCritic((1, 4, 4)).to(device)

    def recording_critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return critic(x)

    real, fake = torch.randn(5, 1, 4, 4, device=device), torch.randn(5, 1, 4, 4, device=device)
    gan.gradient_penalty(recording_critic, real, fake)
    ratio = (seen[0] - fake) / (real - fake)  # the weight of each coordinate
    per_sample = ratio.flatten(start_dim=1)
    torch.testing.assert_close(
        per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-4, rtol=1e-4
    )
    assert per_sample[:, 0].std() > 0.01  # but the samples get different weights
    assert ((per_sample >= 0) & (per_sample <= 1)).all()


def test_gradient_penalty_backpropagates_into_the_critic(device: torch.device) -> None:
    critic = MLP(3, 1, hidden=(8,), activation="tanh").to(device)
    penalty = gan.gradient_penalty(
        critic, torch.randn(4, 3, device=device), torch.randn(4, 3, device=device)
    )
    penalty.backward()  # needs create_graph=True
    # The input gradient does not depend on the output bias; every weight matrix gets a gradient.
    grads = [p.grad for name, p in critic.named_parameters() if name.endswith("weight")]
    assert len(grads) == 2 and all(
        g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads
    )


def test_gradient_penalty_checks_its_inputs() -> None:
    critic = nn.Linear(3, 1)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(critic, x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="one weight per sample"):
        gan.gradient_penalty(critic, x, x, weights=torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        gan.gradient_penalty(critic, x, x, weights=torch.full((4,), 1.5))
    with pytest.raises(ValueError, match="one score per sample"):
        gan.gradient_penalty(nn.Linear(3, 2), x, x)
    with pytest.raises(TypeError, match="floating-point"):
        gan.gradient_penalty(critic, x.long(), x)


# --------------------------------------------------------------------------------------------------
# weight clipping


def test_clip_weights_clamps_every_parameter() -> None:
    net = MLP(2, 1, hidden=(8,))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(100)
    assert gan.clip_weights(net, 0.05) is net
    assert all(p.abs().max() <= 0.05 for p in net.parameters())
    with pytest.raises(ValueError, match="positive finite"):
        gan.clip_weights(net, 0.0)


# --------------------------------------------------------------------------------------------------
# training loop


def _toy_gan(
    seed: int = 0, hidden: tuple[int, ...] = (8,)
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    generator, critic = nn.Linear(1, 1), MLP(1, 1, hidden=hidden)
    return (
        generator,
        critic,
        torch.optim.Adam(generator.parameters(), lr=1e-2),
        torch.optim.Adam(critic.parameters(), lr=1e-2),
    )


def _real() -> torch.Tensor:
    return 3.0 + 0.5 * torch.randn(32, 1)


def _noise() -> torch.Tensor:
    return torch.randn(32, 1)


class _CountingCritic(nn.Module):
    """A critic that counts its forward passes and records the devices of its inputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls, self.devices = inner, 0, set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.devices.add(x.device.type)
        return self.inner(x)


def test_tiny_gan_does_the_expected_work_and_moves_the_generator_towards_the_data(
    device: torch.device,
) -> None:
    # Deterministic instead of a wall-clock bound: the loop must make exactly three critic passes
    # per step (real, fake, generator's fake) and draw exactly one real and two noise batches.
    torch.manual_seed(0)
    generator = nn.Linear(1, 1).to(device)
    critic = _CountingCritic(MLP(1, 1, hidden=(16,))).to(device)
    with torch.no_grad():
        generator.bias.zero_()
    draws = {"real": 0, "noise": 0}

    def sample_real() -> torch.Tensor:
        draws["real"] += 1
        return 3.0 + 0.5 * torch.randn(64, 1, device=device)

    def sample_noise() -> torch.Tensor:
        draws["noise"] += 1
        return torch.randn(64, 1, device=device)

    history = gan.train_adversarial(
        generator,
        critic,
        sample_real=sample_real,
        sample_noise=sample_noise,
        steps=150,
        g_opt=torch.optim.Adam(generator.parameters(), lr=3e-2),
        d_opt=torch.optim.Adam(critic.parameters(), lr=3e-2),
        progress=False,
    )
    assert critic.calls == 3 * 150 and draws == {"real": 150, "noise": 300}
    assert len(history) == 150 and history.step[-1] == 149
    assert all(np.isfinite(history.critic_loss)) and all(np.isfinite(history.generator_loss))
    assert (
        abs(generator.bias.item() - 3.0) < 1.5
    )  # started 3 away; GAN training oscillates around it


def test_clipping_happens_after_each_critic_step() -> None:
    generator, critic, g_opt, _ = _toy_gan()
    d_opt = torch.optim.SGD(critic.parameters(), lr=1.0)  # steps far larger than the bound
    bound, after_step = 0.05, []
    step = d_opt.step

    def recording_step(*args, **kwargs):  # what the optimiser did, before any clipping
        result = step(*args, **kwargs)
        after_step.append(max(p.detach().abs().max().item() for p in critic.parameters()))
        return result

    d_opt.step = recording_step  # type: ignore[method-assign]
    gan.train_adversarial(
        generator,
        critic,
        _real,
        _noise,
        steps=5,
        critic_steps=2,
        g_opt=g_opt,
        d_opt=d_opt,
        d_loss_fn=gan.critic_loss_wasserstein,
        g_loss_fn=gan.generator_loss_wasserstein,
        clip=bound,
        progress=False,
    )
    assert len(after_step) == 10
    assert min(after_step) > bound  # the optimiser pushed parameters out every time...
    assert all((p.abs() <= bound).all() for p in critic.parameters())  # ...and clipping came after


def test_non_finite_critic_loss_names_the_step() -> None:
    generator, critic, g_opt, d_opt = _toy_gan()
    calls = {"n": 0}

    def real_with_a_nan() -> torch.Tensor:
        calls["n"] += 1
        batch = _real()
        return batch * float("nan") if calls["n"] == 7 else batch  # the 7th critic update: step 3

    with pytest.raises(
        gan.NonFiniteLossError, match=r"critic loss is nan at step 3 \(critic update 1 of 2\)"
    ) as info:
        gan.train_adversarial(
            generator,
            critic,
            real_with_a_nan,
            _noise,
            steps=10,
            critic_steps=2,
            g_opt=g_opt,
            d_opt=d_opt,
            progress=False,
        )
    assert isinstance(info.value, FloatingPointError)
    assert (info.value.step, info.value.loss) == (3, "critic")
    assert all(
        torch.isfinite(p).all() for p in critic.parameters()
    )  # raised before the backward pass


def test_non_finite_generator_loss_names_the_step() -> None:
    generator, critic, g_opt, d_opt = _toy_gan()
    calls = {"n": 0}

    def exploding(fake_logits: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = gan.generator_loss(fake_logits)
        return loss + float("inf") if calls["n"] == 3 else loss

    with pytest.raises(gan.NonFiniteLossError, match="generator loss is inf at step 2"):
        gan.train_adversarial(
            generator,
            critic,
            _real,
            _noise,
            steps=10,
            g_opt=g_opt,
            d_opt=d_opt,
            g_loss_fn=exploding,
            progress=False,
        )


def test_penalty_extra_loss_and_history_every_are_recorded() -> None:
    generator, critic, g_opt, d_opt = _toy_gan()
    history = gan.train_adversarial(
        generator,
        critic,
        _real,
        _noise,
        steps=10,
        critic_steps=3,
        g_opt=g_opt,
        d_opt=d_opt,
        d_loss_fn=gan.critic_loss_wasserstein,
        g_loss_fn=gan.generator_loss_wasserstein,
        penalty=gan.gradient_penalty,
        generator_extra_loss=lambda z, fake: fake.square().mean(),
        history_every=3,
        progress=False,
    )
    assert history.step == [0, 3, 6, 9]
    assert (
        len(history.critic_loss)
        == len(history.generator_loss)
        == len(history.penalty)
        == len(history.generator_extra)
        == 4
    )
    assert all(value >= 0 for value in history.penalty + history.generator_extra)


def test_frozen_critic_parameters_stay_frozen() -> None:
    generator, critic, g_opt, d_opt = _toy_gan()
    frozen = critic.net[0].bias
    frozen.requires_grad_(False)
    gan.train_adversarial(
        generator, critic, _real, _noise, steps=3, g_opt=g_opt, d_opt=d_opt, progress=False
    )
    assert [p.requires_grad for p in critic.parameters()] == [
        p is not frozen for p in critic.parameters()
    ]


class _Interrupted(RuntimeError):
    pass


def _resumable_run(
    checkpoint: Path | None, *, seed: int, interrupt_at: int | None = None
) -> tuple[nn.Module, nn.Module, gan.AdversarialHistory]:
    # WGAN-GP with two critic updates per step, and a NumPy-driven sampler, so that every piece of
    # state a resume must restore (both optimisers, torch and NumPy RNGs, the history) matters.
    generator, critic, g_opt, d_opt = _toy_gan(seed, hidden=(8, 8))

    def real() -> torch.Tensor:
        return torch.from_numpy(np.random.normal(3.0, 0.5, size=(32, 1))).float()

    def interrupt(step: int, history: gan.AdversarialHistory) -> None:
        if step == interrupt_at:
            raise _Interrupted(f"stopped at step {step}")

    history = gan.train_adversarial(
        generator,
        critic,
        real,
        _noise,
        steps=10,
        critic_steps=2,
        g_opt=g_opt,
        d_opt=d_opt,
        d_loss_fn=gan.critic_loss_wasserstein,
        g_loss_fn=gan.generator_loss_wasserstein,
        penalty=gan.gradient_penalty,
        checkpoint_path=checkpoint,
        checkpoint_every=4,
        callback=interrupt,
        progress=False,
    )
    return generator, critic, history


def test_resumed_run_equals_uninterrupted_run_bitwise(tmp_path: Path) -> None:
    np.random.seed(0)
    torch.manual_seed(0)
    generator, critic, history = _resumable_run(None, seed=0)

    np.random.seed(0)
    torch.manual_seed(0)
    path = tmp_path / "gan.pt"
    with pytest.raises(_Interrupted):
        _resumable_run(path, seed=0, interrupt_at=6)  # the last checkpoint is after step 4
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 4 and len(saved["history"]["step"]) == 4
    assert not path.with_name(path.name + ".tmp").exists()

    np.random.seed(123)  # a different process state: everything must come from the checkpoint
    torch.manual_seed(123)
    generator_resumed, critic_resumed, history_resumed = _resumable_run(path, seed=99)

    assert history_resumed == history
    for ours, theirs in zip(
        list(generator.parameters()) + list(critic.parameters()),
        list(generator_resumed.parameters()) + list(critic_resumed.parameters()),
        strict=True,
    ):
        assert torch.equal(ours, theirs)
    assert torch.load(path, weights_only=True)["step"] == 10


def test_finished_checkpoint_returns_at_once_and_mismatches_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gan.pt"
    generator, critic, g_opt, d_opt = _toy_gan()
    first = gan.train_adversarial(
        generator,
        critic,
        _real,
        _noise,
        steps=4,
        g_opt=g_opt,
        d_opt=d_opt,
        checkpoint_path=path,
        progress=False,
    )
    bias = generator.bias.detach().clone()
    generator, critic, g_opt, d_opt = _toy_gan(seed=1)
    again = gan.train_adversarial(
        generator,
        critic,
        _real,
        _noise,
        steps=4,
        g_opt=g_opt,
        d_opt=d_opt,
        checkpoint_path=path,
        progress=False,
    )
    assert again == first and torch.equal(generator.bias.detach(), bias)
    with pytest.raises(ValueError, match="critic_steps=1, not 5"):
        gan.train_adversarial(
            generator,
            critic,
            _real,
            _noise,
            steps=4,
            critic_steps=5,
            g_opt=g_opt,
            d_opt=d_opt,
            checkpoint_path=path,
            progress=False,
        )


def test_training_moves_models_and_batches_to_the_device(device: torch.device) -> None:
    def run(move: bool) -> tuple[list[torch.Tensor], gan.AdversarialHistory, set[str]]:
        torch.manual_seed(0)
        generator, inner, _, _ = _toy_gan()  # built on the CPU, samplers on the CPU
        critic = _CountingCritic(inner)
        g_opt = torch.optim.Adam(generator.parameters(), lr=1e-2)
        d_opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
        torch.manual_seed(1)
        history = gan.train_adversarial(
            generator,
            critic,
            _real,
            _noise,
            steps=3,
            g_opt=g_opt,
            d_opt=d_opt,
            device=device if move else None,
            progress=False,
        )
        parameters = list(generator.parameters()) + list(critic.parameters())
        assert all(p.device.type == (device.type if move else "cpu") for p in parameters)
        return [p.detach().cpu() for p in parameters], history, critic.devices

    reference, reference_history, _ = run(move=False)
    moved, history, devices = run(move=True)
    assert devices == {device.type}  # every CPU batch was moved before reaching the critic
    torch.manual_seed(0)
    initial = [p.detach() for p in _toy_gan()[0].parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(moved, initial))  # the optimisers did update
    for ours, theirs in zip(moved, reference, strict=True):  # the same training as on the CPU
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.allclose(history.critic_loss, reference_history.critic_loss, rtol=1e-4, atol=1e-5)


def test_training_arguments_are_checked() -> None:
    generator, critic, g_opt, d_opt = _toy_gan()

    def run(**kwargs: object) -> gan.AdversarialHistory:
        arguments = {"steps": 1, "g_opt": g_opt, "d_opt": d_opt, "progress": False, **kwargs}
        return gan.train_adversarial(generator, critic, _real, _noise, **arguments)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        run(steps=-1)
    with pytest.raises(ValueError, match="critic_steps must be a positive int"):
        run(critic_steps=0)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        run(clip=0.0)
    with pytest.raises(TypeError, match="d_opt must be a torch.optim.Optimizer"):
        run(d_opt=None)
    with pytest.raises(TypeError, match="sample_real must return a torch.Tensor"):
        gan.train_adversarial(
            generator,
            critic,
            lambda: [1.0],
            _noise,
            steps=1,
            g_opt=g_opt,
            d_opt=d_opt,
            progress=False,
        )


# --------------------------------------------------------------------------------------------------
# generator gradients against a fixed discriminator (saturation)


def test_generator_gradient_norm_matches_closed_form(device: torch.device) -> None:
    # G(z) = a z + b and a frozen linear critic l(x) = w x + c: dl/da = w z, dl/db = w.
    generator = nn.Linear(1, 1).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        generator.weight.fill_(0.7)
        generator.bias.fill_(-0.3)
    w, c = 1.5, -0.4
    z = torch.linspace(-2, 2, 9, dtype=torch.float64, device=device).unsqueeze(1)
    logits = w * (0.7 * z.squeeze(1) - 0.3) + c
    for kind, factor in (
        ("non_saturating", -torch.sigmoid(-logits)),
        ("minimax", -torch.sigmoid(logits)),
    ):
        grad_a = (factor * w * z.squeeze(1)).mean()
        grad_b = (factor * w).mean()
        expected = torch.sqrt(grad_a**2 + grad_b**2).item()
        norm = gan.generator_gradient_norm(generator, lambda x: w * x.squeeze(-1) + c, z, kind)  # type: ignore[arg-type]
        assert norm == pytest.approx(expected, rel=1e-12)
    assert generator.weight.grad is None and generator.bias.grad is None  # .grad left untouched


def test_generator_gradient_norm_checks_its_inputs() -> None:
    generator = nn.Linear(1, 1)
    critic = nn.Linear(1, 1)
    with pytest.raises(TypeError, match="noise must be a torch.Tensor"):
        gan.generator_gradient_norm(generator, critic, [[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        gan.generator_gradient_norm(generator, critic, torch.zeros(2, 1), "wasserstein")  # type: ignore[arg-type]
    generator.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter that requires a gradient"):
        gan.generator_gradient_norm(generator, critic, torch.zeros(2, 1))


def test_saturation_curve_minimax_vanishes_non_saturating_grows(device: torch.device) -> None:
    torch.manual_seed(0)
    generator, critic = nn.Linear(1, 1).to(device), MLP(1, 1, hidden=(16,)).to(device)
    before = [p.detach().clone() for p in generator.parameters()]
    curve = gan.saturation_curve(
        generator,
        critic,
        lambda: 4.0 + 0.1 * torch.randn(64, 1, device=device),
        lambda: torch.randn(64, 1, device=device),
        torch.randn(256, 1, device=device),
        steps=250,
        record_every=100,
        d_opt=torch.optim.Adam(critic.parameters(), lr=1e-2),
    )
    assert curve.step == [0, 100, 200, 250] and len(curve) == 4
    assert curve.fake_probability[-1] < 0.02 < curve.fake_probability[0]
    assert curve.minimax[-1] < curve.minimax[0] / 5
    assert curve.non_saturating[-1] > 5 * curve.non_saturating[0]
    assert all(
        torch.equal(a, b) for a, b in zip(before, generator.parameters())
    )  # the generator is frozen
    assert all(p.grad is None for p in generator.parameters())


def test_generator_gradient_norm_per_member_equals_each_member_alone(device: torch.device) -> None:
    torch.manual_seed(0)
    generator = nets.BatchedMLP(3, 2, 2, hidden=(8,)).to(device=device, dtype=torch.float64)
    critic = nets.BatchedMLP(3, 2, 1, hidden=(8,), activation="leaky_relu").to(
        device=device, dtype=torch.float64
    )
    noise = torch.randn(3, 16, 2, device=device, dtype=torch.float64)
    for kind in ("non_saturating", "minimax"):
        norms = gan.generator_gradient_norm(generator, critic, noise, kind, per_member=True)  # type: ignore[arg-type]
        assert isinstance(norms, list) and len(norms) == 3
        for k in range(3):
            alone = gan.generator_gradient_norm(
                generator.member(k), critic.member(k), noise[k], kind
            )  # type: ignore[arg-type]
            assert norms[k] == pytest.approx(alone, rel=1e-10)
    assert all(p.grad is None for p in generator.parameters())


def test_generator_gradient_norm_per_member_checks_shapes() -> None:
    generator, critic = nets.BatchedMLP(3, 2, 2, hidden=(4,)), nets.BatchedMLP(3, 2, 1, hidden=(4,))
    with pytest.raises(ValueError, match="leading dimension"):
        gan.generator_gradient_norm(
            nn.Linear(2, 2), lambda x: x[..., :1], torch.zeros(3, 4, 2), per_member=True
        )
    with pytest.raises(ValueError, match="noise must have shape"):
        gan.generator_gradient_norm(generator, critic, torch.zeros(3), per_member=True)
    with pytest.raises(ValueError, match="critic must return logits"):
        gan.generator_gradient_norm(
            generator, lambda x: x.sum(), torch.zeros(3, 4, 2), per_member=True
        )
    with pytest.raises(TypeError, match="per_member must be a bool"):
        gan.generator_gradient_norm(generator, critic, torch.zeros(3, 4, 2), per_member=1)  # type: ignore[arg-type]


def test_saturation_curve_per_member_records_each_member(device: torch.device) -> None:
    torch.manual_seed(0)
    generator = nets.BatchedMLP(4, 1, 1, hidden=(4,)).to(device)
    critic = nets.BatchedMLP(4, 1, 1, hidden=(16,)).to(device)
    eval_noise = torch.randn(4, 256, 1, device=device)
    curve = gan.saturation_curve(
        generator,
        critic,
        lambda: 4.0 + 0.1 * torch.randn(4, 64, 1, device=device),
        lambda: torch.randn(4, 64, 1, device=device),
        eval_noise,
        steps=250,
        record_every=125,
        d_opt=torch.optim.Adam(critic.parameters(), lr=1e-2),
        per_member=True,
    )
    assert curve.step == [0, 125, 250]
    minimax, non_saturating = np.array(curve.minimax), np.array(curve.non_saturating)
    probability = np.array(curve.fake_probability)
    assert minimax.shape == non_saturating.shape == probability.shape == (3, 4)
    assert (probability[-1] < 0.02).all() and (probability[0] > 0.1).all()
    assert (minimax[-1] < minimax[0] / 5).all() and (
        non_saturating[-1] > 5 * non_saturating[0]
    ).all()
    # The last record of member k equals the single-member measurement of its copy.
    for k in range(4):
        alone = gan.generator_gradient_norm(
            generator.member(k), critic.member(k), eval_noise[k], "minimax"
        )
        assert minimax[-1, k] == pytest.approx(alone, rel=1e-4)
        with torch.no_grad():
            mean_d = (
                torch.sigmoid(critic.member(k)(generator.member(k)(eval_noise[k]))).mean().item()
            )
        assert probability[-1, k] == pytest.approx(mean_d, rel=1e-4)


def test_saturation_curve_checks_its_inputs() -> None:
    generator, critic = nn.Linear(1, 1), MLP(1, 1, hidden=(4,))
    arguments = dict(steps=1, d_opt=torch.optim.SGD(critic.parameters(), lr=0.1))
    real, noise = (lambda: torch.randn(4, 1)), (lambda: torch.randn(4, 1))
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        gan.saturation_curve(
            generator, critic, real, noise, torch.randn(4, 1), **{**arguments, "steps": -1}
        )
    with pytest.raises(ValueError, match="record_every must be a positive int"):
        gan.saturation_curve(
            generator, critic, real, noise, torch.randn(4, 1), record_every=0, **arguments
        )
    with pytest.raises(TypeError, match="d_opt must be"):
        gan.saturation_curve(generator, critic, real, noise, torch.randn(4, 1), steps=1, d_opt=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="critic must be an nn.Module"):
        gan.saturation_curve(generator, lambda x: x, real, noise, torch.randn(4, 1), **arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# packing (PacGAN) and batched independent networks


def test_pack_samples_concatenates_consecutive_samples(device: torch.device) -> None:
    samples = torch.arange(24.0, device=device).reshape(2, 6, 2)  # two runs, six 2-D samples each
    packed = gan.pack_samples(samples, 3)
    assert packed.shape == (2, 2, 6)
    torch.testing.assert_close(
        packed[1, 0], torch.cat([samples[1, 0], samples[1, 1], samples[1, 2]])
    )
    assert torch.equal(gan.pack_samples(samples, 1), samples)
    with pytest.raises(ValueError, match="divisible by pack = 4"):
        gan.pack_samples(samples, 4)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., N, d\)"):
        gan.pack_samples(torch.zeros(6), 2)
    with pytest.raises(ValueError, match="pack must be a positive int"):
        gan.pack_samples(samples, 0)


def test_packed_discriminator_scores_each_pack_once(device: torch.device) -> None:
    torch.manual_seed(0)
    inner = MLP(3 * 2, 1, hidden=(8,)).to(device)
    critic = gan.PackedDiscriminator(inner, pack=3)
    samples = torch.randn(9, 2, device=device)
    logits = critic(samples)
    assert logits.shape == (3, 1)
    torch.testing.assert_close(logits[2], inner(samples[6:9].reshape(-1)))
    assert "pack=3" in repr(critic)
    # The losses take the packed logits as they are: a PacGAN step is an ordinary GAN step.
    assert torch.isfinite(gan.discriminator_loss(critic(samples), critic(samples + 1)))
    with pytest.raises(TypeError, match="critic must be an nn.Module"):
        gan.PackedDiscriminator(lambda x: x, 2)  # type: ignore[arg-type]


def test_batched_mlp_members_are_independent_mlps(device: torch.device) -> None:
    torch.manual_seed(0)
    batched = nets.BatchedMLP(3, 2, 4, hidden=(16, 8), activation="leaky_relu").to(device)
    x = torch.randn(3, 5, 2, device=device)
    out = batched(x)
    assert out.shape == (3, 5, 4)
    for k in range(3):
        single = batched.member(k)
        assert isinstance(single, MLP) and next(single.parameters()).device.type == device.type
        torch.testing.assert_close(single(x[k]), out[k])
    # Member 0's output does not depend on member 1's parameters nor on member 1's inputs.
    x.requires_grad_(True)
    batched(x)[0].sum().backward()
    assert all(p.grad[1].abs().max() == 0 for p in batched.parameters())
    assert x.grad[1].abs().max() == 0 and x.grad[0].abs().max() > 0


def test_batched_mlp_initialisation_matches_nn_linear() -> None:
    torch.manual_seed(0)
    batched = nets.BatchedMLP(50, 16, 1, hidden=(32,))
    first = batched.weights[0]
    assert first.abs().max() <= 1 / 4 and first.abs().max() > 0.24  # uniform on ±1/sqrt(16)
    assert first.std().item() == pytest.approx(1 / 4 / math.sqrt(3), rel=0.05)
    assert not torch.equal(first[0], first[1])  # members start from different weights


def test_training_batched_members_with_adam_equals_training_them_one_by_one() -> None:
    torch.manual_seed(0)
    batched = nets.BatchedMLP(2, 1, 1, hidden=(8,), activation="tanh")
    singles = [batched.member(k) for k in range(2)]
    x = torch.linspace(-1, 1, 16).reshape(1, 16, 1).expand(2, 16, 1)
    targets = torch.stack([x[0].sin(), x[1].cos()])
    batched_opt = torch.optim.Adam(batched.parameters(), lr=1e-2)
    single_opts = [torch.optim.Adam(single.parameters(), lr=1e-2) for single in singles]
    for _ in range(50):
        batched_opt.zero_grad()
        (
            (batched(x) - targets) ** 2
        ).mean().backward()  # averaged over the members, as the GAN losses do
        batched_opt.step()
        for k, (single, opt) in enumerate(zip(singles, single_opts)):
            opt.zero_grad()
            ((single(x[k]) - targets[k]) ** 2).mean().backward()
            opt.step()
    for k in range(2):
        torch.testing.assert_close(batched(x)[k], singles[k](x[k]), atol=1e-4, rtol=1e-4)


def test_batched_mlp_trains_as_a_packed_gan(device: torch.device) -> None:
    torch.manual_seed(0)
    generator = nets.BatchedMLP(2, 2, 2, hidden=(8,))
    critic = gan.PackedDiscriminator(nets.BatchedMLP(2, 2 * 2, 1, hidden=(8,)), pack=2)
    history = gan.train_adversarial(
        generator,
        critic,
        lambda: torch.randn(2, 16, 2, device=device) + 3.0,
        lambda: torch.randn(2, 16, 2, device=device),
        steps=3,
        g_opt=torch.optim.Adam(generator.parameters(), lr=1e-3),
        d_opt=torch.optim.Adam(critic.parameters(), lr=1e-3),
        device=device,
        progress=False,
    )
    assert len(history) == 3 and all(np.isfinite(history.critic_loss))
    assert critic(torch.zeros(2, 16, 2, device=device)).shape == (2, 8, 1)


def test_batched_mlp_checks_its_inputs() -> None:
    batched = nets.BatchedMLP(2, 3, 1, hidden=(4,))
    with pytest.raises(ValueError, match=r"shape \(2, N, 3\)"):
        batched(torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match=r"shape \(2, N, 3\)"):
        batched(torch.zeros(5, 3))
    with pytest.raises(IndexError, match="member index"):
        batched.member(2)
    with pytest.raises(ValueError, match="members must be a positive int"):
        nets.BatchedMLP(0, 3, 1)
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        nets.BatchedMLP(2, 3, 1, hidden=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown activation"):
        nets.BatchedMLP(2, 3, 1, activation="swish")


# --------------------------------------------------------------------------------------------------
# batched gradient penalty


def test_batched_gradient_penalty_is_the_mean_of_the_members_penalties(
    device: torch.device,
) -> None:
    torch.manual_seed(0)
    critic = nets.BatchedMLP(3, 2, 1, hidden=(8,)).to(device)
    real, fake = torch.randn(3, 5, 2, device=device), torch.randn(3, 5, 2, device=device)
    generator = torch.Generator().manual_seed(1)
    value = gan.batched_gradient_penalty(critic, real, fake, generator)
    weights = torch.rand(15, generator=torch.Generator().manual_seed(1)).reshape(3, 5)
    per_member = [
        gan.gradient_penalty(critic.member(k).to(device), real[k], fake[k], weights=weights[k])
        for k in range(3)
    ]
    torch.testing.assert_close(value, torch.stack(per_member).mean(), rtol=1e-5, atol=1e-6)
    # Differentiable in the critic's parameters (all but the last bias, which has no input
    # gradient).
    value.backward()
    assert all(weight.grad is not None and weight.grad.abs().sum() > 0 for weight in critic.weights)


def test_batched_gradient_penalty_rejects_bad_inputs() -> None:
    critic = nets.BatchedMLP(2, 2, 1, hidden=(4,))
    with pytest.raises(ValueError, match="shape \\(members, N, d\\)"):
        gan.batched_gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        gan.batched_gradient_penalty(critic, torch.randn(2, 4, 2), torch.randn(2, 3, 2))
    with pytest.raises(ValueError, match="one score per sample"):
        gan.batched_gradient_penalty(lambda x: x.sum(), torch.randn(2, 4, 2), torch.randn(2, 4, 2))


# --------------------------------------------------------------------------------------------------
# the Cramér critique


def _brute_force_minibatch_losses(theta: float, p_star: float, m: int) -> tuple[float, float]:
    # Enumerate all 2^m minibatches; W1 by the quantile formula of gdmlib.ot, the energy distance
    # of the empirical measure (a V-statistic: the minibatch *is* the distribution) by its
    # definition.
    from itertools import product

    from gdmlib.ot import wasserstein_1d

    support = torch.tensor([0.0, 1.0], dtype=torch.float64)
    model_weights = torch.tensor([1 - theta, theta], dtype=torch.float64)
    expected_w1 = expected_energy = 0.0
    for batch in product([0.0, 1.0], repeat=m):
        x = torch.tensor(batch, dtype=torch.float64)
        probability = p_star ** x.sum().item() * (1 - p_star) ** (m - x.sum().item())
        w1 = wasserstein_1d(x, support, b=model_weights).item()
        between = ((x[:, None] - support[None, :]).abs() * model_weights).sum(dim=1).mean().item()
        within_batch = (x[:, None] - x[None, :]).abs().mean().item()
        within_model = 2 * theta * (1 - theta)
        expected_w1 += probability * w1
        expected_energy += probability * (2 * between - within_batch - within_model)
    return expected_w1, expected_energy


@pytest.mark.parametrize("m", [1, 2, 5])
def test_bernoulli_minibatch_loss_matches_enumeration_of_minibatches(m: int) -> None:
    p_star = 0.65
    thetas = [0.0, 0.2, 0.5, 0.65, 0.9, 1.0]
    theta = torch.tensor(thetas, dtype=torch.float64)
    w1 = gan.bernoulli_minibatch_loss(theta, p_star, m, "wasserstein")
    energy = gan.bernoulli_minibatch_loss(theta, p_star, m, "energy")
    for index, value in enumerate(thetas):
        brute_w1, brute_energy = _brute_force_minibatch_losses(value, p_star, m)
        assert w1[index].item() == pytest.approx(brute_w1, abs=1e-12)
        assert energy[index].item() == pytest.approx(brute_energy, abs=1e-12)
    # The energy loss is the true energy distance plus the variance term 2 p*(1 - p*)/m.
    torch.testing.assert_close(energy, 2 * (theta - p_star) ** 2 + 2 * p_star * (1 - p_star) / m)


def test_bernoulli_minibatch_loss_gradient_and_device(device: torch.device) -> None:
    theta = torch.tensor([0.3, 0.55, 0.8], dtype=torch.float64, device=device, requires_grad=True)
    m, p_star = 4, 0.65
    loss = gan.bernoulli_minibatch_loss(theta, p_star, m)
    assert loss.device == theta.device and loss.dtype == torch.float64
    (gradient,) = torch.autograd.grad(loss.sum(), theta)
    # Between the kinks k/m the expected gradient is P(K/m < theta) - P(K/m > theta) = 2 F - 1.
    from scipy.stats import binom

    expected = [2 * binom.cdf(np.floor(t * m), m, p_star) - 1 for t in theta.tolist()]
    torch.testing.assert_close(gradient.cpu(), torch.tensor(expected, dtype=torch.float64))
    float_theta = theta.detach().float()
    assert gan.bernoulli_minibatch_loss(float_theta, p_star, m).dtype == torch.float32


@pytest.mark.parametrize("p_star", [0.3, 0.65, 0.91])
@pytest.mark.parametrize("m", [1, 2, 3, 7, 20])
def test_bernoulli_minibatch_minimizers(p_star: float, m: int) -> None:
    from scipy.stats import binom

    # Generic p*: P(K <= k) is never exactly 1/2, so the median is unique.
    assert gan.bernoulli_minibatch_minimizer(p_star, m) == pytest.approx(
        binom.median(m, p_star) / m, abs=1e-12
    )
    assert gan.bernoulli_minibatch_minimizer(p_star, m, "energy") == pytest.approx(
        p_star, abs=1e-12
    )


def test_bernoulli_minibatch_minimizer_edge_cases_and_errors() -> None:
    assert (
        gan.bernoulli_minibatch_minimizer(1.0, 3) == 1.0
        and gan.bernoulli_minibatch_minimizer(0.0, 3) == 0.0
    )
    assert gan.bernoulli_minibatch_minimizer(0.65, 1000) == pytest.approx(
        0.65, abs=1e-3
    )  # consistent as m grows
    theta = torch.tensor([0.5])
    with pytest.raises(ValueError, match="p_star must lie in"):
        gan.bernoulli_minibatch_loss(theta, 1.5, 3)
    with pytest.raises(TypeError, match="p_star must be a number"):
        gan.bernoulli_minibatch_loss(theta, "0.5", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        gan.bernoulli_minibatch_loss(theta, 0.5, 0)
    with pytest.raises(ValueError, match="theta must lie in"):
        gan.bernoulli_minibatch_loss(torch.tensor([1.2]), 0.5, 3)
    with pytest.raises(TypeError, match="theta must be a floating"):
        gan.bernoulli_minibatch_loss(torch.tensor([1]), 0.5, 3)
    with pytest.raises(ValueError, match="distance must be"):
        gan.bernoulli_minibatch_loss(theta, 0.5, 3, "cramer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance must be"):
        gan.bernoulli_minibatch_minimizer(0.5, 3, "cramer")  # type: ignore[arg-type]


def test_game_value_estimate_and_standard_error(device: torch.device) -> None:
    real = torch.randn(400, 1, device=device)
    fake = torch.randn(300, device=device) - 1.0
    estimate = gan.game_value(real, fake)
    real_terms, fake_terms = F.softplus(-real.reshape(-1).double()), F.softplus(fake.double())
    assert estimate.value == pytest.approx(
        -(real_terms.mean() + fake_terms.mean()).item(), abs=1e-6
    )
    expected_se = math.sqrt(real_terms.var().item() / 400 + fake_terms.var().item() / 300)
    assert estimate.stderr == pytest.approx(expected_se, rel=1e-9)
    assert estimate.value == pytest.approx(-gan.discriminator_loss(real, fake).item(), abs=1e-6)


def test_jsd_lower_bound_is_tight_at_the_optimal_discriminator(device: torch.device) -> None:
    # pi = N(0, 1), p = N(1, 1): D*'s logit is log pi - log p = 1/2 - x, and the bound at D* is
    # the JSD itself (by quadrature), up to Monte Carlo error.
    from gdmlib.divergences import jsd

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=generator, dtype=torch.float64)
    y = torch.randn(200_000, generator=generator, dtype=torch.float64) + 1.0
    bound = gan.jsd_lower_bound((0.5 - x).to(device), (0.5 - y).to(device))
    exact = jsd(Normal(0.0, 1.0), Normal(1.0, 1.0))
    assert abs(bound.value - exact) < 4 * bound.stderr
    assert 0 < bound.stderr < 1e-3
    # A worse discriminator (logit scaled by 1/2) gives a smaller bound, on the same draws.
    worse = gan.jsd_lower_bound((0.25 - x / 2).to(device), (0.25 - y / 2).to(device))
    assert worse.value < bound.value - 10 * bound.stderr


def test_jsd_lower_bound_is_half_the_game_value_plus_log_two() -> None:
    real, fake = torch.randn(50, 1), torch.randn(70) - 1.0
    value, bound = gan.game_value(real.double(), fake.double()), gan.jsd_lower_bound(real, fake)
    assert bound.value == pytest.approx(math.log(2) + value.value / 2, abs=1e-12)
    assert bound.stderr == pytest.approx(value.stderr / 2, rel=1e-12)
    # float64 inside: a constant discriminator gives 0 ± 0 (to rounding) even from float32 logits.
    constant = gan.jsd_lower_bound(torch.full((5,), 0.3), torch.full((5,), 0.3))
    expected = math.log(2) - (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(0.3))) / 2
    assert constant.value == pytest.approx(expected, abs=1e-7) and constant.stderr < 1e-15


def test_game_value_needs_two_logits_per_side() -> None:
    with pytest.raises(ValueError, match="at least two logits"):
        gan.game_value(torch.zeros(1), torch.zeros(5))


# --------------------------------------------------------------------------------------------------
# the package layout, the shared checkpoint helpers, the parameter guard and a bad-input table


def test_every_public_name_is_reexported_and_the_error_is_the_shared_one() -> None:
    from gdmlib import lipschitz, training
    from gdmlib.gan import cramer, diagnostics, losses, packing
    from gdmlib.gan import training as gan_training

    for module in (losses, cramer, diagnostics, packing, gan_training):
        for name in module.__all__:
            assert getattr(gan, name) is getattr(module, name), name
    assert gan.gradient_penalty is lipschitz.gradient_penalty
    assert gan.NonFiniteLossError is training.NonFiniteLossError


def test_checkpoint_helpers_round_trip_the_random_state(tmp_path: Path) -> None:
    import random

    from gdmlib import training

    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    path = training.save_checkpoint(tmp_path / "state.pt", {"rng": training.rng_state(), "step": 2})
    first = (torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(6)
    np.random.seed(6)
    random.seed(6)
    loaded = training.load_checkpoint(path)
    training.set_rng_state(loaded["rng"])
    second = (torch.rand(3), np.random.rand(2), random.random())
    assert loaded["step"] == 2 and torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]
    assert not path.with_name(path.name + ".tmp").exists()
    with pytest.raises(TypeError, match="payload must be a dict"):
        training.save_checkpoint(tmp_path / "x.pt", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        training.save_checkpoint(tmp_path / "missing" / "x.pt", {})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="lacks the keys"):
        training.set_rng_state({"torch": torch.get_rng_state()})


def test_a_parameter_that_becomes_infinite_names_the_step() -> None:
    generator, critic, _, d_opt = _toy_gan()
    g_opt = torch.optim.SGD(generator.parameters(), lr=1e38)  # a finite loss, an overflowing update
    with pytest.raises(
        gan.NonFiniteLossError, match=r"parameter (weight|bias) is -?inf at step 0"
    ) as info:
        gan.train_adversarial(
            generator,
            critic,
            _real,
            _noise,
            steps=5,
            g_opt=g_opt,
            d_opt=d_opt,
            g_loss_fn=lambda scores: 1e10 * gan.generator_loss(scores),
            progress=False,
        )
    assert info.value.step == 0 and info.value.loss.startswith("parameter ")


def _linear() -> nn.Module:
    return nn.Linear(1, 1)


_BAD_GAN_CALLS = [
    # (call, error, match)
    (
        lambda: gan.discriminator_loss(torch.zeros(2), torch.zeros(2, device="meta")),
        ValueError,
        "same device",
    ),
    (
        lambda: gan.discriminator_loss([0.0], torch.zeros(2)),
        TypeError,
        "real_logits must be a torch",
    ),
    (lambda: gan.generator_loss(torch.zeros(0)), ValueError, "fake_logits is empty"),
    (lambda: gan.game_value(torch.zeros(1), torch.zeros(3)), ValueError, "at least two logits"),
    (lambda: gan.optimal_discriminator(Normal(0.0, 1.0), "p"), TypeError, "p must have a log_prob"),
    (lambda: gan.jsd_lower_bound(torch.zeros(1), torch.zeros(3)), ValueError, "at least two"),
    (
        lambda: gan.jsd_lower_bound(torch.tensor([0.0, math.nan]), torch.zeros(3)),
        ValueError,
        "real_logits must be finite",
    ),
    (
        lambda: gan.jsd_lower_bound(torch.zeros(2), torch.zeros(3, dtype=torch.int64)),
        TypeError,
        "fake_logits must be a floating",
    ),
    (
        lambda: gan.generator_gradient_norm(_linear(), "critic", torch.zeros(2, 1)),
        TypeError,
        "critic must be callable",
    ),
    (
        lambda: gan.generator_gradient_norm(_linear(), _linear(), torch.zeros(2, 1, device="meta")),
        ValueError,
        "noise is on meta but the generator's parameters are on cpu",
    ),
    (
        lambda: gan.generator_gradient_norm(_linear(), _linear(), torch.zeros(2, 1), "wgan"),
        ValueError,
        "kind must be",
    ),
    (lambda: gan.pack_samples(torch.zeros(5, 2), 2), ValueError, "divisible by pack"),
    (lambda: gan.pack_samples(torch.zeros(4, 2), 0), ValueError, "pack must be a positive int"),
    (lambda: gan.pack_samples(torch.zeros(4), 2), ValueError, r"shape \(..., N, d\)"),
    (lambda: gan.PackedDiscriminator("mlp", 2), TypeError, "critic must be an nn.Module"),
    (
        lambda: gan.bernoulli_minibatch_loss(torch.tensor([0.5]), float("nan"), 2),
        ValueError,
        "p_star must lie in",
    ),
    (
        lambda: gan.bernoulli_minibatch_loss(torch.tensor([float("nan")]), 0.5, 2),
        ValueError,
        "theta must lie in",
    ),
    (lambda: gan.bernoulli_minibatch_minimizer(0.5, True), TypeError, "batch_size must be an int"),
    (lambda: gan.clip_weights(_linear(), float("inf")), ValueError, "positive finite number"),
]


@pytest.mark.parametrize(("call", "error", "match"), _BAD_GAN_CALLS)
def test_gan_functions_reject_bad_inputs(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"penalty_weight": True}, ValueError, "penalty_weight must be a non-negative finite"),
        ({"penalty_weight": float("nan")}, ValueError, "penalty_weight must be a non-negative"),
        ({"clip": float("inf")}, ValueError, "clip must be a positive number"),
        ({"clip": True}, ValueError, "clip must be a positive number"),
        ({"steps": 2.0}, ValueError, "steps must be a non-negative int"),
        ({"history_every": 0}, ValueError, "history_every must be a positive int"),
        ({"penalty": "gp"}, TypeError, "penalty must be a callable"),
        ({"callback": 3}, TypeError, "callback must be callable"),
    ],
)
def test_train_adversarial_rejects_bad_arguments(kwargs, error, match) -> None:
    generator, critic, g_opt, d_opt = _toy_gan()
    arguments = {"steps": 1, "g_opt": g_opt, "d_opt": d_opt, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        gan.train_adversarial(generator, critic, _real, _noise, **arguments)
