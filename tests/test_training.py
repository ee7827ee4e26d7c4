"""Tests of gdmlib.training's tools around the loops: ``every`` and ``parameter_gradient_norms``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gdmlib import gan, training


def _fired(callback_factory, steps: int) -> list[int]:
    fired: list[int] = []
    callback = callback_factory(lambda step, history: fired.append(step))
    for step in range(steps):
        callback(step, None)
    return fired


@pytest.mark.parametrize(
    ("period", "offset", "final_step", "steps", "expected"),
    [
        (4, 0, None, 10, [0, 4, 8]),
        (4, 0, 9, 10, [0, 4, 8, 9]),
        (4, 0, 8, 10, [0, 4, 8]),  # the final step is not called twice
        (5, 4, None, 15, [4, 9, 14]),  # after 5, 10, 15 completed steps
        (1, 0, None, 3, [0, 1, 2]),
        (3, 7, None, 8, [7]),
    ],
)
def test_every_fires_on_its_grid_and_at_the_final_step(
    period: int, offset: int, final_step: int | None, steps: int, expected: list[int]
) -> None:
    factory = lambda f: training.every(period, f, offset=offset, final_step=final_step)  # noqa: E731
    assert _fired(factory, steps) == expected


def test_every_passes_the_history_through_train_adversarial() -> None:
    torch.manual_seed(0)
    generator, critic = nn.Linear(1, 1), nn.Linear(1, 1)
    seen: list[tuple[int, int]] = []
    gan.train_adversarial(
        generator,
        critic,
        sample_real=lambda: torch.randn(8, 1),
        sample_noise=lambda: torch.randn(8, 1),
        steps=7,
        g_opt=torch.optim.SGD(generator.parameters(), lr=0.01),
        d_opt=torch.optim.SGD(critic.parameters(), lr=0.01),
        progress=False,
        callback=training.every(3, lambda s, h: seen.append((s, len(h.generator_loss)))),
    )
    assert seen == [(0, 1), (3, 4), (6, 7)]


def test_parameter_gradient_norms_match_the_hand_computed_gradients() -> None:
    weight = nn.Parameter(torch.tensor([[1.0, 2.0]]))
    bias = nn.Parameter(torch.tensor([0.5]))
    other = nn.Parameter(torch.tensor([3.0]))
    x = torch.tensor([[3.0, 4.0]])
    loss = ((x @ weight.T + bias) ** 2).sum() + other.detach().sum()
    norms = training.parameter_gradient_norms(loss, {"linear": [weight, bias], "other": [other]})
    residual = 1.0 * 3 + 2.0 * 4 + 0.5  # d loss / d(w, b) = 2 r (x, 1)
    assert norms["linear"] == pytest.approx(2 * residual * math.sqrt(3**2 + 4**2 + 1), rel=1e-12)
    assert norms["other"] == 0.0  # detached: no gradient reaches it
    # The graph is kept: a second call on the same loss works.
    assert training.parameter_gradient_norms(loss, {"w": [weight]})["w"] > 0


_BAD_CALLS = [
    (lambda: training.every(0, print), ValueError, "period must be a positive int"),
    (lambda: training.every(2.5, print), TypeError, "period must be an int"),
    (lambda: training.every(2, "print"), TypeError, "callback must be callable"),
    (lambda: training.every(2, print, offset=-1), ValueError, "offset must be at least 0"),
    (lambda: training.every(2, print, final_step=-3), ValueError, "final_step must be at least 0"),
    (
        lambda: training.parameter_gradient_norms(
            torch.tensor(1.0), {"a": [nn.Parameter(torch.ones(1))]}
        ),
        ValueError,
        "requires grad",
    ),
    (lambda: training.parameter_gradient_norms(1.0, {}), TypeError, "loss must be a torch.Tensor"),
    (
        lambda: training.parameter_gradient_norms(nn.Parameter(torch.ones(1)).sum(), {}),
        ValueError,
        "non-empty dict",
    ),
    (
        lambda: training.parameter_gradient_norms(nn.Parameter(torch.ones(1)).sum(), {"a": []}),
        ValueError,
        "group 'a' has no parameters",
    ),
    (
        lambda: training.parameter_gradient_norms(nn.Parameter(torch.ones(1)).sum(), {"a": [1.0]}),
        TypeError,
        "group 'a' must hold tensors",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), _BAD_CALLS)
def test_bad_input_is_refused_with_a_clear_message(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
