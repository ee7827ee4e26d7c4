r"""Variational autoencoders: posteriors, decoders, priors, the ELBO, the IWAE bound and ELBO surgery.

A VAE models data :math:`x` with a latent :math:`z`, a prior :math:`p(z)` and a decoder
:math:`p_\theta(x \mid z)`, and fits them with an encoder :math:`q_\phi(z \mid x)` by maximising the
evidence lower bound

.. math::
    \log p_\theta(x) \;\ge\; \mathcal{L}_\beta(x) =
    \mathbb{E}_{q_\phi(z \mid x)}\bigl[\log p_\theta(x \mid z)\bigr]
    - \beta\, \mathrm{KL}\bigl(q_\phi(z \mid x) \,\|\, p(z)\bigr)

(Kingma & Welling 2014; :math:`\beta = 1` is the ELBO, :math:`\beta \ne 1` the β-VAE objective of
Higgins et al. 2017). **Reduction convention**: the KL and the reconstruction term are *summed*
over latent dimensions and pixels, and the per-data-point bounds are *averaged* over the batch.
Summing over the batch or averaging over latent dimensions silently rescales β (the classic bug).

The pieces share small interfaces so that they can be swapped:

- posteriors (``rsample_and_log_prob(x, num_samples)``): :class:`GaussianPosterior` and
  :class:`IAFPosterior` (a Gaussian followed by an inverse autoregressive flow, Kingma et al. 2016);
- decoders (``log_prob(x, z)``, ``mean(z)``, ``sample(z)``): :class:`BernoulliDecoder`,
  :class:`CategoricalDecoder` (the 17 grey levels of the digits), :class:`GaussianDecoder`;
- priors (``log_prob(z)``, ``sample(n)``): :class:`StandardNormalPrior`, :class:`MixturePrior`,
  :class:`VampPrior` (Tomczak & Welling 2018), :class:`FlowPrior`, and
  :class:`AggregatePosterior`, the optimal prior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)`;
- :class:`VAE` puts them together (:meth:`~VAE.elbo`, :meth:`~VAE.iwae_bound`, :meth:`~VAE.loss`),
  :func:`make_vae` builds the usual MLP models, :func:`fit` trains anything with a ``loss(x)``;
- :func:`elbo_surgery` splits the average KL of a trained model exactly (Hoffman & Johnson 2016),

  .. math::
      \frac1N \sum_{n=1}^N \mathrm{KL}\bigl(q(z \mid x_n) \,\|\, p(z)\bigr)
      = \underbrace{I_q(n; z)}_{\le \log N} + \mathrm{KL}\bigl(q(z) \,\|\, p(z)\bigr),

  and :func:`elbo_surgery_on_grid` computes the two terms independently, by quadrature, for a 1- or
  2-dimensional latent.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = (torch.rand(32, 1, 8, 8) < 0.3).float()
    >>> model = make_vae((1, 8, 8), latent_dim=2, likelihood="bernoulli", hidden=(32,))
    >>> terms = model.elbo(x)
    >>> terms.value.shape, bool(terms.value <= 0), bool(terms.kl >= 0)
    (torch.Size([]), True, True)
    >>> model.iwae_bound(x, num_samples=16).shape
    torch.Size([32])

References:
    Kingma, Welling. Auto-encoding variational Bayes. ICLR 2014.

    Burda, Grosse, Salakhutdinov. Importance weighted autoencoders. ICLR 2016.

    Higgins et al. β-VAE: learning basic visual concepts with a constrained variational framework.
    ICLR 2017.

    Hoffman, Johnson. ELBO surgery: yet another way to carve up the variational evidence lower
    bound. NeurIPS Workshop on Advances in Approximate Bayesian Inference, 2016.

    Tomczak, Welling. VAE with a VampPrior. AISTATS 2018.

    Trefethen, Weideman. The exponentially convergent trapezoidal rule. SIAM Review 56(3), 2014.

    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved variational inference with
    inverse autoregressive flow. NeurIPS 2016.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_batch as _check_batch
from gdmlib._checks import check_input_shape as _check_shape
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.divergences import Estimate
from gdmlib.flows import Flow, Transform, iaf, maf
from gdmlib.gan import NonFiniteLossError
from gdmlib.nets import MLP, Activation
from gdmlib.runtime import progress as progress_bar

__all__ = [
    "ELBO",
    "AggregatePosterior",
    "BernoulliDecoder",
    "CategoricalDecoder",
    "Decoder",
    "FitHistory",
    "FlowPrior",
    "GaussianDecoder",
    "GaussianPosterior",
    "IAFPosterior",
    "MixturePrior",
    "Prior",
    "StandardNormalPrior",
    "VAE",
    "VampPrior",
    "elbo_surgery",
    "elbo_surgery_on_grid",
    "fit",
    "flow_as_vae_elbo",
    "gaussian_log_prob_pairwise",
    "importance_weighted_bound",
    "log_marginal_on_grid",
    "make_decoder",
    "make_vae",
]

_LOG_2PI = math.log(2 * math.pi)
Likelihood = Literal["bernoulli", "categorical", "gaussian"]


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------



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
        raise ValueError(f"z must have shape (G, {latent_dim}): one latent per row, got {tuple(z.shape)}")
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
        raise ValueError(f"{what} are on different devices: {a.device} and {b.device}; move them with .to()")


def _module_device(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def gaussian_log_prob_pairwise(z: Tensor, loc: Tensor, scale: Tensor, *, chunk_size: int = 256) -> Tensor:
    r"""All pairs :math:`\log \mathcal{N}(z_m; \mu_n, \mathrm{diag}\,\sigma_n^2)`, an ``(M, N)`` matrix.

    Computed in chunks of ``chunk_size`` rows of ``z`` so that the ``(chunk, N, D)`` intermediate
    stays small; this is what makes an exact aggregated posterior over a whole dataset affordable.

    Args:
        z: Points, shape ``(M, D)``.
        loc, scale: Means and standard deviations of ``N`` diagonal Gaussians, shape ``(N, D)``.
        chunk_size: Rows of ``z`` per chunk.

    Example:
        >>> z = torch.zeros(3, 2)
        >>> gaussian_log_prob_pairwise(z, torch.zeros(4, 2), torch.ones(4, 2)).shape
        torch.Size([3, 4])
    """
    if not all(isinstance(t, Tensor) for t in (z, loc, scale)):
        raise TypeError("z, loc and scale must be tensors")
    if z.dim() != 2 or loc.dim() != 2 or loc.shape != scale.shape or z.shape[1] != loc.shape[1]:
        raise ValueError(
            f"expected z of shape (M, D) and loc, scale of shape (N, D); got {tuple(z.shape)}, "
            f"{tuple(loc.shape)}, {tuple(scale.shape)}"
        )
    _same_device(z, loc, "z and loc")
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    log_norm = -(torch.log(scale).sum(-1) + 0.5 * loc.shape[1] * _LOG_2PI)  # (N,)
    inv_scale = scale.reciprocal()
    rows = []
    for start in range(0, z.shape[0], chunk_size):
        block = z[start : start + chunk_size, None, :]  # (c, 1, D)
        rows.append(-0.5 * ((block - loc) * inv_scale).square().sum(-1) + log_norm)
    return torch.cat(rows, 0) if rows else z.new_zeros(0, loc.shape[0])


# ---------------------------------------------------------------------------------------------
# Posteriors q(z | x)
# ---------------------------------------------------------------------------------------------


class GaussianPosterior(nn.Module):
    r"""A diagonal Gaussian encoder :math:`q_\phi(z \mid x) = \mathcal{N}(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi^2(x))`.

    An MLP reads the flattened input and outputs :math:`(\mu, \log \sigma)`; samples are
    reparametrised, :math:`z = \mu + \sigma \odot \varepsilon`.

    Args:
        input_shape: Shape of one data point, e.g. ``(1, 8, 8)``.
        latent_dim: Dimension of :math:`z`.
        hidden: Hidden widths of the MLP.
        activation: Its nonlinearity.
        context_features: Extra outputs :math:`h(x)` for a flow stacked on top (0: none).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> encoder = GaussianPosterior((1, 8, 8), latent_dim=3, hidden=(16,))
        >>> z, log_q = encoder.rsample_and_log_prob(torch.rand(5, 1, 8, 8), num_samples=2)
        >>> z.shape, log_q.shape
        (torch.Size([2, 5, 3]), torch.Size([2, 5]))
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        hidden: Sequence[int] = (256,),
        activation: Activation = "relu",
        context_features: int = 0,
    ) -> None:
        super().__init__()
        self.input_shape = _check_shape(input_shape)
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        if isinstance(context_features, bool) or not isinstance(context_features, int) or context_features < 0:
            raise ValueError(f"context_features must be a non-negative int, got {context_features!r}")
        self.context_features = context_features
        self.net = MLP(math.prod(self.input_shape), 2 * latent_dim + context_features, hidden, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(loc, scale, context)`` for a batch ``x`` of shape ``(B, *input_shape)``."""
        x = _check_batch("x", x, self.input_shape)
        out = self.net(x.flatten(1).to(self.net.net[0].weight.dtype))
        loc, log_scale = out[:, : self.latent_dim], out[:, self.latent_dim : 2 * self.latent_dim]
        context = out[:, 2 * self.latent_dim :] if self.context_features else None
        return loc, torch.exp(log_scale), context

    def params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian's ``(loc, scale)``, each of shape ``(B, latent_dim)``."""
        loc, scale, _ = self(x)
        return loc, scale

    def rsample_and_log_prob(
        self, x: Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``num_samples`` reparametrised draws per data point, ``(S, B, D)``, and :math:`\\log q`, ``(S, B)``."""
        num_samples = _check_num_samples(num_samples)
        loc, scale = self.params(x)
        z = gaussian.rsample(loc, scale, num_samples, generator)
        return z, gaussian.log_prob(z, loc, scale)

    def log_prob(self, z: Tensor, x: Tensor) -> Tensor:
        """:math:`\\log q(z \\mid x)` for ``z`` of shape ``(..., B, D)``; returns ``(..., B)``."""
        loc, scale = self.params(x)
        _check_latents(z, self.latent_dim)
        return gaussian.log_prob(z, loc, scale)

    def kl_standard_normal(self, x: Tensor) -> Tensor:
        r"""Closed form :math:`\mathrm{KL}(q(z \mid x) \,\|\, \mathcal{N}(0, I)) =
        \tfrac12 \sum_d (\mu_d^2 + \sigma_d^2 - 1 - \log \sigma_d^2)`, summed over latent dimensions,
        one value per data point, shape ``(B,)``."""
        return gaussian.kl_standard_normal(*self.params(x))


class IAFPosterior(nn.Module):
    r"""A Gaussian posterior followed by an inverse autoregressive flow (Kingma et al. 2016).

    .. math::
        z_0 = \mu(x) + \sigma(x) \odot \varepsilon, \quad z = T(z_0; h(x)), \qquad
        \log q(z \mid x) = \log \mathcal{N}(z_0; \mu, \sigma^2) - \log\left|\det
        \frac{\partial T}{\partial z_0}\right|,

    where :math:`T` is ``num_layers`` IAF layers conditioned on an encoder output :math:`h(x)`:
    sampling and the density of the samples both take one pass per layer. The density of an
    arbitrary ``z`` would take :math:`D` passes per layer, so this posterior has no ``log_prob``
    (and :func:`elbo_surgery` needs a :class:`GaussianPosterior`).

    Args:
        input_shape, latent_dim, hidden, activation: As in :class:`GaussianPosterior`.
        num_layers: IAF layers.
        flow_hidden: Hidden widths of each layer's MADE.
        context_features: Size of :math:`h(x)`.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        hidden: Sequence[int] = (256,),
        activation: Activation = "relu",
        num_layers: int = 2,
        flow_hidden: Sequence[int] = (64,),
        context_features: int = 16,
    ) -> None:
        super().__init__()
        self.gaussian = GaussianPosterior(
            input_shape, latent_dim, hidden=hidden, activation=activation, context_features=context_features
        )
        self.input_shape, self.latent_dim = self.gaussian.input_shape, self.gaussian.latent_dim
        self.transform = iaf(latent_dim, num_layers, hidden=flow_hidden, context_features=context_features)

    def rsample_and_log_prob(
        self, x: Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`GaussianPosterior.rsample_and_log_prob`, through the flow."""
        num_samples = _check_num_samples(num_samples)
        loc, scale, context = self.gaussian(x)
        z0 = gaussian.rsample(loc, scale, num_samples, generator)
        z, ladj = self.transform.inverse(z0, context.expand(num_samples, *context.shape))
        return z, gaussian.log_prob(z0, loc, scale) - ladj


# ---------------------------------------------------------------------------------------------
# Decoders p(x | z)
# ---------------------------------------------------------------------------------------------


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
        self.net = net if net is not None else MLP(latent_dim, params_per_pixel * self.num_pixels, hidden, activation)

    def _raw(self, z: Tensor) -> Tensor:
        """Network output, reshaped to ``(..., params_per_pixel, num_pixels)``."""
        _check_latents(z, self.latent_dim)
        return self.net(z).unflatten(-1, (self.params_per_pixel, self.num_pixels))

    def _flat_x(self, x: Tensor, z: Tensor) -> Tensor:
        x = _check_batch("x", x, self.output_shape)
        _same_device(x, z, "x and z")
        if z.dim() < 2 or z.shape[-2] != x.shape[0]:
            raise ValueError(f"z must have shape (..., {x.shape[0]}, {self.latent_dim}) for a batch of {x.shape[0]}")
        return x.flatten(1)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """:math:`\\log p(x \\mid z)` summed over pixels: ``x`` ``(B, *shape)``, ``z`` ``(..., B, D)`` → ``(..., B)``."""
        raise NotImplementedError

    def log_prob_pairs(self, x: Tensor, z: Tensor, *, chunk_size: int = 1024) -> Tensor:
        """:math:`\\log p(x_b \\mid z_g)` for every data point and latent: ``x`` ``(B, *shape)``, ``z`` ``(G, D)`` → ``(B, G)``.

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

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        """A draw :math:`x \\sim p(x \\mid z)`, shape ``(..., *output_shape)``."""
        raise NotImplementedError


class BernoulliDecoder(Decoder):
    r"""Binary pixels: :math:`p(x \mid z) = \prod_i \mathrm{Bernoulli}(x_i; \mathrm{sigmoid}(\ell_i(z)))`.

    The log-likelihood is computed from the logits (``binary_cross_entropy_with_logits``), which
    is exact where :math:`\log \mathrm{sigmoid}` of a large logit would round to 0.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], **kwargs) -> None:
        super().__init__(latent_dim, output_shape, 1, **kwargs)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        target = self._flat_x(x, z)
        logits = self._raw(z)[..., 0, :]
        target = target.to(logits.dtype).expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def log_prob_pairs(self, x: Tensor, z: Tensor, *, chunk_size: int = 1024) -> Tensor:
        # log Bernoulli(x; sigmoid(l)) = x l - softplus(l): one matrix product for all pairs.
        x = _check_batch("x", x, self.output_shape)
        _check_pair_latents(z, self.latent_dim)
        _same_device(x, z, "x and z")
        logits = self._raw(z)[..., 0, :]  # (G, P)
        return x.flatten(1).to(logits.dtype) @ logits.T - F.softplus(logits).sum(-1)

    def mean(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self._raw(z)[..., 0, :]).unflatten(-1, self.output_shape)

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        probs = self.mean(z)
        return (torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype) < probs).to(
            probs.dtype
        )


class CategoricalDecoder(Decoder):
    r"""Pixels with ``levels`` values :math:`0, \dots, L-1` (the 17 grey levels of the digits):
    :math:`p(x \mid z) = \prod_i \mathrm{Categorical}(x_i; \mathrm{softmax}(\ell_i(z)))`.

    ``x`` holds the integer levels (any dtype holding integers, e.g. ``digits(levels=True)``);
    ``mean`` is the expected level.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], levels: int = 17, **kwargs) -> None:
        self.levels = _check_positive_int("levels", levels)
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        super().__init__(latent_dim, output_shape, levels, **kwargs)

    def _levels(self, flat: Tensor) -> Tensor:
        if flat.is_floating_point() and not torch.equal(flat, flat.round()):
            raise ValueError("a categorical decoder needs integer levels in x (use digits(levels=True))")
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
        flat = torch.multinomial(torch.softmax(logits.reshape(-1, self.levels), -1), 1, generator=generator)
        return flat.reshape(logits.shape[:-1]).unflatten(-1, self.output_shape)


