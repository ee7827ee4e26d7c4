"""Tests of gdmlib.lipschitz: gradient penalties, weight clipping and input-gradient norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdmlib import lipschitz
from gdmlib.nets import MLP, BatchedMLP


def _reference_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """One sample at a time: the WGAN-GP penalty of Gulrajani et al., algorithm 1."""
    terms = []
    for i in range(real.shape[0]):
        point = (
            (weights[i] * real[i] + (1 - weights[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        )
        (gradient,) = torch.autograd.grad(critic(point).sum(), point)
        terms.append((gradient.flatten().norm() - 1) ** 2)
    return torch.stack(terms).mean()


def test_gradient_penalty_equals_a_per_sample_loop() -> None:
    torch.manual_seed(0)
    critic = MLP(3, 1, hidden=(8,), activation="tanh").double()
    real, fake = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    weights = torch.rand(6, dtype=torch.float64)
    value = lipschitz.gradient_penalty(critic, real, fake, weights=weights)
    torch.testing.assert_close(value, _reference_penalty(critic, real, fake, weights))


def test_batched_gradient_penalty_is_the_mean_of_member_penalties() -> None:
    torch.manual_seed(1)
    critic = BatchedMLP(3, 2, 1, hidden=(8,)).double()
    real, fake = (
        torch.randn(3, 5, 2, dtype=torch.float64),
        torch.randn(3, 5, 2, dtype=torch.float64),
    )
    generator = torch.Generator().manual_seed(0)
    value = lipschitz.batched_gradient_penalty(critic, real, fake, generator)
    weights = torch.rand(15, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = weights.reshape(3, 5)
    members = []
    for k in range(3):

        def member(points: torch.Tensor, k: int = k) -> torch.Tensor:
            stacked = torch.zeros(3, points.shape[0], 2, dtype=points.dtype)
            stacked = stacked.index_copy(0, torch.tensor([k]), points.unsqueeze(0))
            return critic(stacked)[k]

        members.append(_reference_penalty(member, real[k], fake[k], weights[k]))
    torch.testing.assert_close(value, torch.stack(members).mean())


def test_gradient_norms_of_a_linear_critic_and_a_relu_kink() -> None:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
    assert lipschitz.gradient_norms(layer, torch.randn(4, 2)).tolist() == [5.0] * 4
    relu = nn.Sequential(nn.ReLU())  # f(x) = relu(x): slope 0 left of 0, 1 right of it
    norms = lipschitz.gradient_norms(relu, torch.tensor([-1.0, 2.0]))
    assert norms.tolist() == [0.0, 1.0]
    assert relu.training  # the mode is restored


def test_clip_weights_clamps_in_place_and_returns_the_module() -> None:
    net = MLP(2, 1, hidden=(4,))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(100)
    assert lipschitz.clip_weights(net, 0.1) is net
    assert all(parameter.abs().max() <= 0.1 for parameter in net.parameters())


def _critic32() -> nn.Module:
    return nn.Linear(3, 1)


_X = torch.randn(4, 3)
_BAD = [
    # (function, args, kwargs, error, match)
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X.double(), _X.double()),
        {},
        TypeError,
        "critic's parameters are torch.float32 but real is torch.float64",
    ),
    (
        lipschitz.gradient_penalty,
        (_critic32().to("meta"), _X, _X),
        {},
        ValueError,
        "critic's parameters are on meta but real is on cpu",
    ),
    (lipschitz.gradient_penalty, (_critic32(), _X, _X.to("meta")), {}, ValueError, "same device"),
    (lipschitz.gradient_penalty, (_critic32(), _X, _X.double()), {}, TypeError, "same dtype"),
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X, torch.randn(5, 3)),
        {},
        ValueError,
        "same shape",
    ),
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X.long(), _X.long()),
        {},
        TypeError,
        "real must be a floating-point torch.Tensor, got torch.int64",
    ),
    (lipschitz.gradient_penalty, (_critic32(), [1.0], _X), {}, TypeError, "got list"),
    (lipschitz.gradient_penalty, ("critic", _X, _X), {}, TypeError, "critic must be callable"),
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X, _X, 0),
        {},
        TypeError,
        "generator must be a torch.Generator",
    ),
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X, _X),
        {"weights": torch.full((4,), float("nan"))},
        ValueError,
        r"lie in \[0, 1\]",
    ),
    (
        lipschitz.gradient_penalty,
        (_critic32(), _X, _X),
        {"weights": [0.5] * 4},
        TypeError,
        "weights must be a torch.Tensor",
    ),
    (lipschitz.gradient_penalty, (nn.Linear(3, 2), _X, _X), {}, ValueError, "one score per sample"),
    (
        lipschitz.gradient_penalty,
        (_critic32(), torch.zeros(0, 3), torch.zeros(0, 3)),
        {},
        ValueError,
        "non-empty batches",
    ),
    (
        lipschitz.batched_gradient_penalty,
        (BatchedMLP(2, 3, 1), _X, _X),
        {},
        ValueError,
        r"shape \(members, N, d\)",
    ),
    (
        lipschitz.batched_gradient_penalty,
        (BatchedMLP(2, 3, 1), torch.randn(2, 4, 3).double(), torch.randn(2, 4, 3).double()),
        {},
        TypeError,
        "critic's parameters are torch.float32 but real is torch.float64",
    ),
    (
        lipschitz.batched_gradient_penalty,
        (nn.Linear(3, 2), torch.randn(2, 4, 3), torch.randn(2, 4, 3)),
        {},
        ValueError,
        "one score per",
    ),
    (lipschitz.clip_weights, ("net", 0.1), {}, TypeError, "module must be an nn.Module"),
    (lipschitz.clip_weights, (_critic32(), 0.0), {}, ValueError, "positive finite number"),
    (lipschitz.clip_weights, (_critic32(), float("nan")), {}, ValueError, "positive finite number"),
    (lipschitz.clip_weights, (_critic32(), True), {}, ValueError, "positive finite number"),
    (
        lipschitz.gradient_norms,
        (_critic32(), _X.double()),
        {},
        TypeError,
        "critic's parameters are torch.float32 but points is torch.float64",
    ),
    (
        lipschitz.gradient_norms,
        (_critic32().to("meta"), _X),
        {},
        ValueError,
        "critic's parameters are on meta but points is on cpu",
    ),
    (lipschitz.gradient_norms, (_critic32(), _X.long()), {}, TypeError, "floating-point"),
    (lipschitz.gradient_norms, (_critic32(), torch.zeros(0, 3)), {}, ValueError, "N >= 1"),
    (lipschitz.gradient_norms, (lambda x: x, _X), {}, TypeError, "critic must be an nn.Module"),
]


@pytest.mark.parametrize(("function", "args", "kwargs", "error", "match"), _BAD)
def test_bad_inputs_are_refused_with_a_clear_message(function, args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        function(*args, **kwargs)


def test_gradient_penalty_on_the_accelerator_matches_the_cpu(device: torch.device) -> None:
    torch.manual_seed(2)
    critic = MLP(3, 1, hidden=(8,), activation="tanh")
    real, fake, weights = torch.randn(6, 3), torch.randn(6, 3), torch.rand(6)
    expected = lipschitz.gradient_penalty(critic, real, fake, weights=weights)
    value = lipschitz.gradient_penalty(
        critic.to(device), real.to(device), fake.to(device), weights=weights
    )  # CPU weights are moved
    assert value.device.type == device.type
    torch.testing.assert_close(value.cpu(), expected, rtol=1e-5, atol=1e-6)
