"""Argument checks shared by the gdmlib modules (private: the public functions call them)."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["check_batch", "check_input_shape", "check_positive_int"]


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) of at least ``minimum``.

    Raises:
        TypeError: If it is not an integer.
        ValueError: If it is below ``minimum``; the message names the argument.

    Example:
        >>> check_positive_int("steps", 3)
        3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        expected = "a positive int" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def check_input_shape(shape: object) -> tuple[int, ...]:
    """The shape of one data point as a tuple of positive ints (an int ``n`` means ``(n,)``)."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not shape:
        raise TypeError(f"input_shape must be a non-empty tuple of ints such as (1, 8, 8), got {shape!r}")
    return tuple(check_positive_int("every entry of input_shape", size) for size in shape)


def check_batch(name: str, x: object, shape: tuple[int, ...]) -> Tensor:
    """``x`` if it is a non-empty batch of data points of shape ``shape``: ``(B, *shape)``, ``B >= 1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    return x
