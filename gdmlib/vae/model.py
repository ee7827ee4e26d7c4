r"""The VAE itself: the (β-)ELBO, the importance-weighted bound, and the exact log-likelihood on a
grid.

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
Used by chapters 10, 11 and 12.

Device and dtype: the data must be on the model's device and, when floating, of the model's dtype.

References:
    Kingma, Welling. Auto-encoding variational Bayes. ICLR 2014.

    Burda, Grosse, Salakhutdinov. Importance weighted autoencoders. ICLR 2016.

    Higgins et al. β-VAE: learning basic visual concepts with a constrained variational framework.
    ICLR 2017.

    Trefethen, Weideman. The exponentially convergent trapezoidal rule. SIAM Review 56(3), 2014.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_batch as _check_batch
from gdmlib._checks import check_input_shape as _check_shape
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.nets import Activation
from gdmlib.vae._common import Likelihood, _check_beta, _check_num_samples
from gdmlib.vae.decoders import Decoder, make_decoder
from gdmlib.vae.posteriors import GaussianPosterior, IAFPosterior
from gdmlib.vae.priors import FlowPrior, MixturePrior, Prior, StandardNormalPrior, VampPrior

__all__ = ["ELBO", "VAE", "importance_weighted_bound", "log_marginal_on_grid", "make_vae"]


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
    chunks = [
        log_weights(min(chunk_size, num_samples - start))
        for start in range(0, num_samples, chunk_size)
    ]
    return torch.logsumexp(torch.cat(chunks, 0), 0) - math.log(num_samples)


class ELBO(NamedTuple):
    r"""The terms of :math:`\mathcal{L}_\beta = \text{reconstruction} - \beta\,\text{kl}`.

    With ``reduction="mean"`` each is a scalar (the batch mean); with ``"none"`` each has shape
    ``(B,)``.

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
            raise TypeError(
                "posterior must have rsample_and_log_prob(x, num_samples), e.g. a GaussianPosterior"
            )
        if not isinstance(decoder, Decoder):
            raise TypeError(f"decoder must be a gdmlib.vae.Decoder, got {type(decoder).__name__}")
        prior = StandardNormalPrior(posterior.latent_dim) if prior is None else prior
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a gdmlib.vae.Prior, got {type(prior).__name__}")
        if not posterior.latent_dim == decoder.latent_dim == prior.latent_dim:
            raise ValueError(
                f"latent dimensions disagree: posterior {posterior.latent_dim}, decoder "
                f"{decoder.latent_dim}, prior {prior.latent_dim}"
            )
        if tuple(posterior.input_shape) != tuple(decoder.output_shape):
            raise ValueError(
                f"posterior reads {posterior.input_shape} but decoder writes {decoder.output_shape}"
            )
        self.posterior, self.decoder, self.prior = posterior, decoder, prior
        self.latent_dim = posterior.latent_dim
        self.input_shape = tuple(posterior.input_shape)

    def _has_closed_form_kl(self) -> bool:
        return (
            isinstance(self.posterior, GaussianPosterior)
            and type(self.prior) is StandardNormalPrior
        )

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
            z, log_q = self.posterior.rsample_and_log_prob(
                x, num_samples, generator=generator
            )  # (S, B, D), (S, B)
            kl = (log_q - self.prior.log_prob(z)).mean(0)
        reconstruction = self.decoder.log_prob(x, z).mean(0)
        value = reconstruction - beta * kl
        if reduction == "mean":
            return ELBO(value.mean(), reconstruction.mean(), kl.mean())
        return ELBO(value, reconstruction, kl)

    def loss(self, x: Tensor, *, beta: float = 1.0) -> Tensor:
        """The training loss :math:`-\\mathcal{L}_\\beta`, averaged over the batch (for
        :func:`~gdmlib.training.fit`)."""
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
    def sample(
        self, num_samples: int, *, mean: bool = True, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws from the model: :math:`z \\sim p(z)`, then the decoder's mean (or a sample)."""
        z = self.prior.sample(num_samples, generator=generator)
        return self.decoder.mean(z) if mean else self.decoder.sample(z, generator=generator)

    def log_joint_pairs(self, x: Tensor, z: Tensor) -> Tensor:
        """:math:`\\log p(x_b \\mid z_g) + \\log p(z_g)` for every data point and latent, shape
        ``(B, G)`` (normalised over ``z`` it is the exact posterior on a grid)."""
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
    r"""The exact log-likelihood of a VAE with a 1- or 2-dimensional latent, by quadrature on a
    grid,

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
        raise ValueError(
            f"a grid covers 1- or 2-dimensional latents only, the model has {model.latent_dim}"
        )
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
        [
            torch.logsumexp(model.log_joint_pairs(x[s : s + chunk_size], grid), -1) + log_cell
            for s in range(0, x.shape[0], chunk_size)
        ]
    )


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
        encoder: nn.Module = GaussianPosterior(
            input_shape, latent_dim, hidden=hidden, activation=activation
        )
    elif posterior == "iaf":
        encoder = IAFPosterior(
            input_shape,
            latent_dim,
            hidden=hidden,
            activation=activation,
            num_layers=flow_layers,
            flow_hidden=flow_hidden,
        )
    else:
        raise ValueError(f"posterior must be 'gaussian' or 'iaf', got {posterior!r}")
    decoder = make_decoder(
        likelihood, latent_dim, input_shape, levels=levels, hidden=hidden, activation=activation
    )
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
        raise ValueError(
            f"prior must be 'standard', 'mixture', 'vamp', 'flow' or a Prior, got {prior!r}"
        )
    return VAE(encoder, decoder, chosen)
