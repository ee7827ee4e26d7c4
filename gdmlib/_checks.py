"""Argument checks shared by the gdmlib modules (private: the public functions call them).

Used by every public module of gdmlib (not by the chapters).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = [
    "check_bandwidth",
    "check_batch",
    "check_input_shape",
    "check_positive_int",
    "check_positive_number",
    "check_probability",
    "check_same_dtype_and_device",
    "check_sample_pair",
    "check_seed",
]


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
        raise TypeError(
            f"input_shape must be a non-empty tuple of ints such as (1, 8, 8), got {shape!r}"
        )
    return tuple(check_positive_int("every entry of input_shape", size) for size in shape)


def check_batch(name: str, x: object, shape: tuple[int, ...]) -> Tensor:
    """``x`` if it is a non-empty batch of data points of shape ``shape``: ``(B, *shape)``, ``B >=
    1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    return x


def check_positive_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) above 0 (or at least 0).

    Raises:
        TypeError: If it is not a real number (bools, strings and tensors are refused).
        ValueError: If it is NaN, infinite, negative, or zero when ``allow_zero`` is false.

    Example:
        >>> check_positive_number("lr", 1e-3)
        0.001
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(
            f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}"
        )
    return float(value)


def check_probability(name: str, value: object, *, open_interval: bool = True) -> float:
    """``value`` as a ``float`` if it lies in (0, 1) (or [0, 1] when ``open_interval`` is false).

    Example:
        >>> check_probability("alpha", 0.05)
        0.05
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    inside = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not inside:
        raise ValueError(
            f"{name} must lie in {'(0, 1)' if open_interval else '[0, 1]'}, got {value!r}"
        )
    return float(value)


def check_same_dtype_and_device(x: Tensor, y: Tensor) -> None:
    """Refuse two tensors of different dtypes (TypeError) or on different devices (ValueError).

    Example:
        >>> check_same_dtype_and_device(torch.zeros(2), torch.ones(3))
    """
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")


def check_sample_pair(
    x: object, y: object, *, min_points: int = 2, finite: bool = True
) -> tuple[Tensor, Tensor]:
    """Two samples as ``(n, d)`` and ``(m, d)`` tensors (``(n,)`` means points on the line).

    Both must be floating tensors of one dtype on one device, with the same dimension ``d`` and at
    least ``min_points`` points each, and (when ``finite``) only finite values.

    Raises:
        TypeError: For a non-tensor, an integer dtype, or two dtypes.
        ValueError: For a bad shape, two devices, two dimensions, too few points or NaN/inf.

    Example:
        >>> x, y = check_sample_pair(torch.zeros(5), torch.ones(3))
        >>> tuple(x.shape), tuple(y.shape)
        ((5, 1), (3, 1))
    """
    for name, sample in (("x", x), ("y", y)):
        if not isinstance(sample, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(sample).__name__}")
        if not sample.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {sample.dtype}")
        if sample.dim() not in (1, 2):
            raise ValueError(
                f"{name} must have shape (n, d), or (n,) for points on the line, got "
                f"{tuple(sample.shape)}"
            )
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    check_same_dtype_and_device(x, y)
    if x.dim() != y.dim():
        raise ValueError(
            f"x and y must both be (n, d) or both (n,), got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if x.dim() == 1:
        x, y = x.unsqueeze(-1), y.unsqueeze(-1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension d, got {x.shape[1]} and {y.shape[1]}"
        )
    if x.shape[0] < min_points or y.shape[0] < min_points:
        raise ValueError(
            f"x and y need at least {min_points} points each, got {x.shape[0]} and {y.shape[0]}"
        )
    if finite and not (torch.isfinite(x.detach()).all() and torch.isfinite(y.detach()).all()):
        raise ValueError("x and y must contain only finite values (no NaN or inf)")
    return x, y


def check_bandwidth(bandwidth: object, name: str = "bandwidth") -> float:
    """A kernel bandwidth as a ``float``: a finite real number above 0 (bools and tensors refused).

    Raises:
        TypeError: If it is not a real number.
        ValueError: If it is NaN, infinite, zero or negative.

    Example:
        >>> check_bandwidth(0.5)
        0.5
    """
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(bandwidth).__name__}")
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"{name} must be a finite positive number, got {bandwidth!r}")
    return float(bandwidth)


def check_seed(seed: object, name: str = "seed") -> int | None:
    """``seed`` as an ``int`` if it is ``None`` or a non-negative integer (not a bool, not a float).

    Raises:
        TypeError: If it is neither ``None`` nor an integer (``1.5`` is refused, not truncated).
        ValueError: If it is negative.

    Example:
        >>> check_seed(3), check_seed(None)
        (3, None)
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be non-negative, got {seed}")
    return int(seed)
