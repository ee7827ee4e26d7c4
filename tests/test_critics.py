"""Tests of gdmlib.critics: neural estimates of W_1 against exact values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdmlib.critics import (
    BatchedCritic,
    CriticFit,
    critic_gap,
    gradient_norms,
    make_critic,
    train_critic,
    train_critics,
)
from gdmlib.ot import wasserstein


def _shifted_samples(
    n: int, shift: float, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=generator)
    y = torch.randn(n, 1, generator=generator) + shift
    return x.to(device), y.to(device)


def test_make_critic_spectral_norm_only_for_sn() -> None:
    def normalised(module: nn.Module) -> bool:
        return any(nn.utils.parametrize.is_parametrized(layer) for layer in module.modules())

    assert normalised(make_critic(2, "sn", hidden=(4,)))
    assert not normalised(make_critic(2, "gp", hidden=(4,)))
    assert not normalised(make_critic(2, "clip", hidden=(4,)))
    with pytest.raises(ValueError, match="method must be one of"):
        make_critic(2, "lipschitz", hidden=(4,))  # type: ignore[arg-type]


def test_critic_gap_and_gradient_norms_of_a_linear_critic(device: torch.device) -> None:
    critic = nn.Linear(2, 1).to(device)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, -0.8]]))
        critic.bias.fill_(3.0)
    x, y = torch.randn(50, 2, device=device), torch.randn(40, 2, device=device)
    expected = float(((x - y.mean(0)) @ critic.weight.detach().T).mean())
    assert critic_gap(critic, x, y) == pytest.approx(expected, abs=1e-5)
    norms = gradient_norms(critic, x)
    assert norms.shape == (50,) and norms.device.type == device.type
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    critic.train()
    critic_gap(critic, x, y)
    assert critic.training  # the mode is restored


def test_gradient_penalty_critic_recovers_the_shift_with_its_known_bias(
    device: torch.device,
) -> None:
    # For N(0, 1) against N(mu, 1) the best linear critic under the penalty lambda (|f'| - 1)^2 has
    # slope 1 + W / (2 lambda), so the gap is W (1 + W / (2 lambda)) with W the mean difference.
    shift, weight = 2.0, 10.0
    x, y = _shifted_samples(200, shift, device)
    fit = train_critic(x, y, "gp", hidden=(16, 16), steps=150, penalty_weight=weight, seed=0)
    assert isinstance(fit, CriticFit) and len(fit.history) == 150
    mean_gap = float(y.mean() - x.mean())
    expected = mean_gap * (1 + mean_gap / (2 * weight))
    assert fit.estimate == pytest.approx(expected, rel=0.05)
    bulk = torch.linspace(-1.0, 3.0, 9, device=device).unsqueeze(-1)
    assert gradient_norms(fit.critic, bulk).median().item() == pytest.approx(
        1 + mean_gap / (2 * weight), abs=0.08
    )


def test_spectral_norm_critic_is_a_lower_bound_of_the_empirical_distance(
    device: torch.device,
) -> None:
    x, y = _shifted_samples(200, 1.5, device, seed=1)
    fit = train_critic(x, y, "sn", hidden=(16, 16), steps=200, seed=0)
    exact = float(wasserstein(x, y, p=1))
    assert fit.lipschitz <= 1.01
    assert fit.estimate <= 1.01 * exact
    assert fit.estimate == pytest.approx(exact, rel=0.05)  # a linear potential is within reach


def test_clipped_critic_keeps_its_weights_clipped_and_normalises(device: torch.device) -> None:
    x, y = _shifted_samples(200, 2.0, device, seed=2)
    fit = train_critic(x, y, "clip", hidden=(8,), steps=100, lr=3e-3, clip=0.05, seed=0)
    assert all(parameter.abs().max().item() <= 0.05 + 1e-7 for parameter in fit.critic.parameters())
    assert 0 < fit.estimate < 0.5  # a K-Lipschitz critic with a small K
    assert 0 < fit.normalized_estimate <= 1.05 * float(wasserstein(x, y, p=1))


def test_seed_makes_training_reproducible_without_touching_the_global_state() -> None:
    x, y = _shifted_samples(64, 1.0, torch.device("cpu"))
    state = torch.get_rng_state()
    first = train_critic(x, y, "gp", hidden=(8,), steps=20, batch_size=16, seed=3)
    second = train_critic(x, y, "gp", hidden=(8,), steps=20, batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.history == second.history and first.estimate == second.estimate


def test_unequal_sample_sizes_minibatches_and_a_given_critic() -> None:
    x = torch.randn(50, 2, dtype=torch.float64)
    y = torch.randn(70, 2, dtype=torch.float64) + 1.0
    critic = make_critic(2, "gp", hidden=(8,))
    fit = train_critic(x, y, "gp", critic=critic, steps=10, batch_size=32, seed=0)
    assert fit.critic is critic and next(critic.parameters()).dtype == torch.float64
    assert not fit.critic.training and math.isfinite(fit.estimate) and math.isfinite(fit.lipschitz)
    fit = train_critic(x[:, 0], y[:, 0], "sn", hidden=(4,), steps=5, seed=0)  # points on the line
    assert math.isfinite(fit.estimate)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "wgan"}, ValueError, "method must be one of"),
        ({"steps": 0}, ValueError, "steps must be a positive int"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"lr": -1.0}, ValueError, "lr must be positive"),
        ({"clip": 0.0}, ValueError, "clip must be positive"),
        ({"penalty_weight": float("nan")}, ValueError, "penalty_weight must be finite"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"critic": "mlp"}, TypeError, "critic must be an nn.Module"),
    ],
)
def test_train_critic_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    x, y = torch.randn(10, 2), torch.randn(10, 2)
    with pytest.raises(error, match=match):
        train_critic(x, y, **kwargs)


def test_bad_samples_are_rejected() -> None:
    x = torch.randn(10, 2)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        train_critic([[0.0, 1.0]], x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating dtype"):
        train_critic(torch.ones(10, 2, dtype=torch.long), x)
    with pytest.raises(ValueError, match="same dimension d"):
        train_critic(x, torch.randn(10, 3))
    with pytest.raises(TypeError, match="same dtype"):
        train_critic(x, x.double())
    with pytest.raises(ValueError, match="at least 2 points"):
        train_critic(x[:1], x)
    with pytest.raises(ValueError, match="finite values"):
        train_critic(x, torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="shape \\(n, d\\)"):
        critic_gap(nn.Linear(2, 1), torch.randn(3, 2, 2), x)
    with pytest.raises(ValueError, match="one score per point"):
        critic_gap(nn.Linear(2, 3), x, x)
    with pytest.raises(TypeError, match="floating-point"):
        gradient_norms(nn.Linear(2, 1), torch.ones(3, 2, dtype=torch.long))


# --- train_critics: independent critics trained as batched members --------------------------------


def test_batched_critic_spectral_norm_normalises_every_member() -> None:
    torch.manual_seed(0)
    critics = BatchedCritic(3, 2, hidden=(8, 8), spectral_norm=True)
    critics.power_iteration(200)
    for weight in critics.effective_weights():
        norms = torch.linalg.matrix_norm(weight.detach(), ord=2)
        assert torch.allclose(norms, torch.ones(3), atol=1e-4), norms
    plain = BatchedCritic(3, 2, hidden=(8,))
    assert plain(torch.zeros(3, 4, 2)).shape == (3, 4, 1)
    with pytest.raises(ValueError, match="expects points of shape"):
        plain(torch.zeros(4, 2))


def test_train_critics_members_are_independent_runs() -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(2, 64, 1, generator=generator),
        torch.randn(2, 64, 1, generator=generator) + 1.0,
    )
    other = x.clone()
    other[1] = 3.0 * torch.randn(64, 1, generator=generator)
    for method in ("clip", "gp", "sn"):
        first = train_critics(x, y, method, hidden=(8,), steps=30, seed=0)
        second = train_critics(other, y, method, hidden=(8,), steps=30, seed=0)
        # Member 0 saw the same data in both runs: changing member 1's data leaves it unchanged.
        assert torch.allclose(first.estimates[0], second.estimates[0], atol=1e-5), method
        assert first.history.shape == (
            30,
            2,
        ) and first.estimates.shape == first.lipschitz.shape == (2,)


def test_train_critics_spectral_norm_is_a_lower_bound_and_gp_overshoots(
    device: torch.device,
) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 200, 1, generator=generator).to(device)
    y = (torch.randn(4, 200, 1, generator=generator) + 2.0).to(device)
    exact = torch.stack([wasserstein(x[k], y[k], p=1) for k in range(4)])
    sn = train_critics(x, y, "sn", hidden=(16, 16), steps=200, seed=0)
    assert (sn.lipschitz <= 1.01).all() and (sn.estimates <= 1.01 * exact).all()
    assert torch.allclose(
        sn.estimates, exact, rtol=0.06
    )  # a straight line: the bound is nearly tight
    weight = 10.0
    gp = train_critics(x, y, "gp", hidden=(16, 16), steps=200, penalty_weight=weight, seed=0)
    best = int((gp.estimates - weight * gp.penalty).argmax())
    mean_gap = float(y[best].mean() - x[best].mean())
    assert gp.estimates[best].item() == pytest.approx(
        mean_gap * (1 + mean_gap / (2 * weight)), rel=0.05
    )
    # gaps(): in-sample equals the stored estimates; a shared (N, d) sample is broadcast to every
    # member.
    gap, se = sn.gaps(x, y)
    assert torch.allclose(gap, sn.estimates, atol=1e-5) and (se > 0).all()
    fresh_gap, _ = sn.gaps(
        torch.randn(500, 1, device=device), torch.randn(500, 1, device=device) + 2.0
    )
    assert fresh_gap.shape == (4,)
    # member(): one critic alone, as a CriticFit scoring (N, d) points like the batched critic.
    single = sn.member(2)
    assert isinstance(single, CriticFit) and single.estimate == pytest.approx(
        sn.estimates[2].item()
    )
    with torch.no_grad():
        assert torch.allclose(single.critic(x[2]), sn.critic(x)[2], atol=1e-6)
    with pytest.raises(IndexError):
        sn.member(4)


def test_train_critics_rejects_bad_input() -> None:
    x = torch.randn(2, 10, 1)
    with pytest.raises(ValueError, match=r"\(members, n, d\)"):
        train_critics(torch.randn(10, 1), torch.randn(10, 1))
    with pytest.raises(ValueError, match="same members"):
        train_critics(x, torch.randn(3, 10, 1))
    with pytest.raises(TypeError, match="floating"):
        train_critics(x, torch.ones(2, 10, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="method must be one of"):
        train_critics(x, x, "wgan")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        train_critics(x, x, "sn", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        train_critics(x, x, "sn", seed=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="same dtype"):
        train_critics(x, x.double())
    with pytest.raises(ValueError, match="finite"):
        train_critics(x, torch.full((2, 10, 1), float("nan")))


# --------------------------------------------------------------------------------------------------
# non-finite guards: the step and the quantity are named


class _NaNAfter(torch.nn.Module):
    """A linear critic whose ``calls``-th forward pass returns NaN."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.layer, self.calls, self.seen = torch.nn.Linear(2, 1), calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        scores = self.layer(x)
        return scores * float("nan") if self.seen == self.calls else scores


