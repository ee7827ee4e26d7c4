r"""Decoders :math:`p_\theta(x \mid z)` of a VAE: Bernoulli, categorical and Gaussian pixels.

Every decoder has ``log_prob(x, z)`` (summed over pixels), ``log_prob_pairs(x, z)`` (every data
point against every latent, for quadrature), ``mean(z)`` and ``sample(z)``; :func:`make_decoder`
picks one by likelihood name. Used by chapters 10 and 11 (through :class:`gdmlib.vae.VAE`) and 12
(the decoders of :mod:`gdmlib.discrete`).

Device and dtype: ``x`` must be on the latents' device; floating ``x`` must have the decoder's
dtype (Bernoulli and Gaussian), and Bernoulli data must lie in :math:`[0, 1]`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_batch as _check_batch
from gdmlib._checks import check_input_shape as _check_shape
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib._checks import check_positive_number as _check_positive_number
from gdmlib.nets import MLP, Activation
from gdmlib.vae._common import (
    Likelihood,
    _check_float_data,
    _check_latents,
    _check_pair_latents,
    _same_device,
)

__all__ = ["BernoulliDecoder", "CategoricalDecoder", "Decoder", "GaussianDecoder", "make_decoder"]


class Decoder(nn.Module):
    r"""Base class of the decoders: an MLP maps :math:`z` to the parameters of :math:`p(x \mid z)`.

    Pixels are conditionally independent given :math:`z`; ``log_prob`` sums their log-likelihoods.

    Args:
        latent_dim: Dimension of :math:`z`.
        output_shape: Shape of one data point.
        params_per_pixel: Outputs of the network per pixel.
        hidden, activation: The MLP's.
        net: A network to use instead of the MLP, mapping ``(..., latent_dim)`` to
            ``(..., params_per_pixel * prod(output_shape))``.
    """

    def __init__(
        self,
        latent_dim: int,
        output_shape: Sequence[int],
        params_per_pixel: int = 1,
        *,
        hidden: Sequence[int] = (256,),
        activation: Activation = "relu",
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.output_shape = _check_shape(output_shape)
        self.num_pixels = math.prod(self.output_shape)
        self.params_per_pixel = params_per_pixel
        self.net = (
            net
            if net is not None
            else MLP(latent_dim, params_per_pixel * self.num_pixels, hidden, activation)
        )

    def _raw(self, z: Tensor) -> Tensor:
        """Network output, reshaped to ``(..., params_per_pixel, num_pixels)``."""
        _check_latents(z, self.latent_dim)
        return self.net(z).unflatten(-1, (self.params_per_pixel, self.num_pixels))

    def _flat_x(self, x: Tensor, z: Tensor) -> Tensor:
        x = _check_batch("x", x, self.output_shape)
        _same_device(x, z, "x and z")
        if z.dim() < 2 or z.shape[-2] != x.shape[0]:
            raise ValueError(
                f"z must have shape (..., {x.shape[0]}, {self.latent_dim}) for a batch of "
                f"{x.shape[0]}"
            )
        return x.flatten(1)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """:math:`\\log p(x \\mid z)` summed over pixels: ``x`` ``(B, *shape)``, ``z`` ``(..., B,
        D)`` → ``(..., B)``."""
        raise NotImplementedError

    def log_prob_pairs(self, x: Tensor, z: Tensor, *, chunk_size: int = 1024) -> Tensor:
        """:math:`\\log p(x_b \\mid z_g)` for every data point and latent: ``x`` ``(B, *shape)``,
        ``z`` ``(G, D)`` → ``(B, G)``.

        The generic version evaluates :meth:`log_prob` on ``chunk_size`` latents at a time;
        subclasses whose likelihood is linear in a one-hot or binary ``x`` use a matrix product.
        """
        x = _check_batch("x", x, self.output_shape)
        _check_pair_latents(z, self.latent_dim)
        chunk_size = _check_positive_int("chunk_size", chunk_size)
        columns = []
        for start in range(0, z.shape[0], chunk_size):
            block = z[start : start + chunk_size]
            columns.append(self.log_prob(x, block[:, None, :].expand(-1, x.shape[0], -1)).T)
        return torch.cat(columns, 1)

    def mean(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """:math:`\\mathbb{E}[x \\mid z]`, shape ``(..., *output_shape)``."""
        raise NotImplementedError

    def sample(
        self, z: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:  # pragma: no cover
        """A draw :math:`x \\sim p(x \\mid z)`, shape ``(..., *output_shape)``."""
        raise NotImplementedError


class BernoulliDecoder(Decoder):
    r"""Binary pixels:
    :math:`p(x \mid z) = \prod_i \mathrm{Bernoulli}(x_i; \mathrm{sigmoid}(\ell_i(z)))`.

    The log-likelihood is computed from the logits (``binary_cross_entropy_with_logits``), which
    is exact where :math:`\log \mathrm{sigmoid}` of a large logit would round to 0.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], **kwargs) -> None:
        super().__init__(latent_dim, output_shape, 1, **kwargs)

    def _binary_target(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        _check_float_data("x", x, dtype)
        if not bool(((x >= 0) & (x <= 1)).all()):
            bad = x[~((x >= 0) & (x <= 1))].flatten()[0]
            raise ValueError(
                f"Bernoulli data x must lie in [0, 1], got a value {float(bad)}; binarise or "
                "rescale it, or use likelihood='categorical' or 'gaussian'"
            )
        return x.flatten(1).to(dtype)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        self._flat_x(x, z)
        logits = self._raw(z)[..., 0, :]
        target = self._binary_target(x, logits.dtype).expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def log_prob_pairs(self, x: Tensor, z: Tensor, *, chunk_size: int = 1024) -> Tensor:
        # log Bernoulli(x; sigmoid(l)) = x l - softplus(l): one matrix product for all pairs.
        x = _check_batch("x", x, self.output_shape)
        _check_pair_latents(z, self.latent_dim)
        _same_device(x, z, "x and z")
        logits = self._raw(z)[..., 0, :]  # (G, P)
        return self._binary_target(x, logits.dtype) @ logits.T - F.softplus(logits).sum(-1)

    def mean(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self._raw(z)[..., 0, :]).unflatten(-1, self.output_shape)

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        probs = self.mean(z)
        return (
            torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
            < probs
        ).to(probs.dtype)


class CategoricalDecoder(Decoder):
    r"""Pixels with ``levels`` values :math:`0, \dots, L-1` (the 17 grey levels of the digits):
    :math:`p(x \mid z) = \prod_i \mathrm{Categorical}(x_i; \mathrm{softmax}(\ell_i(z)))`.

    ``x`` holds the integer levels (any dtype holding integers, e.g. ``digits(levels=True)``);
    ``mean`` is the expected level.
    """

    def __init__(
        self, latent_dim: int, output_shape: Sequence[int], levels: int = 17, **kwargs
    ) -> None:
        self.levels = _check_positive_int("levels", levels)
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        super().__init__(latent_dim, output_shape, levels, **kwargs)

    def _levels(self, flat: Tensor) -> Tensor:
        if flat.is_floating_point() and not torch.equal(flat, flat.round()):
            raise ValueError(
                "a categorical decoder needs integer levels in x (use digits(levels=True))"
            )
        flat = flat.long()
        if flat.min() < 0 or flat.max() >= self.levels:
            raise ValueError(f"levels in x must lie in 0..{self.levels - 1}")
        return flat

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        target = self._levels(self._flat_x(x, z))
        log_probs = torch.log_softmax(self._raw(z), dim=-2)  # (..., L, P)
        index = target.expand(*log_probs.shape[:-2], -1).unsqueeze(-2)
        return log_probs.gather(-2, index).squeeze(-2).sum(-1)

    def log_prob_pairs(self, x: Tensor, z: Tensor, *, chunk_size: int = 1024) -> Tensor:
        # The log-likelihood is linear in the one-hot levels: one matrix product for all pairs.
        x = _check_batch("x", x, self.output_shape)
        _check_pair_latents(z, self.latent_dim)
        _same_device(x, z, "x and z")
        log_probs = torch.log_softmax(self._raw(z), dim=-2)  # (G, L, P)
        one_hot = F.one_hot(self._levels(x.flatten(1)), self.levels).transpose(1, 2)  # (B, L, P)
        return one_hot.flatten(1).to(log_probs.dtype) @ log_probs.flatten(1).T

    def mean(self, z: Tensor) -> Tensor:
        probs = torch.softmax(self._raw(z), dim=-2)
        grid = torch.arange(self.levels, device=probs.device, dtype=probs.dtype)
        return (probs * grid[:, None]).sum(-2).unflatten(-1, self.output_shape)

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        logits = self._raw(z).transpose(-1, -2)  # (..., P, L)
        flat = torch.multinomial(
            torch.softmax(logits.reshape(-1, self.levels), -1), 1, generator=generator
        )
        return flat.reshape(logits.shape[:-1]).unflatten(-1, self.output_shape)


class GaussianDecoder(Decoder):
    r"""Real pixels: :math:`p(x \mid z) = \prod_i \mathcal{N}(x_i; \mu_i(z), \sigma_i^2)` with a
    learned per-pixel scale :math:`\sigma_i = e^{s_i}` that does not depend on :math:`z`
    (``learn_scale=False`` fixes :math:`\sigma_i = ` ``scale``)."""

    def __init__(
        self,
        latent_dim: int,
        output_shape: Sequence[int],
        *,
        scale: float = 0.1,
        learn_scale: bool = True,
        **kwargs,
    ) -> None:
        scale = _check_positive_number("scale", scale)
        if not isinstance(learn_scale, bool):
            raise TypeError(f"learn_scale must be a bool, got {type(learn_scale).__name__}")
        super().__init__(latent_dim, output_shape, 1, **kwargs)
        log_scale = torch.full((self.num_pixels,), math.log(scale))
        self.log_scale = nn.Parameter(log_scale, requires_grad=bool(learn_scale))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        target = self._flat_x(x, z)
        loc = self._raw(z)[..., 0, :]
        _check_float_data("x", x, loc.dtype)
        return gaussian.log_prob(target.to(loc.dtype), loc, torch.exp(self.log_scale))

    def mean(self, z: Tensor) -> Tensor:
        return self._raw(z)[..., 0, :].unflatten(-1, self.output_shape)

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        loc = self._raw(z)[..., 0, :]
        noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        return (loc + torch.exp(self.log_scale) * noise).unflatten(-1, self.output_shape)


def make_decoder(
    likelihood: Likelihood,
    latent_dim: int,
    output_shape: Sequence[int],
    *,
    levels: int = 17,
    hidden: Sequence[int] = (256,),
    activation: Activation = "relu",
    net: nn.Module | None = None,
) -> Decoder:
    """The decoder for a likelihood name: ``"bernoulli"``, ``"categorical"`` (``levels``) or
    ``"gaussian"``.

    Other arguments go to the decoder's constructor (``net`` replaces its MLP).

    Raises:
        ValueError: On an unknown likelihood.

    Example:
        >>> type(make_decoder("categorical", 2, (1, 8, 8), hidden=(8,))).__name__
        'CategoricalDecoder'
    """
    if likelihood == "categorical":
        return CategoricalDecoder(
            latent_dim, output_shape, levels, hidden=hidden, activation=activation, net=net
        )
    decoders = {"bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder}
    if likelihood not in decoders:
        raise ValueError(
            f"likelihood must be 'bernoulli', 'categorical' or 'gaussian', got {likelihood!r}"
        )
    return decoders[likelihood](
        latent_dim, output_shape, hidden=hidden, activation=activation, net=net
    )
