r"""Variational autoencoders: posteriors, decoders, priors, the ELBO, the IWAE bound and ELBO
surgery.

A package of one concept per module, re-exported here (``gdmlib.vae.X`` and ``from gdmlib.vae import
X`` work for every public name): :mod:`~gdmlib.vae.posteriors`, :mod:`~gdmlib.vae.decoders`,
:mod:`~gdmlib.vae.priors`, :mod:`~gdmlib.vae.model` and :mod:`~gdmlib.vae.surgery`; the training
loop :func:`fit` lives in :mod:`gdmlib.training` (re-exported here). Chapters 10, 11 and 12 use it.

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
  :func:`make_vae` builds the usual MLP models, :func:`fit` (:func:`gdmlib.training.fit`) trains
  anything with a ``loss(x)``;
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

from gdmlib.training import FitHistory, fit
from gdmlib.vae.avb import AdversarialKL, adversarial_kl, quadratic_features
from gdmlib.vae.decoders import (
    BernoulliDecoder,
    CategoricalDecoder,
    Decoder,
    GaussianDecoder,
    make_decoder,
)
from gdmlib.vae.disentanglement import (
    BetaTCDecomposition,
    DisentanglingEnsemble,
    LinearGaussianOptimum,
    Objective,
    aggregate_covariance,
    beta_tc_decomposition,
    dip_regularizer,
    linear_gaussian_rate_distortion,
    mss_log_weights,
    total_correlation_mss,
    total_correlation_mws,
)
from gdmlib.vae.model import ELBO, VAE, importance_weighted_bound, log_marginal_on_grid, make_vae
from gdmlib.vae.posteriors import GaussianPosterior, IAFPosterior, gaussian_log_prob_pairwise
from gdmlib.vae.priors import (
    AggregatePosterior,
    FlowPrior,
    MixturePrior,
    Prior,
    StandardNormalPrior,
    VampPrior,
)
from gdmlib.vae.surgery import elbo_surgery, elbo_surgery_on_grid, flow_as_vae_elbo
from gdmlib.vae.wae import (
    GaussianDecoderCosts,
    Penalty,
    RegularizedAutoencoder,
    fit_autoencoder,
    linear_gaussian_decoder_costs,
    make_autoencoder,
)

__all__ = [
    "ELBO",
    "AdversarialKL",
    "AggregatePosterior",
    "BernoulliDecoder",
    "BetaTCDecomposition",
    "CategoricalDecoder",
    "Decoder",
    "DisentanglingEnsemble",
    "FitHistory",
    "FlowPrior",
    "GaussianDecoder",
    "GaussianDecoderCosts",
    "GaussianPosterior",
    "IAFPosterior",
    "LinearGaussianOptimum",
    "MixturePrior",
    "Objective",
    "Penalty",
    "Prior",
    "RegularizedAutoencoder",
    "StandardNormalPrior",
    "VAE",
    "VampPrior",
    "adversarial_kl",
    "aggregate_covariance",
    "beta_tc_decomposition",
    "dip_regularizer",
    "elbo_surgery",
    "elbo_surgery_on_grid",
    "fit",
    "fit_autoencoder",
    "flow_as_vae_elbo",
    "gaussian_log_prob_pairwise",
    "importance_weighted_bound",
    "linear_gaussian_decoder_costs",
    "linear_gaussian_rate_distortion",
    "log_marginal_on_grid",
    "make_autoencoder",
    "make_decoder",
    "make_vae",
    "mss_log_weights",
    "quadratic_features",
    "total_correlation_mss",
    "total_correlation_mws",
]