@pytest.mark.parametrize("check_every", [1, 4])  # 1: the CPU path; 4: the accelerator's cadence
def test_train_critic_names_the_step_of_a_nan_loss(monkeypatch, check_every: int) -> None:
    from gdmlib import critics
    from gdmlib.training import NonFiniteLossError

    monkeypatch.setattr(critics, "_check_every", lambda device: check_every)
    x, y = torch.randn(10, 2), torch.randn(10, 2)
    critic = _NaNAfter(calls=7)  # two passes per step with "clip": the 7th is step 3's real batch
    with pytest.raises(NonFiniteLossError, match="critic loss is nan at step 3") as info:
        critics.train_critic(x, y, "clip", critic=critic, steps=20, seed=0)
    assert info.value.step == 3 and isinstance(info.value, FloatingPointError)
    if check_every == 1:  # raised before the backward pass: the parameters are still finite
        assert all(torch.isfinite(p).all() for p in critic.parameters())


def test_train_critic_names_a_parameter_that_overflows() -> None:
    from gdmlib import critics
    from gdmlib.training import NonFiniteLossError

    x, y = torch.randn(10, 2), torch.randn(10, 2) + 1
    critic = torch.nn.Linear(2, 1)
    critic.weight.register_hook(lambda grad: grad * float("inf"))  # finite loss, NaN Adam update
    with pytest.raises(NonFiniteLossError, match=r"parameter weight is nan at step 0"):
        critics.train_critic(x, y, "clip", critic=critic, steps=5, seed=0)


