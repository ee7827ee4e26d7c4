r"""GAN losses from logits: the discriminator's and generator's losses, the game's value,
:math:`D^*`.

The minimax game of Goodfellow et al. (2014),

.. math::
    \min_G \max_D V(G, D), \qquad
    V(G, D) = \mathbb{E}_{x\sim\pi}\log D(x) + \mathbb{E}_{z\sim p_Z}\log\bigl(1 - D(G(z))\bigr),

with :math:`D = \sigma(\ell)` given by its logit :math:`\ell`. Every loss takes *logits* and is
written with :math:`-\log\sigma(\ell) = \operatorname{softplus}(-\ell)` and
:math:`-\log(1 - \sigma(\ell)) = \operatorname{softplus}(\ell)`, finite for any logit. The
Wasserstein losses (Arjovsky et al. 2017) take unbounded critic scores. Used by chapters 03, 04,
05 and 08 through :mod:`gdmlib.gan`.

Device and dtype: the two inputs of a loss must be floating tensors on one device; the result is a
scalar tensor on that device.

References:
    Goodfellow et al. Generative adversarial nets. NeurIPS 2014.

    Arjovsky, Chintala, Bottou. Wasserstein generative adversarial networks. ICML 2017.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from gdmlib.estimate import Estimate

__all__ = [
    "GeneratorLossKind",
    "critic_loss_wasserstein",
    "discriminator_loss",
    "game_value",
    "generator_loss",
    "generator_loss_wasserstein",
    "jsd_lower_bound",
    "optimal_discriminator",
]

GeneratorLossKind = Literal["non_saturating", "minimax"]


def _check_scores(name: str, scores: object) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {scores.dtype}")
    if scores.numel() == 0:
        raise ValueError(f"{name} is empty: expected at least one score")
    return scores


def _check_same_device(first: torch.Tensor, second: torch.Tensor, names: str) -> None:
    if first.device != second.device:
        raise ValueError(
            f"{names} must be on the same device, got {first.device} and {second.device}"
        )


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's loss :math:`-V(G, D)`, from logits.

    .. math::
        \mathcal{L}_D = -\mathbb{E}_{x\sim\pi}\log D(x) - \mathbb{E}_{z}\log\bigl(1 - D(G(z))\bigr)
        = \operatorname{mean}\operatorname{softplus}(-\ell_{\mathrm{real}})
        + \operatorname{mean}\operatorname{softplus}(\ell_{\mathrm{fake}}),

    the binary cross-entropy of labelling data 1 and samples 0. It is finite for every logit and
    equals :math:`\log 4` when :math:`D \equiv \tfrac12`.

    Args:
        real_logits: Logits :math:`\ell = \operatorname{logit} D(x)` on data, any shape.
        fake_logits: Logits on generated samples, any shape (the batch sizes may differ).

    Returns:
        A scalar tensor.

    References:
        Goodfellow et al. Generative adversarial nets. NeurIPS 2014, eq. (1).

    Example:
        >>> import math, torch
        >>> zeros = torch.zeros(3)
        >>> round(discriminator_loss(zeros, zeros).item() - math.log(4), 6)
        0.0
    """
    _check_scores("real_logits", real_logits)
    _check_scores("fake_logits", fake_logits)
    _check_same_device(real_logits, fake_logits, "real_logits and fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def game_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Estimate:
    r"""Monte Carlo estimate of the game's value :math:`V(G, D)` and its standard error, from
    logits.

    .. math::
        \widehat V = -\operatorname{mean}\operatorname{softplus}(-\ell_{\mathrm{real}})
        - \operatorname{mean}\operatorname{softplus}(\ell_{\mathrm{fake}}),
        \qquad \widehat{\mathrm{se}} = \sqrt{s^2_{\mathrm{real}}/n + s^2_{\mathrm{fake}}/m},

    the two sample means being independent. With :math:`D` held fixed and the logits computed on
    fresh samples, :math:`\widehat V` is unbiased for
    :math:`V(G, D) \le V(G, D^*) = 2\,\mathrm{JSD} - \log 4`, so :math:`(\widehat V + \log 4)/2`
    estimates a lower bound on the JSD.

    Args:
        real_logits: Logits on fresh data, any shape (at least two values).
        fake_logits: Logits on fresh generated samples, any shape (at least two values).

    Returns:
        A :class:`gdmlib.divergences.Estimate` (value, standard error).

    Example:
        >>> import torch
        >>> est = game_value(torch.zeros(100), torch.zeros(100))  # D = 1/2 everywhere: V = -log 4
        >>> round(est.value, 6), est.stderr
        (-1.386294, 0.0)
    """
    value = -discriminator_loss(real_logits, fake_logits).item()  # also checks the inputs
    real_terms = F.softplus(-real_logits.detach().reshape(-1).double())
    fake_terms = F.softplus(fake_logits.detach().reshape(-1).double())
    if real_terms.numel() < 2 or fake_terms.numel() < 2:
        raise ValueError(
            "game_value needs at least two logits on each side to estimate a standard error"
        )
    stderr = math.sqrt(
        real_terms.var().item() / real_terms.numel() + fake_terms.var().item() / fake_terms.numel()
    )
    return Estimate(value, stderr)


def jsd_lower_bound(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Estimate:
    r"""The Jensen–Shannon lower bound of a discriminator, from its logits on fresh samples, with
    its standard error.

    For any discriminator :math:`D = \sigma(\ell)`, :math:`V(G, D) \le V(G, D^*) =
    2\,\mathrm{JSD}(\pi, p) - \log 4` (Goodfellow et al. 2014, Theorem 1), hence

    .. math::
        \mathrm{JSD}(\pi, p) \;\ge\; \frac{\log 4 + V(G, D)}{2}
        = \log 2 - \tfrac12\,\mathbb{E}_\pi \operatorname{softplus}(-\ell)
        - \tfrac12\,\mathbb{E}_p \operatorname{softplus}(\ell),

    with equality at :math:`D = D^*`. The expectations are sample means over ``real_logits`` (on
    fresh data) and ``fake_logits`` (on fresh model samples), computed in float64: a discriminator
    that has become constant has a standard error of 0, and float32 rounding of the loss (1e-7)
    could then put the estimate above the JSD. The standard error is half that of
    :func:`game_value`. With logits on the samples the discriminator was trained on, the estimate is
    biased upwards (overfitting): evaluate on held-out samples.

    Args:
        real_logits: Logits on fresh data, any shape (at least two values).
        fake_logits: Logits on fresh generated samples, any shape (at least two values).

    Returns:
        An :class:`gdmlib.estimate.Estimate` ``(value, stderr)``; the value is at most
        :math:`\log 2`.

    Raises:
        TypeError: If the logits are not floating tensors.
        ValueError: If they hold a non-finite value, sit on different devices, or either side has
            fewer than two values.

    Used in chapters 02, 03, 05 and 08.

    Example:
        >>> import torch
        >>> bound = jsd_lower_bound(torch.full((4,), 30.0), torch.full((4,), -30.0))
        >>> round(bound.value, 6), bound.stderr  # a perfect discriminator: JSD = log 2
        (0.693147, 0.0)
        >>> jsd_lower_bound(torch.zeros(8), torch.zeros(8)).value  # D = 1/2: the bound is 0
        0.0
    """
    real_logits = _check_scores("real_logits", real_logits)
    fake_logits = _check_scores("fake_logits", fake_logits)
    _check_same_device(real_logits, fake_logits, "real_logits and fake_logits")
    for name, logits in (("real_logits", real_logits), ("fake_logits", fake_logits)):
        if logits.numel() < 2:
            raise ValueError(
                f"jsd_lower_bound needs at least two values of {name} to estimate a standard "
                f"error, got {logits.numel()}"
            )
        if not torch.isfinite(logits).all():
            raise ValueError(f"{name} must be finite (a diverged discriminator?)")
    value = game_value(real_logits.detach().double(), fake_logits.detach().double())
    return Estimate(math.log(2) + value.value / 2, value.stderr / 2)


def generator_loss(
    fake_logits: torch.Tensor, kind: GeneratorLossKind = "non_saturating"
) -> torch.Tensor:
    r"""The generator's loss, from the discriminator's logits on generated samples.

    - ``"minimax"``:
      :math:`\mathbb{E}_z \log(1 - D(G(z))) = -\operatorname{mean}\operatorname{softplus}(\ell)`,
      the generator's part of :math:`V(G, D)`; its gradient :math:`-\sigma(\ell)\,\nabla\ell`
      vanishes when the discriminator rejects the samples confidently (:math:`\ell \to -\infty`).
    - ``"non_saturating"``:
      :math:`-\mathbb{E}_z \log D(G(z)) = \operatorname{mean}\operatorname{softplus}(-\ell)`, with
      gradient :math:`-\sigma(-\ell)\,\nabla\ell`, which tends to :math:`-\nabla\ell` instead.

    The generator *minimises* either one.

    Args:
        fake_logits: Logits of the discriminator on generated samples, any shape.
        kind: ``"non_saturating"`` (default, what is used in practice) or ``"minimax"``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: If ``kind`` is unknown.

    References:
        Goodfellow et al. Generative adversarial nets. NeurIPS 2014, section 3.

    Example:
        >>> import torch
        >>> logits = torch.tensor([-20.0])
        >>> (
        ...     round(generator_loss(logits, "minimax").item(), 6),
        ...     round(generator_loss(logits).item(), 6),
        ... )
        (-0.0, 20.0)
    """
    _check_scores("fake_logits", fake_logits)
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    raise ValueError(f"kind must be 'non_saturating' or 'minimax', got {kind!r}")


def critic_loss_wasserstein(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The WGAN critic's loss :math:`\mathbb{E} f(G(z)) - \mathbb{E}_{x\sim\pi} f(x)`.

    The critic minimises it, i.e. maximises the gap
    :math:`\mathbb{E}_\pi f - \mathbb{E}_p f`, which for a 1-Lipschitz :math:`f` is a lower bound
    of :math:`W_1(\pi, p)` (Kantorovich–Rubinstein duality); the bound is tight at the best critic.

    Args:
        real_scores: Critic scores on data, any shape.
        fake_scores: Critic scores on generated samples, any shape.

    References:
        Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, algorithm 1.

    Example:
        >>> import torch
        >>> critic_loss_wasserstein(torch.tensor([1.0, 3.0]), torch.tensor([0.5])).item()
        -1.5
    """
    _check_scores("real_scores", real_scores)
    _check_scores("fake_scores", fake_scores)
    _check_same_device(real_scores, fake_scores, "real_scores and fake_scores")
    return fake_scores.mean() - real_scores.mean()


def generator_loss_wasserstein(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The WGAN generator's loss :math:`-\mathbb{E}_z f(G(z))`, minimised by the generator.

    References:
        Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, algorithm 1.

    Example:
        >>> import torch
        >>> generator_loss_wasserstein(torch.tensor([1.0, 2.0])).item()
        -1.5
    """
    _check_scores("fake_scores", fake_scores)
    return -fake_scores.mean()


def optimal_discriminator(
    pi: torch.distributions.Distribution, p: torch.distributions.Distribution
) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The best discriminator against a fixed generator, :math:`D^*(x) = \pi(x) / (\pi(x) + p(x))`.

    Computed as :math:`\sigma(\log\pi(x) - \log p(x))`, which stays finite and accurate far in the
    tails, where both densities underflow to zero and the ratio itself would be :math:`0/0`.

    Args:
        pi: The data distribution (anything with ``log_prob``, e.g. a ``torch.distributions``
            object).
        p: The model (generator) distribution.

    Returns:
        A function ``x ↦ D*(x)`` with the batch shape of ``log_prob``.

    References:
        Goodfellow et al. Generative adversarial nets. NeurIPS 2014, proposition 1.

    Example:
        >>> import torch
        >>> from torch.distributions import Normal
        >>> d_star = optimal_discriminator(Normal(0.0, 1.0), Normal(1.0, 1.0))
        >>> [round(v, 4) for v in d_star(torch.tensor([0.5, 0.0, 60.0])).tolist()]
        [0.5, 0.6225, 0.0]
    """
    for name, dist in (("pi", pi), ("p", p)):
        if not callable(getattr(dist, "log_prob", None)):
            raise TypeError(
                f"{name} must have a log_prob method (e.g. a torch.distributions object)"
            )

    def d_star(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(pi.log_prob(x) - p.log_prob(x))

    return d_star
