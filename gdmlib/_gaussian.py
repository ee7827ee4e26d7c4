r"""Diagonal Gaussians, the building block of every encoder (private: vae and dequantization use
it).

Used by :mod:`gdmlib.vae`, :mod:`gdmlib.dequantization`, :mod:`gdmlib.toy` and :mod:`gdmlib.plot`
(not by the chapters).

- :func:`log_prob`: :math:`\log \mathcal{N}(z; \mu, \mathrm{diag}\,\sigma^2)`, summed over the last
  dimension;
- :func:`rsample`: reparametrised draws :math:`z = \mu + \sigma \odot \varepsilon`;
- :func:`kl_standard_normal`:
  :math:`\mathrm{KL}(\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2) \,\|\, \mathcal{N}(0, I))
  = \tfrac12 \sum_d (\mu_d^2 + \sigma_d^2 - 1 - \log \sigma_d^2)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["kl_standard_normal", "log_prob", "rsample"]

_LOG_2PI = math.log(2 * math.pi)


def log_prob(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log-density of ``z`` under the diagonal Gaussians ``(loc, scale)`` (broadcast), summed over
    the last dimension."""
    return -0.5 * (((z - loc) / scale).square() + 2 * torch.log(scale) + _LOG_2PI).sum(-1)


def rsample(
    loc: Tensor, scale: Tensor, num_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """``num_samples`` reparametrised draws, shape ``(num_samples, *loc.shape)``."""
    eps = torch.randn(
        (num_samples, *loc.shape), generator=generator, device=loc.device, dtype=loc.dtype
    )
    return loc + scale * eps


def kl_standard_normal(loc: Tensor, scale: Tensor) -> Tensor:
    """Closed-form KL to :math:`\\mathcal{N}(0, I)`, summed over the last dimension."""
    return 0.5 * (loc.square() + scale.square() - 1 - 2 * torch.log(scale)).sum(-1)