def test_train_critics_names_the_step_of_a_non_finite_loss() -> None:
    from gdmlib import critics
    from gdmlib.training import NonFiniteLossError

    x, y = torch.randn(2, 10, 1), torch.randn(2, 10, 1) + 1
    with pytest.raises(NonFiniteLossError, match=r"at step [0-2]\b"):  # updates overflow
        critics.train_critics(x, y, "clip", hidden=(4,), steps=50, lr=1e38, clip=1e38, seed=0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda c: c.critic_gap(torch.nn.Linear(1, 1), torch.zeros(3), torch.zeros(3).double()),
            TypeError,
            "same dtype",
        ),
        (
            lambda c: c.critic_gap(torch.nn.Linear(1, 1), torch.zeros(1), torch.zeros(3)),
            ValueError,
            "at least 2 points",
        ),
        (lambda c: c.critic_gap("f", torch.zeros(3), torch.zeros(3)), TypeError, "nn.Module"),
        (
            lambda c: c.gradient_norms(torch.nn.Linear(1, 1), torch.zeros(3, 1).double()),
            TypeError,
            "critic's parameters are torch.float32 but points is torch.float64",
        ),
        (
            lambda c: c.train_critic(torch.zeros(3), torch.zeros(3), lr=float("inf")),
            ValueError,
            "lr must be finite",
        ),
        (
            lambda c: c.train_critic(torch.zeros(3), torch.zeros(3), clip="0.1"),
            TypeError,
            "clip must be a number",
        ),
        (
            lambda c: c.train_critics(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), lr=0.0),
            ValueError,
            "lr must be positive",
        ),
    ],
)
def test_critic_functions_reject_bad_inputs(call, error, match) -> None:
    from gdmlib import critics

    with pytest.raises(error, match=match):
        call(critics)
