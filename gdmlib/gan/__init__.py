r"""Generative adversarial networks: losses, the training loop, diagnostics, PacGAN, the Cramér
critique.

A GAN plays the minimax game (Goodfellow et al. 2014)

.. math::
    \min_G \max_D V(G, D), \qquad
    V(G, D) = \mathbb{E}_{x\sim\pi}\log D(x) + \mathbb{E}_{z\sim p_Z}\log\bigl(1 - D(G(z))\bigr),

between a generator :math:`G` and a discriminator :math:`D = \sigma(\ell)` given by its logit
:math:`\ell`. Every loss here takes *logits* and is written with
:math:`-\log\sigma(\ell) = \operatorname{softplus}(-\ell)` and
:math:`-\log(1 - \sigma(\ell)) = \operatorname{softplus}(\ell)`, which stay finite for any logit.
For a fixed generator with density :math:`p`, the best discriminator is
:math:`D^*(x) = \pi(x) / (\pi(x) + p(x))` (:func:`optimal_discriminator`).

The Wasserstein GAN (Arjovsky et al. 2017) replaces :math:`D` by a critic :math:`f` with unbounded
scores and the game by :math:`\min_G \max_{\|f\|_L \le 1} \mathbb{E}_\pi f - \mathbb{E}_{p} f`;
the Lipschitz constraint is enforced by weight clipping (:func:`clip_weights`) or by a gradient
penalty (:func:`gradient_penalty`, Gulrajani et al. 2017); both live in :mod:`gdmlib.lipschitz`
and are re-exported here.

:func:`train_adversarial` is the training loop of every adversarial model in the book (GAN,
WGAN, WGAN-GP, AAE/WAE-GAN): :math:`k` critic updates per generator update, device-aware,
with a progress bar, a guard against non-finite losses, and exact checkpoint/resume.

Training diagnostics and remedies: :func:`generator_gradient_norm` and :func:`saturation_curve`
measure how the generator's gradient saturates as the discriminator improves (Arjovsky & Bottou
2017); :class:`PackedDiscriminator` (with :func:`pack_samples`) is PacGAN's remedy for mode collapse
(Lin et al. 2018); :class:`gdmlib.nets.BatchedMLP` trains several independent runs as one batched
network, and :func:`batched_gradient_penalty` gives each of its members its own gradient penalty.

The Cramér critique (Bellemare et al. 2017): :func:`bernoulli_minibatch_loss` computes exactly, by
summing over the binomial distribution of a minibatch, the expected sample loss
:math:`\mathbb{E}\, d(\hat P_m, Q_\theta)` of a Bernoulli model for the Wasserstein and the energy
distances, and :func:`bernoulli_minibatch_minimizer` its minimiser: the median of the minibatch
mean for :math:`W_1` (biased), the true parameter for the energy distance (unbiased).

References:
    Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio. Generative
    adversarial nets. NeurIPS 2014.

    Arjovsky, Chintala, Bottou. Wasserstein generative adversarial networks. ICML 2017.

    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
    NeurIPS 2017.

    Arjovsky, Bottou. Towards principled methods for training generative adversarial networks.
    ICLR 2017.

    Lin, Khetan, Fanti, Oh. PacGAN: the power of two samples in generative adversarial networks.
    NeurIPS 2018.

    Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer, Munos. The Cramer distance as
    a solution to biased Wasserstein gradients. arXiv:1705.10743, 2017.

Example:
    >>> import torch
    >>> from gdmlib import gan
    >>> real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.0])
    >>> round(gan.discriminator_loss(real, fake).item(), 4)
    0.591
    >>> (
    ...     round(gan.generator_loss(fake).item(), 4),
    ...     round(gan.generator_loss(fake, "minimax").item(), 4),
    ... )
    (1.0032, -0.5032)

The package holds one concept per module, and re-exports every public name here, so that
``gdmlib.gan.X`` and ``from gdmlib.gan import X`` work for all of them:

- :mod:`gdmlib.gan.losses` — the losses from logits, :func:`game_value`, :func:`jsd_lower_bound`,
  :func:`optimal_discriminator`;
- :mod:`gdmlib.gan.training` — :func:`train_adversarial` and :class:`AdversarialHistory`;
- :mod:`gdmlib.gan.diagnostics` — :func:`generator_gradient_norm`, :func:`saturation_curve`;
- :mod:`gdmlib.gan.packing` — :func:`pack_samples`, :class:`PackedDiscriminator`;
- :mod:`gdmlib.gan.cramer` — :func:`bernoulli_minibatch_loss`,
  :func:`bernoulli_minibatch_minimizer`.

:class:`NonFiniteLossError` is :class:`gdmlib.training.NonFiniteLossError`, re-exported. Used by
chapters 03, 04, 05 and 08.
"""

from __future__ import annotations

from gdmlib.gan.cramer import (
    MinibatchDistance,
    bernoulli_minibatch_loss,
    bernoulli_minibatch_minimizer,
)
from gdmlib.gan.diagnostics import (
    SaturationCurve,
    generator_gradient_norm,
    saturation_curve,
)
from gdmlib.gan.losses import (
    GeneratorLossKind,
    critic_loss_wasserstein,
    discriminator_loss,
    game_value,
    generator_loss,
    generator_loss_wasserstein,
    jsd_lower_bound,
    optimal_discriminator,
)
from gdmlib.gan.packing import PackedDiscriminator, pack_samples
from gdmlib.gan.training import AdversarialHistory, train_adversarial
from gdmlib.lipschitz import batched_gradient_penalty, clip_weights, gradient_penalty
from gdmlib.training import NonFiniteLossError

__all__ = [
    "AdversarialHistory",
    "GeneratorLossKind",
    "MinibatchDistance",
    "NonFiniteLossError",
    "PackedDiscriminator",
    "SaturationCurve",
    "batched_gradient_penalty",
    "bernoulli_minibatch_loss",
    "bernoulli_minibatch_minimizer",
    "clip_weights",
    "critic_loss_wasserstein",
    "discriminator_loss",
    "game_value",
    "generator_gradient_norm",
    "generator_loss",
    "generator_loss_wasserstein",
    "gradient_penalty",
    "jsd_lower_bound",
    "optimal_discriminator",
    "pack_samples",
    "saturation_curve",
    "train_adversarial",
]
