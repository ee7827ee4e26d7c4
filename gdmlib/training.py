r"""Guards shared by every training loop: a loss or a parameter that is no longer finite stops training.

A NaN or an infinity in a loss poisons every parameter at the next step, and a loop that goes on
returns a model that silently computes NaN (or, worse, finite values from non-finite parameters).
Every training loop of gdmlib — adversarial (:func:`gdmlib.gan.train_adversarial`), critics
(:mod:`gdmlib.critics`), classifiers (:mod:`gdmlib.two_sample`), VAEs and flows
(:func:`gdmlib.vae.fit`) — checks its losses *before* the backward pass with :func:`finite_loss`
and its parameters after the update with :func:`check_finite_parameters`, and raises one error
type, :class:`NonFiniteLossError`, naming the step and the quantity.

Example:
    >>> import torch
    >>> finite_loss(torch.tensor(0.5), step=3, name="critic")
    0.5
    >>> try:
    ...     finite_loss(torch.tensor(float("nan")), step=3, name="critic")
    ... except NonFiniteLossError as error:
    ...     print(error.step, error.loss)
    3 critic
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["NonFiniteLossError", "check_finite_parameters", "finite_loss"]

_DEFAULT_HINT = "lower the learning rate or check the data for NaN/inf"


class NonFiniteLossError(FloatingPointError):
    """A loss (or a parameter) became NaN or infinite during training.

    Raised by the loops *before* the offending backward pass when a loss is not finite, so the
    models hold the last finite parameters; after the update when a parameter is not finite.

    Attributes:
        step: The step (0-based) at which it happened.
        loss: Which quantity: a loss name (``"critic"``, ``"generator"``, ``"training"``...) or
            ``"parameter NAME"``.
        value: The non-finite value.
    """

    def __init__(self, step: int, loss: str, value: float, detail: str = "", hint: str = _DEFAULT_HINT) -> None:
        self.step, self.loss, self.value = step, loss, value
        what = loss if loss.startswith("parameter ") else f"{loss} loss"
        super().__init__(f"{what} is {value} at step {step}{detail}; {hint}")


def finite_loss(loss: object, step: int, name: str, detail: str = "", hint: str = _DEFAULT_HINT) -> float:
    """The value of a scalar loss tensor, or :class:`NonFiniteLossError` if it is NaN or infinite.

    Args:
        loss: The loss, a tensor with one element.
        step: The training step, for the message.
        name: Which loss, for the message.
        detail: Appended after the step (e.g. ``" (critic update 1 of 5)"``).
        hint: What to try, appended to the message.

    Raises:
        ValueError: If ``loss`` is not a one-element tensor.
        NonFiniteLossError: If it is not finite.
    """
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"the {name} loss function must return a scalar tensor, got {loss!r:.80}")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(step, name, value, detail, hint)
    return value


def check_finite_parameters(module: nn.Module, step: int, hint: str = _DEFAULT_HINT) -> None:
    """Raise :class:`NonFiniteLossError` naming the first parameter of ``module`` that is not finite.

    One fused reduction over all parameters, so the common (finite) case costs one host sync.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        NonFiniteLossError: If a parameter holds NaN or inf.

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> check_finite_parameters(layer, step=0)
        >>> with torch.no_grad():
        ...     _ = layer.bias.fill_(float("inf"))
        ...     try:
        ...         check_finite_parameters(layer, step=7)
        ...     except NonFiniteLossError as error:
        ...         print(error)
        parameter bias is inf at step 7; lower the learning rate or check the data for NaN/inf
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    parameters = [(name, p) for name, p in module.named_parameters() if p.numel()]
    if not parameters:
        return
    with torch.no_grad():
        all_finite = torch.stack([torch.isfinite(p).all() for _, p in parameters]).all()
    if bool(all_finite):
        return
    for name, parameter in parameters:
        bad = parameter.detach()[~torch.isfinite(parameter.detach())]
        if bad.numel():
            raise NonFiniteLossError(step, f"parameter {name}", float(bad.flatten()[0]), hint=hint)
