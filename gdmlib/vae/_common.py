"""Argument checks shared by the modules of :mod:`gdmlib.vae` (private)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from gdmlib._checks import check_positive_int as _check_positive_int

__all__: list[str] = []

LOG_2PI = math.log(2 * math.pi)
Likelihood = Literal["bernoulli", "categorical", "gaussian"]


def _check_latents(z: object, latent_dim: int) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"z must be a tensor, got {type(z).__name__}")
    if z.dim() == 0 or z.shape[-1] != latent_dim:
        raise ValueError(f"z must have shape (..., {latent_dim}), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"z must be a floating tensor, got {z.dtype}")
    return z


def _check_pair_latents(z: object, latent_dim: int) -> Tensor:
    z = _check_latents(z, latent_dim)
    if z.dim() != 2:
        raise ValueError(
            f"z must have shape (G, {latent_dim}): one latent per row, got {tuple(z.shape)}"
        )
    return z


def _check_num_samples(num_samples: object) -> int:
    return _check_positive_int("num_samples", num_samples)


def _check_beta(beta: object) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a number, got {type(beta).__name__}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and non-negative, got {beta}")
    return float(beta)


def _same_device(a: Tensor, b: Tensor, what: str) -> None:
    if a.device != b.device:
        raise ValueError(
            f"{what} are on different devices: {a.device} and {b.device}; move them with .to()"
        )


def _module_device(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_float_data(name: str, x: Tensor, dtype: torch.dtype) -> None:
    """Refuse floating data of another floating dtype than the model's (no silent cast)."""
    if x.is_floating_point() and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model computes in {dtype}; convert one of them "
            f"(e.g. {name}.to({dtype}) or model.to({x.dtype}))"
        )
