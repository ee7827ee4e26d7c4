r"""Priors :math:`p(z)` of a VAE: standard normal, Gaussian mixture, VampPrior, flow, aggregated
posterior.

Every prior has ``log_prob(z)`` (shape ``z.shape[:-1]``) and ``sample(n)`` (shape ``(n, D)``).
:class:`AggregatePosterior`, :math:`q(z) = \frac1N \sum_n q(z \mid x_n)`, is the prior that
maximises the average ELBO of a fixed encoder and decoder. Used by chapters 10 (ELBO surgery: which
prior closes the gap) and 11 (a flow prior).

References:
    Tomczak, Welling. VAE with a VampPrior. AISTATS 2018.

    Hoffman, Johnson. ELBO surgery: yet another way to carve up the variational evidence lower
    bound. NeurIPS Workshop on Advances in Approximate Bayesian Inference, 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_batch as _check_batch
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.flows import Flow, Transform, maf
from gdmlib.vae._common import LOG_2PI, _check_latents, _same_device
from gdmlib.vae.posteriors import GaussianPosterior, _encode_in_chunks, gaussian_log_prob_pairwise

__all__ = [
    "AggregatePosterior",
    "FlowPrior",
    "MixturePrior",
    "Prior",
    "StandardNormalPrior",
    "VampPrior",
]


class Prior(nn.Module):
    """Base class of the priors: ``log_prob(z)`` of shape ``z.shape[:-1]`` and ``sample(n)`` of
    shape ``(n, D)``.

    Attributes:
        latent_dim: Dimension of :math:`z`.
    """

    latent_dim: int

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Tensor:  # pragma: no cover
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
        return -0.5 * (z.square().sum(-1) + self.latent_dim * LOG_2PI)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        device, dtype = self._device_dtype()
        return torch.randn(
            num_samples, self.latent_dim, generator=generator, device=device, dtype=dtype
        )


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

    def __init__(
        self, latent_dim: int, num_components: int = 10, *, init_spread: float = 1.0
    ) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.num_components = _check_positive_int("num_components", num_components)
        self.loc = nn.Parameter(init_spread * torch.randn(num_components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(num_components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(num_components))

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        _same_device(z, self.loc, "z and the prior")
        component = gaussian.log_prob(
            z.unsqueeze(-2), self.loc, torch.exp(self.log_scale)
        )  # (..., K)
        return torch.logsumexp(component + torch.log_softmax(self.logits, -1), -1)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        with torch.no_grad():
            index = torch.multinomial(
                torch.softmax(self.logits, -1), num_samples, True, generator=generator
            )
            noise = torch.randn(
                num_samples,
                self.latent_dim,
                generator=generator,
                device=self.loc.device,
                dtype=self.loc.dtype,
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
            index = torch.randint(
                loc.shape[0], (num_samples,), generator=generator, device=loc.device
            )
            noise = torch.randn(
                num_samples,
                self.latent_dim,
                generator=generator,
                device=loc.device,
                dtype=loc.dtype,
            )
            return loc[index] + scale[index] * noise


class FlowPrior(Prior):
    r"""A normalizing-flow prior
    :math:`p(z) = \mathcal{N}(f(z); 0, I)\,|\det \partial f / \partial z|` (an autoregressive flow
    by default: density evaluation in one pass per layer).

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
            raise TypeError(
                f"flow must be a gdmlib.flows.Flow or Transform, got {type(flow).__name__}"
            )
        if flow.features != latent_dim:
            raise ValueError(
                f"the flow has {flow.features} features, the latent space {latent_dim}"
            )
        self.flow = flow

    def log_prob(self, z: Tensor) -> Tensor:
        _check_latents(z, self.latent_dim)
        return self.flow.log_prob(z)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        _check_positive_int("num_samples", num_samples)
        return self.flow.sample(num_samples, generator=generator)


class AggregatePosterior(Prior):
    r"""The aggregated posterior of a dataset,
    :math:`q(z) = \frac1N \sum_{n=1}^N q_\phi(z \mid x_n)`, computed exactly (a chunked logsumexp
    over all :math:`N` points) — the prior that maximises the average ELBO over that dataset for a
    fixed encoder and decoder (Hoffman & Johnson 2016).

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
        index = torch.randint(
            self.loc.shape[0], (num_samples,), generator=generator, device=self.loc.device
        )
        noise = torch.randn(
            num_samples,
            self.latent_dim,
            generator=generator,
            device=self.loc.device,
            dtype=self.loc.dtype,
        )
        return self.loc[index] + self.scale[index] * noise