class GaussianDecoder(Decoder):
    r"""Real pixels: :math:`p(x \mid z) = \prod_i \mathcal{N}(x_i; \mu_i(z), \sigma_i^2)` with a
    learned per-pixel scale :math:`\sigma_i = e^{s_i}` that does not depend on :math:`z`
    (``learn_scale=False`` fixes :math:`\sigma_i = ` ``scale``)."""

    def __init__(
        self, latent_dim: int, output_shape: Sequence[int], *, scale: float = 0.1, learn_scale: bool = True, **kwargs
    ) -> None:
        super().__init__(latent_dim, output_shape, 1, **kwargs)
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"scale must be positive, got {scale!r}")
        log_scale = torch.full((self.num_pixels,), math.log(scale))
        self.log_scale = nn.Parameter(log_scale, requires_grad=bool(learn_scale))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        target = self._flat_x(x, z)
        loc = self._raw(z)[..., 0, :]
        return gaussian.log_prob(target.to(loc.dtype), loc, torch.exp(self.log_scale))

    def mean(self, z: Tensor) -> Tensor:
        return self._raw(z)[..., 0, :].unflatten(-1, self.output_shape)

    def sample(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        loc = self._raw(z)[..., 0, :]
        noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        return (loc + torch.exp(self.log_scale) * noise).unflatten(-1, self.output_shape)


# ---------------------------------------------------------------------------------------------
# Priors p(z)
# ---------------------------------------------------------------------------------------------


class Prior(nn.Module):
    """Base class of the priors: ``log_prob(z)`` of shape ``z.shape[:-1]`` and ``sample(n)`` of shape ``(n, D)``.

    Attributes:
        latent_dim: Dimension of :math:`z`.
    """

    latent_dim: int

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device, tensor.dtype
        return torch.device("cpu"), torch.get_default_dtype()


class StandardNormalPrior(Prior):
    r""":math:`p(z) = \mathcal{N}(0, I_D)`.

    Example:
        >>> prior = StandardNormalPrior(2)
        >>> round(float(prior.log_prob(torch.zeros(2))), 6)  # -log(2 pi)
        -1.837877
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        return -0.5 * (z.square().sum(-1) + self.latent_dim * _LOG_2PI)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        device, dtype = self._device_dtype()
        return torch.randn(num_samples, self.latent_dim, generator=generator, device=device, dtype=dtype)


class MixturePrior(Prior):
    r"""A trainable mixture of diagonal Gaussians,
    :math:`p(z) = \sum_{k=1}^K \pi_k\, \mathcal{N}(z; m_k, \mathrm{diag}\, s_k^2)`.

    Args:
        latent_dim: Dimension of :math:`z`.
        num_components: :math:`K`.
        init_spread: Standard deviation of the initial means (the scales start at 1, the weights
            equal).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> prior = MixturePrior(2, num_components=3)
        >>> prior.sample(4).shape, prior.log_prob(torch.zeros(5, 2)).shape
        (torch.Size([4, 2]), torch.Size([5]))
    """

    def __init__(self, latent_dim: int, num_components: int = 10, *, init_spread: float = 1.0) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.num_components = _check_positive_int("num_components", num_components)
        self.loc = nn.Parameter(init_spread * torch.randn(num_components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(num_components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(num_components))

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        _same_device(z, self.loc, "z and the prior")
        component = gaussian.log_prob(z.unsqueeze(-2), self.loc, torch.exp(self.log_scale))  # (..., K)
        return torch.logsumexp(component + torch.log_softmax(self.logits, -1), -1)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        with torch.no_grad():
            index = torch.multinomial(torch.softmax(self.logits, -1), num_samples, True, generator=generator)
            noise = torch.randn(
                num_samples, self.latent_dim, generator=generator, device=self.loc.device, dtype=self.loc.dtype
            )
            return self.loc[index] + torch.exp(self.log_scale[index]) * noise


class VampPrior(Prior):
    r"""The variational mixture of posteriors prior (Tomczak & Welling 2018),
    :math:`p(z) = \frac1K \sum_{k=1}^K q_\phi(z \mid u_k)`, with :math:`K` trainable pseudo-inputs
    :math:`u_k` passed through the model's own (Gaussian) encoder.

    Args:
        encoder: The VAE's :class:`GaussianPosterior` (shared, not copied).
        pseudo_inputs: Initial pseudo-inputs, shape ``(K, *input_shape)`` (e.g. random training
            points); they become a trainable parameter.
    """

    def __init__(self, encoder: GaussianPosterior, pseudo_inputs: Tensor) -> None:
        super().__init__()
        if not isinstance(encoder, GaussianPosterior):
            raise TypeError(f"encoder must be a GaussianPosterior, got {type(encoder).__name__}")
        _check_batch("pseudo_inputs", pseudo_inputs, encoder.input_shape)
        self.latent_dim = encoder.latent_dim
        # A list hides the encoder from this module's parameters: it belongs to the VAE.
        self._encoder = [encoder]
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.detach().clone().float())

    @property
    def encoder(self) -> GaussianPosterior:
        return self._encoder[0]

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        loc, scale = self.encoder.params(self.pseudo_inputs)
        _same_device(z, loc, "z and the prior")
        component = gaussian.log_prob(z.unsqueeze(-2), loc, scale)  # (..., K)
        return torch.logsumexp(component, -1) - math.log(loc.shape[0])

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        with torch.no_grad():
            loc, scale = self.encoder.params(self.pseudo_inputs)
            index = torch.randint(loc.shape[0], (num_samples,), generator=generator, device=loc.device)
            noise = torch.randn(num_samples, self.latent_dim, generator=generator, device=loc.device, dtype=loc.dtype)
            return loc[index] + scale[index] * noise


class FlowPrior(Prior):
    r"""A normalizing-flow prior :math:`p(z) = \mathcal{N}(f(z); 0, I)\,|\det \partial f / \partial z|`
    (an autoregressive flow by default: density evaluation in one pass per layer).

    Args:
        latent_dim: Dimension of :math:`z`.
        num_layers, hidden: Of the default :func:`gdmlib.flows.maf` stack.
        flow: A :class:`gdmlib.flows.Flow` (or a :class:`~gdmlib.flows.Transform`, data to noise) to
            use instead.
    """

    def __init__(
        self,
        latent_dim: int,
        num_layers: int = 4,
        *,
        hidden: Sequence[int] = (64, 64),
        flow: Flow | Transform | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        if flow is None:
            flow = Flow(maf(latent_dim, num_layers, hidden=hidden))
        elif isinstance(flow, Transform):
            flow = Flow(flow)
        elif not isinstance(flow, Flow):
            raise TypeError(f"flow must be a gdmlib.flows.Flow or Transform, got {type(flow).__name__}")
        if flow.features != latent_dim:
            raise ValueError(f"the flow has {flow.features} features, the latent space {latent_dim}")
        self.flow = flow

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        return self.flow.log_prob(z)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        return self.flow.sample(num_samples, generator=generator)


class AggregatePosterior(Prior):
    r"""The aggregated posterior of a dataset, :math:`q(z) = \frac1N \sum_{n=1}^N q_\phi(z \mid x_n)`,
    computed exactly (a chunked logsumexp over all :math:`N` points) — the prior that maximises
    the average ELBO over that dataset for a fixed encoder and decoder (Hoffman & Johnson 2016).

    The encoder's means and scales are computed once, at construction, without gradients: this
    is a frozen snapshot, for evaluation.

    Args:
        encoder: A :class:`GaussianPosterior`.
        data: The dataset, shape ``(N, *input_shape)``.
        chunk_size: Rows per chunk of the pairwise log-density matrix.
    """

    def __init__(self, encoder: GaussianPosterior, data: Tensor, *, chunk_size: int = 256) -> None:
        super().__init__()
        if not isinstance(encoder, GaussianPosterior):
            raise TypeError(f"encoder must be a GaussianPosterior, got {type(encoder).__name__}")
        data = _check_batch("data", data, encoder.input_shape)
        self.latent_dim = encoder.latent_dim
        self.chunk_size = _check_positive_int("chunk_size", chunk_size)
        with torch.no_grad():
            loc, scale = _encode_in_chunks(encoder, data, chunk_size)
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        flat = z.reshape(-1, self.latent_dim)
        pairs = gaussian_log_prob_pairwise(flat, self.loc, self.scale, chunk_size=self.chunk_size)
        return (torch.logsumexp(pairs, -1) - math.log(self.loc.shape[0])).reshape(z.shape[:-1])

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        index = torch.randint(self.loc.shape[0], (num_samples,), generator=generator, device=self.loc.device)
        noise = torch.randn(
            num_samples, self.latent_dim, generator=generator, device=self.loc.device, dtype=self.loc.dtype
        )
        return self.loc[index] + self.scale[index] * noise


def _encode_in_chunks(encoder: GaussianPosterior, data: Tensor, chunk_size: int) -> tuple[Tensor, Tensor]:
    locs, scales = [], []
    for start in range(0, data.shape[0], chunk_size):
        loc, scale = encoder.params(data[start : start + chunk_size])
        locs.append(loc)
        scales.append(scale)
    return torch.cat(locs), torch.cat(scales)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def importance_weighted_bound(
    log_weights: Callable[[int], Tensor], num_samples: int, *, chunk_size: int = 100
) -> Tensor:
    r"""The log-mean-exp of ``num_samples`` importance weights, drawn ``chunk_size`` at a time,

    .. math::
        \mathcal{L}_K(x) = \log \frac1K \sum_{k=1}^K w_k, \qquad
        \log w_k = \log p(x \mid z_k) + \log p(z_k) - \log q(z_k \mid x),

    the IWAE bound of Burda et al. (2016) for any proposal: ``log_weights(n)`` draws ``n`` fresh
    :math:`z_k` per data point and returns their log-weights, shape ``(n, B)``.

    Returns:
        Shape ``(B,)``.

    Example:
        >>> weights = lambda n: torch.zeros(n, 3)  # every weight 1: the bound is log 1 = 0
        >>> importance_weighted_bound(weights, 250, chunk_size=100).tolist()
        [0.0, 0.0, 0.0]
    """
    num_samples = _check_num_samples(num_samples)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    chunks = [log_weights(min(chunk_size, num_samples - start)) for start in range(0, num_samples, chunk_size)]
    return torch.logsumexp(torch.cat(chunks, 0), 0) - math.log(num_samples)


class ELBO(NamedTuple):
    r"""The terms of :math:`\mathcal{L}_\beta = \text{reconstruction} - \beta\,\text{kl}`.

    With ``reduction="mean"`` each is a scalar (the batch mean); with ``"none"`` each has shape ``(B,)``.

    Attributes:
        value: :math:`\mathcal{L}_\beta`.
        reconstruction: :math:`\mathbb{E}_q \log p(x \mid z)`, summed over pixels.
        kl: :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` (closed form or one Monte Carlo estimate),
            summed over latent dimensions.
    """

    value: Tensor
    reconstruction: Tensor
    kl: Tensor


class VAE(nn.Module):
    r"""A variational autoencoder from a posterior, a decoder and a prior.

    Args:
        posterior: :class:`GaussianPosterior` or :class:`IAFPosterior` (anything with
            ``rsample_and_log_prob(x, num_samples)``).
        decoder: A :class:`Decoder`.
        prior: A :class:`Prior`; :class:`StandardNormalPrior` when ``None``.

    Raises:
        ValueError: If the latent dimensions or data shapes of the parts disagree.
    """

    def __init__(self, posterior: nn.Module, decoder: Decoder, prior: Prior | None = None) -> None:
        super().__init__()
        if not hasattr(posterior, "rsample_and_log_prob"):
            raise TypeError("posterior must have rsample_and_log_prob(x, num_samples), e.g. a GaussianPosterior")
        if not isinstance(decoder, Decoder):
            raise TypeError(f"decoder must be a gdmlib.vae.Decoder, got {type(decoder).__name__}")
        prior = StandardNormalPrior(posterior.latent_dim) if prior is None else prior
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a gdmlib.vae.Prior, got {type(prior).__name__}")
        if not posterior.latent_dim == decoder.latent_dim == prior.latent_dim:
            raise ValueError(
                f"latent dimensions disagree: posterior {posterior.latent_dim}, decoder {decoder.latent_dim}, "
                f"prior {prior.latent_dim}"
            )
        if tuple(posterior.input_shape) != tuple(decoder.output_shape):
            raise ValueError(f"posterior reads {posterior.input_shape} but decoder writes {decoder.output_shape}")
        self.posterior, self.decoder, self.prior = posterior, decoder, prior
        self.latent_dim = posterior.latent_dim
        self.input_shape = tuple(posterior.input_shape)

    def _has_closed_form_kl(self) -> bool:
        return isinstance(self.posterior, GaussianPosterior) and type(self.prior) is StandardNormalPrior

    def elbo(
        self,
        x: Tensor,
        *,
        beta: float = 1.0,
        num_samples: int = 1,
        analytic_kl: bool = True,
        reduction: Literal["mean", "none"] = "mean",
        generator: torch.Generator | None = None,
    ) -> ELBO:
        r"""The (β-)ELBO of a batch, estimated with ``num_samples`` reparametrised draws per point.

        The KL term is the closed form when the posterior is Gaussian, the prior standard normal
        and ``analytic_kl`` is set; otherwise the Monte Carlo estimate
        :math:`\log q(z \mid x) - \log p(z)` at the same draws. Both are summed over latent
        dimensions; ``reduction="mean"`` then averages over the batch.

        Args:
            x: A batch, shape ``(B, *input_shape)``.
            beta: Weight :math:`\beta \ge 0` of the KL term.
            num_samples: Draws per data point.
            analytic_kl: Use the closed form KL where it exists.
            reduction: ``"mean"`` (scalars) or ``"none"`` (one value per data point).
            generator: For the posterior's noise.
        """
        x = _check_batch("x", x, self.input_shape)
        beta = _check_beta(beta)
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if analytic_kl and self._has_closed_form_kl():
            # One encoder pass serves both the draws and the closed form KL.
            num_samples = _check_num_samples(num_samples)
            loc, scale = self.posterior.params(x)
            z = gaussian.rsample(loc, scale, num_samples, generator)
            kl = gaussian.kl_standard_normal(loc, scale)
        else:
            z, log_q = self.posterior.rsample_and_log_prob(x, num_samples, generator=generator)  # (S, B, D), (S, B)
            kl = (log_q - self.prior.log_prob(z)).mean(0)
        reconstruction = self.decoder.log_prob(x, z).mean(0)
        value = reconstruction - beta * kl
        if reduction == "mean":
            return ELBO(value.mean(), reconstruction.mean(), kl.mean())
        return ELBO(value, reconstruction, kl)

    def loss(self, x: Tensor, *, beta: float = 1.0) -> Tensor:
        """The training loss :math:`-\\mathcal{L}_\\beta`, averaged over the batch (for :func:`fit`)."""
        return -self.elbo(x, beta=beta).value

    @torch.no_grad()
    def iwae_bound(
        self,
        x: Tensor,
        num_samples: int = 100,
        *,
        chunk_size: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""The importance-weighted bound (Burda et al. 2016), one value per data point,

        .. math::
            \log p(x) \;\ge\; \mathcal{L}_K(x) = \mathbb{E}\Bigl[\log \frac1K \sum_{k=1}^K
            \frac{p(x \mid z_k)\, p(z_k)}{q(z_k \mid x)}\Bigr], \qquad z_k \sim q(z \mid x),

        which increases with :math:`K` towards :math:`\log p(x)`: the usual held-out
        log-likelihood estimate. Draws are made ``chunk_size`` at a time.

        Returns:
            Shape ``(B,)``.
        """
        x = _check_batch("x", x, self.input_shape)

        def log_weights(draws: int) -> Tensor:
            z, log_q = self.posterior.rsample_and_log_prob(x, draws, generator=generator)
            return self.decoder.log_prob(x, z) + self.prior.log_prob(z) - log_q

        return importance_weighted_bound(log_weights, num_samples, chunk_size=chunk_size)

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Draws from the model: :math:`z \\sim p(z)`, then the decoder's mean (or a sample)."""
        z = self.prior.sample(num_samples, generator=generator)
        return self.decoder.mean(z) if mean else self.decoder.sample(z, generator=generator)

    def log_joint_pairs(self, x: Tensor, z: Tensor) -> Tensor:
        """:math:`\\log p(x_b \\mid z_g) + \\log p(z_g)` for every data point and latent, shape ``(B, G)``
        (normalised over ``z`` it is the exact posterior on a grid)."""
        return self.decoder.log_prob_pairs(x, z) + self.prior.log_prob(z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder's mean at one posterior draw per data point."""
        z, _ = self.posterior.rsample_and_log_prob(_check_batch("x", x, self.input_shape), 1)
        return self.decoder.mean(z[0])


@torch.no_grad()
def log_marginal_on_grid(
    model: VAE, x: Tensor, *, limit: float = 5.0, points: int = 321, chunk_size: int = 64
) -> Tensor:
    r"""The exact log-likelihood of a VAE with a 1- or 2-dimensional latent, by quadrature on a grid,

    .. math::
        \log p(x) = \log \int p(x \mid z)\, p(z)\, dz \approx
        \operatorname{logsumexp}_g \bigl[\log p(x \mid z_g) + \log p(z_g)\bigr] + \log \Delta,

    over the ``points``:sup:`D` nodes :math:`z_g` of a regular grid on :math:`[-L, L]^D` with cell
    volume :math:`\Delta` (the rectangle rule, accurate when the integrand is smooth and negligible
    outside the box: compare two resolutions). The reference against which the ELBO and the IWAE
    bound of a low-dimensional model are judged.

    Args:
        model: A :class:`VAE` whose latent dimension is 1 or 2.
        x: Data, shape ``(B, *input_shape)``.
        limit: Half-width :math:`L` of the box.
        points: Nodes per axis.
        chunk_size: Data points per chunk.

    Returns:
        Shape ``(B,)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = make_vae((1, 4, 4), 2, hidden=(8,))
        >>> x = (torch.rand(3, 1, 4, 4) < 0.5).float()
        >>> bool((model.iwae_bound(x, 500) <= log_marginal_on_grid(model, x) + 0.05).all())
        True
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a gdmlib.vae.VAE, got {type(model).__name__}")
    if model.latent_dim not in (1, 2):
        raise ValueError(f"a grid covers 1- or 2-dimensional latents only, the model has {model.latent_dim}")
    x = _check_batch("x", x, model.input_shape)
    if not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    points = _check_positive_int("points", points)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    axis = torch.linspace(-limit, limit, points, device=x.device)
    grid = axis[:, None] if model.latent_dim == 1 else torch.cartesian_prod(axis, axis)
    log_cell = model.latent_dim * math.log(2 * limit / (points - 1))
    return torch.cat(
        [torch.logsumexp(model.log_joint_pairs(x[s : s + chunk_size], grid), -1) + log_cell for s in range(0, x.shape[0], chunk_size)]
    )


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
    """The decoder for a likelihood name: ``"bernoulli"``, ``"categorical"`` (``levels``) or ``"gaussian"``.

    Other arguments go to the decoder's constructor (``net`` replaces its MLP).

    Raises:
        ValueError: On an unknown likelihood.

    Example:
        >>> type(make_decoder("categorical", 2, (1, 8, 8), hidden=(8,))).__name__
        'CategoricalDecoder'
    """
    if likelihood == "categorical":
        return CategoricalDecoder(latent_dim, output_shape, levels, hidden=hidden, activation=activation, net=net)
    decoders = {"bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder}
    if likelihood not in decoders:
        raise ValueError(f"likelihood must be 'bernoulli', 'categorical' or 'gaussian', got {likelihood!r}")
    return decoders[likelihood](latent_dim, output_shape, hidden=hidden, activation=activation, net=net)


def make_vae(
    input_shape: Sequence[int],
    latent_dim: int,
    *,
    likelihood: Likelihood = "bernoulli",
    prior: Literal["standard", "mixture", "vamp", "flow"] | Prior = "standard",
    posterior: Literal["gaussian", "iaf"] = "gaussian",
    hidden: Sequence[int] = (256,),
    activation: Activation = "relu",
    levels: int = 17,
    num_components: int = 10,
    pseudo_inputs: Tensor | None = None,
    flow_layers: int = 2,
    flow_hidden: Sequence[int] = (64, 64),
) -> VAE:
    r"""An MLP VAE with the chosen likelihood, prior and posterior.

    Args:
        input_shape: Shape of one data point, e.g. ``(1, 8, 8)``.
        latent_dim: Dimension of :math:`z`.
        likelihood: ``"bernoulli"`` (binary pixels), ``"categorical"`` (``levels`` integer levels)
            or ``"gaussian"``.
        prior: ``"standard"``, ``"mixture"`` (``num_components``), ``"vamp"`` (``num_components``
            pseudo-inputs, initialised at ``pseudo_inputs`` if given, else uniform noise in
            ``[0, 1]``), ``"flow"`` (a MAF with ``flow_layers`` layers), or a :class:`Prior`.
        posterior: ``"gaussian"`` or ``"iaf"`` (``flow_layers`` IAF layers on the Gaussian).
        hidden, activation: Of the encoder's and decoder's MLPs.
        levels: Number of levels of a categorical likelihood.
        num_components: Mixture components or VampPrior pseudo-inputs.
        pseudo_inputs: Initial VampPrior pseudo-inputs, shape ``(K, *input_shape)``.
        flow_layers, flow_hidden: Of the flow prior or IAF posterior.

    Raises:
        ValueError: On an unknown choice.
    """
    input_shape = _check_shape(input_shape)
    if posterior == "gaussian":
        encoder: nn.Module = GaussianPosterior(input_shape, latent_dim, hidden=hidden, activation=activation)
    elif posterior == "iaf":
        encoder = IAFPosterior(
            input_shape, latent_dim, hidden=hidden, activation=activation, num_layers=flow_layers, flow_hidden=flow_hidden
        )
    else:
        raise ValueError(f"posterior must be 'gaussian' or 'iaf', got {posterior!r}")
    decoder = make_decoder(likelihood, latent_dim, input_shape, levels=levels, hidden=hidden, activation=activation)
    if isinstance(prior, Prior):
        chosen = prior
    elif prior == "standard":
        chosen = StandardNormalPrior(latent_dim)
    elif prior == "mixture":
        chosen = MixturePrior(latent_dim, num_components)
    elif prior == "flow":
        chosen = FlowPrior(latent_dim, flow_layers, hidden=flow_hidden)
    elif prior == "vamp":
        if not isinstance(encoder, GaussianPosterior):
            raise ValueError("a VampPrior needs the Gaussian posterior")
        if pseudo_inputs is None:
            pseudo_inputs = torch.rand(num_components, *input_shape)
        chosen = VampPrior(encoder, pseudo_inputs)
    else:
        raise ValueError(f"prior must be 'standard', 'mixture', 'vamp', 'flow' or a Prior, got {prior!r}")
    return VAE(encoder, decoder, chosen)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class FitHistory(NamedTuple):
    """Training losses of :func:`fit`: the mean loss over each window of ``log_every`` steps.

    Attributes:
        steps: The last step (1-based) of each window.
        losses: The mean training loss over that window.
    """

    steps: list[int]
    losses: list[float]


def fit(
    model: nn.Module,
    data: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    loss: Callable[[Tensor], Tensor] | None = None,
    log_every: int = 100,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FitHistory:
    r"""Train ``model`` with Adam on minibatches of ``data``, minimising ``loss(batch)``.

    The loop every VAE chapter shares: each step draws a fresh random minibatch (with
    replacement across steps, without within one), evaluates the loss (``model.loss`` by
    default, e.g. :meth:`VAE.loss`), and steps the optimizer. A NaN or infinite loss stops
    training with :class:`gdmlib.gan.NonFiniteLossError` naming the step, before the update.

    Args:
        model: Module whose parameters are trained.
        data: Training set, shape ``(N, ...)``, on the model's device.
        steps: Optimizer steps.
        batch_size: Minibatch size (at most ``N``).
        lr: Adam's learning rate.
        loss: ``batch -> scalar`` to minimise; ``model.loss`` when ``None``.
        log_every: Window of the recorded mean losses.
        generator: Draws the minibatches (on the CPU), for reproducibility.
        progress: Show a progress bar.

    Returns:
        The :class:`FitHistory`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = (torch.rand(64, 1, 8, 8) < 0.3).float()
        >>> model = make_vae((1, 8, 8), 2, hidden=(16,))
        >>> history = fit(model, x, steps=20, batch_size=32, log_every=10)
        >>> history.steps
        [10, 20]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(data, Tensor) or data.dim() < 1 or data.shape[0] == 0:
        raise ValueError("data must be a non-empty tensor of shape (N, ...)")
    steps = _check_positive_int("steps", steps)
    batch_size = _check_positive_int("batch_size", batch_size)
    log_every = _check_positive_int("log_every", log_every)
    if batch_size > data.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {data.shape[0]} data points")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be positive, got {lr!r}")
    if data.device != _module_device(model):
        raise ValueError(f"data is on {data.device} but the model on {_module_device(model)}; move one of them")
    objective = loss if loss is not None else getattr(model, "loss", None)
    if objective is None:
        raise TypeError("model has no loss(x) method: pass loss=...")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)  # fewer kernel launches per step
    history = FitHistory([], [])
    window: list[Tensor] = []
    model.train()
    for step in progress_bar(range(steps), desc="training", disable=not progress):
        index = torch.randperm(data.shape[0], generator=generator)[:batch_size].to(data.device)
        value = objective(data[index])
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(step, "training", float(value.detach()))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        window.append(value.detach())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.steps.append(step + 1)
            history.losses.append(float(torch.stack(window).mean()))
            window = []
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# A flow as a VAE
# ---------------------------------------------------------------------------------------------


def _rows_jacobian(fn: Callable[[Tensor], Tensor], inputs: Tensor) -> tuple[Tensor, Tensor]:
    """``fn(inputs)`` and its per-row Jacobian ``(B, D, D)``, one backward pass per output feature."""
    with torch.enable_grad():
        inputs = inputs.detach().requires_grad_(True)
        out = fn(inputs)
        rows = [torch.autograd.grad(out[:, i].sum(), inputs, retain_graph=True)[0] for i in range(out.shape[1])]
    return out.detach(), torch.stack(rows, dim=-2)


def flow_as_vae_elbo(
    flow: Flow,
    x: Tensor,
    sigma: float,
    *,
    num_samples: int = 10,
    generator: torch.Generator | None = None,
) -> ELBO:
    r"""The ELBO of the Gaussian VAE that a flow becomes when its encoder and decoder get noise :math:`\sigma`.

    With :math:`f` the flow's map (data to noise) and :math:`g = f^{-1}`, the prior
    :math:`\mathcal{N}(0, I)`, the encoder :math:`q_\sigma(z \mid x) = \mathcal{N}(f(x), \sigma^2 I)` and
    the decoder :math:`p_\sigma(x \mid z) = \mathcal{N}(g(z), \sigma^2 J_g(z) J_g(z)^\top)` (the encoder's
    noise pushed through the linearised decoder) define a genuine VAE. As :math:`\sigma \to 0` its
    reconstruction and KL terms both grow like :math:`D \log(1/\sigma)` while

    .. math::
        \mathcal{L}_\sigma(x) \to \log \mathcal{N}(f(x); 0, I)
        + \log\left|\det \frac{\partial f(x)}{\partial x}\right| = \log p_{\text{flow}}(x):

    a flow is the zero-noise VAE whose ELBO is its log-likelihood. For an affine :math:`f` the
    ELBO is exactly :math:`\log p_{\text{flow}}(x) - \sigma^2 D / 2` in expectation. Jacobians come
    from autograd (``D`` backward passes), so keep ``D`` small.

    Args:
        flow: An unconditional :class:`gdmlib.flows.Flow`.
        x: Points, shape ``(B, D)``.
        sigma: The noise level :math:`\sigma > 0`.
        num_samples: Draws of the encoder's noise per point.
        generator: For the draws.

    Returns:
        :class:`ELBO` with one value per point (``(B,)`` tensors, no graph), each averaged over the
        draws.

    Example:
        >>> from gdmlib.flows import realnvp
        >>> _ = torch.manual_seed(0)
        >>> flow = Flow(realnvp(2, num_layers=2, hidden=(8,))).double()
        >>> x = torch.randn(4, 2, dtype=torch.float64)
        >>> terms = flow_as_vae_elbo(flow, x, 1e-4)
        >>> bool((terms.value - flow.log_prob(x)).abs().max() < 1e-3)
        True
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a gdmlib.flows.Flow, got {type(flow).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != flow.features or x.shape[0] == 0:
        raise ValueError(f"x must have shape (batch, {flow.features}), got {tuple(getattr(x, 'shape', ()))}")
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    num_samples = _check_num_samples(num_samples)
    dim, count = flow.features, x.shape[0]
    with torch.no_grad():
        code = flow.transform(x)[0]
    eps = torch.randn((num_samples, count, dim), generator=generator, device=x.device, dtype=x.dtype)
    z = code + sigma * eps
    mean, jacobian = _rows_jacobian(lambda latent: flow.transform.inverse(latent)[0], z.reshape(-1, dim))
    residual = torch.linalg.solve(jacobian, (x.repeat(num_samples, 1) - mean).unsqueeze(-1)).squeeze(-1)
    log_norm = 0.5 * dim * math.log(2 * math.pi * sigma**2)
    reconstruction = (
        -log_norm - torch.linalg.slogdet(jacobian).logabsdet - 0.5 * residual.square().sum(-1) / sigma**2
    ).reshape(num_samples, count)
    log_encoder = -0.5 * eps.square().sum(-1) - log_norm
    log_prior = -0.5 * (z.square().sum(-1) + dim * _LOG_2PI)
    kl = log_encoder - log_prior
    return ELBO((reconstruction - kl).mean(0).detach(), reconstruction.mean(0).detach(), kl.mean(0).detach())


# ---------------------------------------------------------------------------------------------
# ELBO surgery
# ---------------------------------------------------------------------------------------------


def _mean_se(values: Tensor) -> Estimate:
    values = values.double()
    stderr = float(values.std(unbiased=True) / math.sqrt(values.numel())) if values.numel() > 1 else float("nan")
    return Estimate(float(values.mean()), stderr)


@torch.no_grad()
def elbo_surgery(
    model: VAE,
    data: Tensor,
    *,
    num_samples: int = 1,
    chunk_size: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, Estimate]:
    r"""ELBO surgery (Hoffman & Johnson 2016) of a trained VAE on a dataset, with standard errors.

    With :math:`n` uniform on the :math:`N` data points and :math:`z \sim q(z \mid x_n)`, the
    aggregated posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` and the mutual information
    :math:`I_q(n; z) = \mathbb{E}\bigl[\log q(z \mid x_n) - \log q(z)\bigr]`,

    .. math::
        \underbrace{\frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))}_{\texttt{avg\_kl}}
        = \underbrace{I_q(n; z)}_{\texttt{mutual\_info}}
        + \underbrace{\mathrm{KL}(q(z) \,\|\, p(z))}_{\texttt{marginal\_kl}},
        \qquad 0 \le I_q(n; z) \le \log N,

    and the average ELBO is ``reconstruction - avg_kl``. :math:`\log q(z)` is computed exactly, a
    logsumexp over all :math:`N` Gaussians (chunked, on the data's device); the expectations over
    :math:`z` are Monte Carlo with ``num_samples`` draws per data point. ``avg_kl`` is the closed
    form (averaged over the data, so its standard error is 0) when the prior is standard normal,
    and otherwise a Monte Carlo estimate from *independent* draws. ``identity_gap`` is
    ``avg_kl - mutual_info - marginal_kl`` with its standard error: it should be within a few
    standard errors of 0. It does not test :math:`\log q(z)`, which cancels per draw in
    ``mutual_info + marginal_kl``; for a 1- or 2-dimensional latent, :func:`elbo_surgery_on_grid`
    gives the two terms independently.

    Args:
        model: A :class:`VAE` with a :class:`GaussianPosterior`.
        data: The dataset, shape ``(N, *input_shape)``, on the model's device.
        num_samples: Draws of :math:`z` per data point.
        chunk_size: Rows per chunk of the ``(N * num_samples, N)`` log-density matrix.
        generator: For the draws.

    Returns:
        A dict of :class:`~gdmlib.divergences.Estimate` (value, stderr) with keys ``avg_kl``,
        ``mutual_info``, ``marginal_kl``, ``reconstruction``, ``elbo`` and ``identity_gap``.

    Raises:
        TypeError: If the model's posterior is not Gaussian.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = (torch.rand(100, 1, 8, 8) < 0.3).float()
        >>> model = make_vae((1, 8, 8), 2, hidden=(16,))
        >>> parts = elbo_surgery(model, x, num_samples=10)
        >>> bool(parts["mutual_info"].value <= math.log(100))
        True
        >>> bool(abs(parts["identity_gap"].value) < 4 * parts["identity_gap"].stderr)
        True
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a gdmlib.vae.VAE, got {type(model).__name__}")
    if not isinstance(model.posterior, GaussianPosterior):
        raise TypeError("elbo_surgery needs a GaussianPosterior: the density of an IAF posterior at other points' z is too costly")
    data = _check_batch("data", data, model.input_shape)
    num_samples = _check_num_samples(num_samples)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    count = data.shape[0]
    loc, scale = _encode_in_chunks(model.posterior, data, chunk_size)
    _same_device(loc, data, "the model and the data")

    z = gaussian.rsample(loc, scale, num_samples, generator)  # (S, N, D)
    # Densities in float64: in float32, rounding alone can push a term of I_q above log N.
    z64, loc64, scale64 = z.double(), loc.double(), scale.double()
    log_q_own = gaussian.log_prob(z64, loc64, scale64)  # (S, N)
    pairs = gaussian_log_prob_pairwise(z64.reshape(-1, model.latent_dim), loc64, scale64, chunk_size=chunk_size)
    log_q_agg = (torch.logsumexp(pairs, -1) - math.log(count)).reshape(num_samples, count)
    log_p = model.prior.log_prob(z).double()
    reconstruction = torch.cat(
        [model.decoder.log_prob(data[s : s + chunk_size], z[:, s : s + chunk_size]) for s in range(0, count, chunk_size)],
        dim=-1,
    )
    # Per data point, averaged over its draws: the unit whose spread gives the standard errors.
    mutual_info = (log_q_own - log_q_agg).mean(0)
    marginal_kl = (log_q_agg - log_p).mean(0)
    reconstruction = reconstruction.mean(0)
    if type(model.prior) is StandardNormalPrior:
        avg_kl_points = gaussian.kl_standard_normal(loc64, scale64)
        avg_kl = Estimate(float(avg_kl_points.double().mean()), 0.0)
    else:
        z_independent = gaussian.rsample(loc, scale, num_samples, generator)
        log_q_independent = gaussian.log_prob(z_independent.double(), loc64, scale64)
        avg_kl_points = (log_q_independent - model.prior.log_prob(z_independent).double()).mean(0)
        avg_kl = _mean_se(avg_kl_points)
    split = _mean_se(mutual_info + marginal_kl)
    gap = Estimate(avg_kl.value - split.value, math.hypot(avg_kl.stderr, split.stderr))
    return {
        "avg_kl": avg_kl,
        "mutual_info": _mean_se(mutual_info),
        "marginal_kl": _mean_se(marginal_kl),
        "reconstruction": _mean_se(reconstruction),
        "elbo": _mean_se(reconstruction.double() - avg_kl_points),
        "identity_gap": gap,
    }


@torch.no_grad()
def elbo_surgery_on_grid(
    aggregate: AggregatePosterior,
    prior: Prior,
    *,
    limit: float | None = None,
    points: int | None = None,
    max_points: int = 2001,
) -> dict[str, float]:
    r"""The terms of ELBO surgery by quadrature, for a 1- or 2-dimensional latent: a reference for :func:`elbo_surgery`.

    The aggregated posterior :math:`q(z) = \frac1N \sum_n \mathcal{N}(z; \mu_n, \mathrm{diag}\,\sigma_n^2)`
    is evaluated on the nodes :math:`z_g` of a regular grid on :math:`[-L, L]^D` with cell volume
    :math:`\Delta` (for :math:`D = 2` as a product of 1-D Gaussian densities, one matrix product),
    and

    .. math::
        \mathrm{KL}\bigl(q(z) \,\|\, p\bigr) \approx \Delta \sum_g q(z_g) \log \frac{q(z_g)}{p(z_g)}, \qquad
        H\bigl(q(z)\bigr) \approx -\Delta \sum_g q(z_g) \log q(z_g), \qquad
        I_q(n; z) = H\bigl(q(z)\bigr) - \frac1N \sum_n H\bigl(q(z \mid x_n)\bigr),

    the last with the closed-form Gaussian entropies
    :math:`H(q(z \mid x_n)) = \frac D2 \log(2\pi e) + \sum_d \log \sigma_{n,d}` (the mutual
    information is :math:`\mathbb{E} \log q(z \mid x_n) - \mathbb{E} \log q(z)`). Nothing here is
    Monte Carlo and nothing is shared with :func:`elbo_surgery`'s estimator, whose terms both
    contain :math:`\log q(z)` at the posterior draws: comparing the two, within a few of
    :func:`elbo_surgery`'s standard errors, checks that estimator (a wrong :math:`\log q(z)` moves
    both of its terms and leaves their sum, and so the identity, intact).

    The rectangle rule is spectrally accurate for a smooth integrand that is negligible outside the
    box (Trefethen & Weideman 2014): the defaults take :math:`L = \max_{n,d} |\mu_{n,d}| + 8 \sigma_{n,d}`
    and a step of half the smallest :math:`\sigma_{n,d}`, where the error is far below any Monte
    Carlo error. ``mass`` (:math:`\Delta \sum_g q(z_g)`, which should be 1) reports the coverage.

    Args:
        aggregate: The :class:`AggregatePosterior` of a 1- or 2-dimensional encoder.
        prior: Any :class:`Prior` of the same dimension (its ``log_prob`` is called on the grid).
        limit: Half-width :math:`L` of the box; default as above.
        points: Nodes per axis (at least 3); default from the step above.
        max_points: The largest ``points`` accepted, a guard against a grid too large for memory.

    Returns:
        A dict of floats: ``mass``, ``entropy`` (:math:`H(q(z))`), ``mutual_info`` and ``marginal_kl``.

    Raises:
        TypeError: If ``aggregate`` or ``prior`` has the wrong type.
        ValueError: For a latent dimension other than 1 or 2, mismatched dimensions, a bad ``limit``
            or ``points``, or a grid that would need more than ``max_points`` nodes per axis.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = make_vae((1, 4, 4), 2, hidden=(8,))
        >>> x = (torch.rand(50, 1, 4, 4) < 0.5).float()
        >>> terms = elbo_surgery_on_grid(AggregatePosterior(model.posterior, x), model.prior)
        >>> abs(terms["mass"] - 1) < 1e-6, 0 <= terms["mutual_info"] <= math.log(50), terms["marginal_kl"] >= 0
        (True, True, True)
    """
    if not isinstance(aggregate, AggregatePosterior):
        raise TypeError(f"aggregate must be an AggregatePosterior, got {type(aggregate).__name__}")
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a gdmlib.vae.Prior, got {type(prior).__name__}")
    dim = aggregate.latent_dim
    if dim not in (1, 2):
        raise ValueError(f"a grid covers 1- or 2-dimensional latents only, the aggregate has {dim}")
    if getattr(prior, "latent_dim", dim) != dim:
        raise ValueError(f"the prior has latent dimension {prior.latent_dim}, the aggregate {dim}")
    max_points = _check_positive_int("max_points", max_points)
    loc, scale = aggregate.loc.double(), aggregate.scale.double()
    if limit is None:
        limit = float((loc.abs() + 8 * scale).max())
    elif isinstance(limit, bool) or not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    if points is None:
        points = max(33, math.ceil(2 * limit / (0.5 * float(scale.min()))) + 1)
    points = _check_positive_int("points", points)
    if points < 3:
        raise ValueError(f"points must be at least 3, got {points}")
    if points > max_points:
        raise ValueError(
            f"the grid needs {points} nodes per axis, more than max_points={max_points}: the posteriors are "
            "too narrow for the box; pass a smaller limit, fewer points or a larger max_points"
        )
    count = loc.shape[0]
    axis = torch.linspace(-limit, limit, points, dtype=torch.float64, device=loc.device)
    # Per axis d, the (N, points) matrix of the 1-D densities N(axis; mu_{n,d}, sigma_{n,d}^2).
    factors = [
        torch.exp(-0.5 * ((axis - loc[:, d, None]) / scale[:, d, None]).square()) / (scale[:, d, None] * math.sqrt(2 * math.pi))
        for d in range(dim)
    ]
    if dim == 1:
        density, grid = factors[0].mean(0), axis[:, None]
    else:  # q(z1_i, z2_j) = 1/N sum_n f1[n, i] f2[n, j]; flattened in cartesian_prod's order
        density, grid = (factors[0].T @ factors[1]).reshape(-1) / count, torch.cartesian_prod(axis, axis)
    device, dtype = prior._device_dtype()
    log_p = prior.log_prob(grid.to(device=device, dtype=dtype)).double().to(loc.device)
    cell = float(axis[1] - axis[0]) ** dim
    positive = density > 0  # where q underflows, q log q = 0
    log_q = torch.where(positive, density.clamp_min(1e-300).log(), torch.zeros_like(density))
    entropy = -float((density * log_q).sum()) * cell
    marginal_kl = float(torch.where(positive, density * (log_q - log_p), torch.zeros_like(density)).sum()) * cell
    posterior_entropy = float((0.5 * dim * math.log(2 * math.pi * math.e) + scale.log().sum(-1)).mean())
    return {
        "mass": float(density.sum()) * cell,
        "entropy": entropy,
        "mutual_info": entropy - posterior_entropy,
        "marginal_kl": marginal_kl,
    }
