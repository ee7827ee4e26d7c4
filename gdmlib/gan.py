r"""Generative adversarial networks: losses, the optimal discriminator, and one training loop.

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
penalty (:func:`gradient_penalty`, Gulrajani et al. 2017).

:func:`train_adversarial` is the training loop of every adversarial model in the book (GAN,
WGAN, WGAN-GP, AAE/WAE-GAN): :math:`k` critic updates per generator update, device-aware,
with a progress bar, a guard against non-finite losses, and exact checkpoint/resume.

Training diagnostics and remedies: :func:`generator_gradient_norm` and :func:`saturation_curve`
measure how the generator's gradient saturates as the discriminator improves (Arjovsky & Bottou
2017); :class:`PackedDiscriminator` (with :func:`pack_samples`) is PacGAN's remedy for mode collapse
(Lin et al. 2018); :class:`gdmlib.nets.BatchedMLP` trains several independent runs as one batched network,
and :func:`batched_gradient_penalty` gives each of its members its own gradient penalty.

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
    >>> round(gan.generator_loss(fake).item(), 4), round(gan.generator_loss(fake, "minimax").item(), 4)
    (1.0032, -0.5032)
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gdmlib import runtime
from gdmlib.divergences import Estimate
from gdmlib.nets import MLP, _check_positive_int

__all__ = [
    "AdversarialHistory",
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
    "optimal_discriminator",
    "pack_samples",
    "saturation_curve",
    "train_adversarial",
]

GeneratorLossKind = Literal["non_saturating", "minimax"]
_CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# losses


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
        raise ValueError(f"{names} must be on the same device, got {first.device} and {second.device}")


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
    r"""Monte Carlo estimate of the game's value :math:`V(G, D)` and its standard error, from logits.

    .. math::
        \widehat V = -\operatorname{mean}\operatorname{softplus}(-\ell_{\mathrm{real}})
        - \operatorname{mean}\operatorname{softplus}(\ell_{\mathrm{fake}}),
        \qquad \widehat{\mathrm{se}} = \sqrt{s^2_{\mathrm{real}}/n + s^2_{\mathrm{fake}}/m},

    the two sample means being independent. With :math:`D` held fixed and the logits computed on
    fresh samples, :math:`\widehat V` is unbiased for :math:`V(G, D) \le V(G, D^*) = 2\,\mathrm{JSD} - \log 4`,
    so :math:`(\widehat V + \log 4)/2` estimates a lower bound on the JSD.

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
        raise ValueError("game_value needs at least two logits on each side to estimate a standard error")
    stderr = math.sqrt(real_terms.var().item() / real_terms.numel() + fake_terms.var().item() / fake_terms.numel())
    return Estimate(value, stderr)


def generator_loss(fake_logits: torch.Tensor, kind: GeneratorLossKind = "non_saturating") -> torch.Tensor:
    r"""The generator's loss, from the discriminator's logits on generated samples.

    - ``"minimax"``: :math:`\mathbb{E}_z \log(1 - D(G(z))) = -\operatorname{mean}\operatorname{softplus}(\ell)`,
      the generator's part of :math:`V(G, D)`; its gradient
      :math:`-\sigma(\ell)\,\nabla\ell` vanishes when the discriminator rejects the samples
      confidently (:math:`\ell \to -\infty`).
    - ``"non_saturating"``: :math:`-\mathbb{E}_z \log D(G(z)) = \operatorname{mean}\operatorname{softplus}(-\ell)`,
      with gradient :math:`-\sigma(-\ell)\,\nabla\ell`, which tends to :math:`-\nabla\ell` instead.

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
        >>> round(generator_loss(logits, "minimax").item(), 6), round(generator_loss(logits).item(), 6)
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


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The WGAN-GP gradient penalty :math:`\mathbb{E}_{\hat x}(\|\nabla_{\hat x} f(\hat x)\|_2 - 1)^2`.

    For each sample :math:`i` one weight :math:`\epsilon_i \sim U[0, 1]` is drawn and
    :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\tilde x_i` lies on the segment between the
    data point :math:`x_i` and the generated point :math:`\tilde x_i`; the same :math:`\epsilon_i`
    multiplies every coordinate (pixel, channel) of the sample. The gradient norm is taken over
    all non-batch dimensions together (the sample flattened), and the result is averaged over the
    batch. It is *unweighted*: the critic's loss adds :math:`\lambda` times it (:math:`\lambda = 10`
    in the paper). The gradient is built with ``create_graph=True`` so that the penalty can be
    back-propagated into the critic's parameters. ``real`` and ``fake`` are detached: the penalty
    trains the critic only.

    The critic must score each sample independently (no batch normalisation), otherwise the
    per-sample gradients mix samples.

    Args:
        critic: Maps a batch ``(N, ...)`` to scores of shape ``(N,)`` or ``(N, 1)``.
        real: Data batch ``(N, ...)``.
        fake: Generated batch of the same shape, dtype and device.
        generator: A ``torch.Generator`` for the interpolation weights (the global generator when
            ``None``). A CPU generator may serve CUDA inputs: the weights are drawn on the
            generator's device and moved.
        weights: The interpolation weights themselves, shape ``(N,)`` or ``(N, 1, ..., 1)``, in
            :math:`[0, 1]`; overrides ``generator``.

    Returns:
        A scalar tensor.

    Raises:
        TypeError, ValueError: On mismatched or ill-shaped inputs, weights outside :math:`[0, 1]`,
            or a critic that does not return one score per sample.

    References:
        Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
        NeurIPS 2017, algorithm 1.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> critic = torch.nn.Linear(4, 1, bias=False)  # gradient w everywhere
        >>> with torch.no_grad():
        ...     _ = critic.weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
        >>> round(gradient_penalty(critic, torch.randn(8, 4), torch.randn(8, 4)).item(), 4)
        1.0
    """
    for name, tensor in (("real", real), ("fake", fake)):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.ndim < 1 or real.shape[0] == 0:
        raise ValueError(f"real and fake must be non-empty batches of shape (N, ...), got {tuple(real.shape)}")
    if real.dtype != fake.dtype or real.device != fake.device:
        raise ValueError(
            f"real and fake must share dtype and device, got {real.dtype}/{real.device} and {fake.dtype}/{fake.device}"
        )
    batch = real.shape[0]
    broadcast_shape = (batch,) + (1,) * (real.ndim - 1)
    if weights is None:
        draw_device = generator.device if generator is not None else real.device
        weights = torch.rand(batch, generator=generator, device=draw_device, dtype=real.dtype).to(real.device)
    else:
        if not isinstance(weights, torch.Tensor):
            raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
        if weights.numel() != batch or weights.shape[0] != batch:
            raise ValueError(
                f"weights must hold one weight per sample, shape ({batch},) or {broadcast_shape}, "
                f"got {tuple(weights.shape)}"
            )
        if bool(((weights < 0) | (weights > 1)).any()):
            raise ValueError("weights must lie in [0, 1]")
        weights = weights.to(device=real.device, dtype=real.dtype)
    weights = weights.reshape(broadcast_shape)
    interpolates = (weights * real.detach() + (1 - weights) * fake.detach()).requires_grad_(True)
    scores = critic(interpolates)
    if not isinstance(scores, torch.Tensor) or scores.shape[0] != batch or scores.numel() != batch:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"critic must return one score per sample, shape ({batch},) or ({batch}, 1), got {shape}")
    (gradients,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    norms = gradients.flatten(start_dim=1).norm(dim=1)
    return ((norms - 1) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> nn.Module:
    r"""Clamp every parameter of ``module`` to :math:`[-c, c]`, in place.

    The WGAN's original way to keep the critic in a set of :math:`K`-Lipschitz functions
    (for some :math:`K` that depends on :math:`c` and the architecture). Call it *after* each
    critic optimiser step.

    Args:
        module: The critic.
        c: The clipping bound (0.01 in the paper), positive.

    Returns:
        ``module`` itself.

    References:
        Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, algorithm 1.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(3, 3)
        >>> _ = torch.nn.init.constant_(layer.weight, 5.0)
        >>> clip_weights(layer, 0.01).weight.abs().max().item()
        0.009999999776482582
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
        raise ValueError(f"the clipping bound c must be a positive finite number, got {c!r}")
    for parameter in module.parameters():
        parameter.clamp_(-c, c)
    return module


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
            raise TypeError(f"{name} must have a log_prob method (e.g. a torch.distributions object)")

    def d_star(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(pi.log_prob(x) - p.log_prob(x))

    return d_star


# --------------------------------------------------------------------------------------------------
# training loop


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite during :func:`train_adversarial`.

    Raised *before* the offending backward pass, so the models hold the last finite parameters.

    Attributes:
        step: The generator step (0-based) at which it happened.
        loss: Which loss: ``"critic"``, ``"penalty"``, ``"generator"`` or ``"generator_extra"``.
        value: The non-finite value.
    """

    def __init__(self, step: int, loss: str, value: float, detail: str = "") -> None:
        self.step, self.loss, self.value = step, loss, value
        super().__init__(
            f"{loss} loss is {value} at step {step}{detail}; lower the learning rate, check the data for "
            "NaN/inf, or use the non-saturating / Wasserstein losses"
        )


@dataclass
class AdversarialHistory:
    """The losses recorded by :func:`train_adversarial`, one entry per recorded generator step.

    Attributes:
        step: The generator step (0-based) of each record.
        critic_loss: The critic's loss, averaged over the ``critic_steps`` updates of that step
            (without the penalty).
        generator_loss: The generator's adversarial loss.
        penalty: The unweighted penalty, averaged like ``critic_loss`` (empty without a penalty).
        generator_extra: The extra generator loss (empty without one).
    """

    step: list[int] = field(default_factory=list)
    critic_loss: list[float] = field(default_factory=list)
    generator_loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    generator_extra: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        """The history as a dict of lists (what checkpoints store)."""
        return {name: list(values) for name, values in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> AdversarialHistory:
        """Rebuild a history from :meth:`to_dict`'s output."""
        return cls(**{name: list(values) for name, values in data.items()})

    def __len__(self) -> int:
        return len(self.step)


def _rng_state() -> dict[str, Any]:
    # Only tensors, lists, tuples and primitives, so that torch.load(weights_only=True) accepts it.
    numpy_name, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            numpy_name,
            torch.from_numpy(np.asarray(numpy_keys, dtype=np.int64)),
            int(numpy_pos),
            int(numpy_has_gauss),
            float(numpy_gauss),
        ],
        "python": random.getstate(),
    }
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda", [])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # atomic: an interruption never leaves a half-written checkpoint


def _finite_value(loss: object, step: int, name: str, detail: str = "") -> float:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"the {name} loss function must return a scalar tensor, got {loss!r:.80}")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(step, name, value, detail)
    return value


def train_adversarial(
    generator: nn.Module,
    critic: nn.Module,
    sample_real: Callable[[], torch.Tensor],
    sample_noise: Callable[[], torch.Tensor],
    *,
    steps: int,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    d_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = discriminator_loss,
    g_loss_fn: Callable[[torch.Tensor], torch.Tensor] = generator_loss,
    critic_steps: int = 1,
    penalty: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    penalty_weight: float = 10.0,
    clip: float | None = None,
    generator_extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    history_every: int = 1,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    callback: Callable[[int, AdversarialHistory], None] | None = None,
) -> AdversarialHistory:
    r"""Train a generator against a critic: ``critic_steps`` critic updates per generator update.

    One generator step is

    1. ``critic_steps`` times: draw ``x = sample_real()``, ``z = sample_noise()``,
       ``fake = generator(z)`` (without gradient), minimise
       ``d_loss_fn(critic(x), critic(fake)) + penalty_weight * penalty(critic, x, fake)`` with
       ``d_opt``, then clip the critic's parameters to :math:`[-c, c]` if ``clip = c``;
    2. draw ``z = sample_noise()`` and minimise
       ``g_loss_fn(critic(generator(z))) + generator_extra_loss(z, generator(z))`` with ``g_opt``
       (the critic's parameters are frozen meanwhile).

    The defaults give the non-saturating GAN of Goodfellow et al. (2014); WGAN is
    ``d_loss_fn=critic_loss_wasserstein, g_loss_fn=generator_loss_wasserstein, critic_steps=5,
    clip=0.01``; WGAN-GP replaces ``clip`` by ``penalty=gradient_penalty`` (with
    ``penalty_weight=10``). An adversarial autoencoder uses the encoder as ``generator``, data
    batches as "noise", prior samples as "real", and its reconstruction term as
    ``generator_extra_loss`` (with the decoder's parameters in ``g_opt``).

    **Checkpoints.** With ``checkpoint_path``, the generator, the critic, both optimisers, the
    step, the history and the random states (torch CPU and CUDA, NumPy, Python) are saved every
    ``checkpoint_every`` steps and at the end, atomically (temporary file, then ``os.replace``).
    When the file exists at the start, training resumes from it, and an interrupted then resumed
    run gives exactly the same parameters and history as an uninterrupted one, provided the
    samplers draw from those global generators (not from a private ``torch.Generator`` or an
    iterator, whose state is not saved); on a GPU, "exactly" also needs deterministic kernels
    (``torch.use_deterministic_algorithms``). A finished checkpoint makes a rerun return at once, so
    delete it after changing hyperparameters. Checkpoints hold only tensors and plain containers
    and load with ``torch.load(path, weights_only=True)``.

    Args:
        generator: Maps a noise batch to a sample batch.
        critic: Maps a sample batch to scores (logits, or Wasserstein scores).
        sample_real: Returns a data batch; best produced directly on ``device`` (it is moved
            there otherwise).
        sample_noise: Returns a noise batch (likewise).
        steps: Total number of generator steps (counting those of a resumed checkpoint).
        g_opt: Optimiser over the generator's parameters.
        d_opt: Optimiser over the critic's parameters.
        d_loss_fn: ``(real_scores, fake_scores) → loss`` minimised by the critic.
        g_loss_fn: ``fake_scores → loss`` minimised by the generator.
        critic_steps: Critic updates per generator update (:math:`k`; 5 for WGAN).
        penalty: ``(critic, real, fake) → tensor`` added to the critic's loss times
            ``penalty_weight``, e.g. :func:`gradient_penalty`.
        penalty_weight: :math:`\lambda`, the penalty's weight (10 in Gulrajani et al.).
        clip: If given, :func:`clip_weights` with this bound after every critic optimiser step.
        generator_extra_loss: ``(noise, fake) → tensor`` added to the generator's loss.
        device: Move both models there and train there; by default the generator's device.
        progress: Show a ``tqdm.auto`` progress bar (see :func:`gdmlib.runtime.progress`).
        history_every: Record the losses every this many generator steps.
        checkpoint_path: Where to save and resume from; no checkpoints when ``None``.
        checkpoint_every: Save every this many generator steps.
        callback: Called as ``callback(step, history)`` after each generator step (before that
            step's checkpoint, so that random numbers it draws are part of the saved state).

    Returns:
        The :class:`AdversarialHistory`.

    Raises:
        NonFiniteLossError: A ``FloatingPointError`` naming the step and the loss that became NaN
            or infinite (raised before the backward pass of that loss).
        TypeError, ValueError: On invalid arguments, or a checkpoint written with another
            ``critic_steps``.

    References:
        Goodfellow et al. Generative adversarial nets. NeurIPS 2014, algorithm 1.

        Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, algorithm 1.

        Gulrajani et al. Improved training of Wasserstein GANs. NeurIPS 2017, algorithm 1.

    Example:
        >>> import torch
        >>> from gdmlib.nets import MLP
        >>> _ = torch.manual_seed(0)
        >>> generator, critic = torch.nn.Linear(1, 1), MLP(1, 1, hidden=(16,))
        >>> history = train_adversarial(
        ...     generator, critic,
        ...     sample_real=lambda: 2.0 + 0.5 * torch.randn(64, 1),
        ...     sample_noise=lambda: torch.randn(64, 1),
        ...     steps=200, progress=False,
        ...     g_opt=torch.optim.Adam(generator.parameters(), lr=2e-2),
        ...     d_opt=torch.optim.Adam(critic.parameters(), lr=2e-2),
        ... )
        >>> len(history), abs(generator.bias.item() - 2.0) < 1.0  # the generator's mean moved to the data's
        (200, True)
    """
    for name, module in (("generator", generator), ("critic", critic)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    for name, sampler in (("sample_real", sample_real), ("sample_noise", sample_noise)):
        if not callable(sampler):
            raise TypeError(f"{name} must be a callable returning a batch, got {type(sampler).__name__}")
    for name, optimizer in (("g_opt", g_opt), ("d_opt", d_opt)):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    critic_steps = _check_positive_int("critic_steps", critic_steps)
    history_every = _check_positive_int("history_every", history_every)
    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise ValueError(f"clip must be a positive number or None, got {clip!r}")
    if penalty is not None and not callable(penalty):
        raise TypeError("penalty must be a callable (critic, real, fake) -> tensor, or None")
    if not isinstance(penalty_weight, (int, float)) or not math.isfinite(penalty_weight) or penalty_weight < 0:
        raise ValueError(f"penalty_weight must be a non-negative finite number, got {penalty_weight!r}")
    for name, function in (("generator_extra_loss", generator_extra_loss), ("callback", callback)):
        if function is not None and not callable(function):
            raise TypeError(f"{name} must be callable or None")

    if device is not None:
        device = runtime.get_device(str(device))
        generator.to(device)
        critic.to(device)
    else:
        first = next(iter(generator.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    generator.train()
    critic.train()

    history = AdversarialHistory()
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a train_adversarial checkpoint (format {checkpoint.get('format')!r})")
        if checkpoint["critic_steps"] != critic_steps:
            raise ValueError(
                f"{path} was written with critic_steps={checkpoint['critic_steps']}, not {critic_steps}; "
                "delete it to start afresh"
            )
        generator.load_state_dict(checkpoint["generator"])
        critic.load_state_dict(checkpoint["critic"])
        g_opt.load_state_dict(checkpoint["g_opt"])
        d_opt.load_state_dict(checkpoint["d_opt"])
        history = AdversarialHistory.from_dict(checkpoint["history"])
        start = int(checkpoint["step"])
        _set_rng_state(checkpoint["rng"])

    def batch(sampler: Callable[[], torch.Tensor], name: str) -> torch.Tensor:
        values = sampler()
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"{name} must return a torch.Tensor, got {type(values).__name__}")
        return values if values.device == device else values.to(device)

    def save(next_step: int) -> None:
        if path is None:
            return
        _save_checkpoint(
            path,
            {
                "format": _CHECKPOINT_FORMAT,
                "step": next_step,
                "critic_steps": critic_steps,
                "generator": generator.state_dict(),
                "critic": critic.state_dict(),
                "g_opt": g_opt.state_dict(),
                "d_opt": d_opt.state_dict(),
                "history": history.to_dict(),
                "rng": _rng_state(),
            },
        )

    bar = runtime.progress(total=steps, initial=min(start, steps), disable=not progress, desc="training")
    try:
        for step in range(start, steps):
            critic_total = penalty_total = 0.0
            for update in range(critic_steps):
                detail = f" (critic update {update + 1} of {critic_steps})"
                real = batch(sample_real, "sample_real")
                with torch.no_grad():
                    fake = generator(batch(sample_noise, "sample_noise"))
                d_loss = d_loss_fn(critic(real), critic(fake))
                critic_total += _finite_value(d_loss, step, "critic", detail)
                if penalty is not None:
                    penalty_value = penalty(critic, real, fake)
                    penalty_total += _finite_value(penalty_value, step, "penalty", detail)
                    d_loss = d_loss + penalty_weight * penalty_value
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                if clip is not None:
                    clip_weights(critic, clip)

            # The generator's backward pass needs no critic gradients; frozen flags are restored as found.
            trainable = [parameter for parameter in critic.parameters() if parameter.requires_grad]
            for parameter in trainable:
                parameter.requires_grad_(False)
            try:
                noise = batch(sample_noise, "sample_noise")
                fake = generator(noise)
                g_loss = g_loss_fn(critic(fake))
                generator_value = _finite_value(g_loss, step, "generator")
                if generator_extra_loss is not None:
                    extra = generator_extra_loss(noise, fake)
                    extra_value = _finite_value(extra, step, "generator_extra")
                    g_loss = g_loss + extra
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
            finally:
                for parameter in trainable:
                    parameter.requires_grad_(True)

            if step % history_every == 0:
                history.step.append(step)
                history.critic_loss.append(critic_total / critic_steps)
                history.generator_loss.append(generator_value)
                if penalty is not None:
                    history.penalty.append(penalty_total / critic_steps)
                if generator_extra_loss is not None:
                    history.generator_extra.append(extra_value)
                bar.set_postfix(
                    critic=f"{history.critic_loss[-1]:.3g}", generator=f"{generator_value:.3g}", refresh=False
                )
            bar.update(1)
            if callback is not None:
                callback(step, history)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save(step + 1)
    finally:
        bar.close()
    return history


# --------------------------------------------------------------------------------------------------
# saturation: the generator's gradient against an ever better discriminator


def _check_module(name: str, module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    return module


def generator_gradient_norm(
    generator: nn.Module,
    critic: Callable[[torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    kind: GeneratorLossKind = "non_saturating",
    *,
    per_member: bool = False,
) -> float | list[float]:
    r"""The Euclidean norm of the gradient of the generator's loss with respect to its parameters.

    .. math::
        \bigl\lVert \nabla_\theta\, \mathcal{L}_G(\theta) \bigr\rVert_2, \qquad
        \mathcal{L}_G(\theta) = \texttt{generator\_loss}\bigl(\ell(G_\theta(z_{1:n})), \texttt{kind}\bigr),

    over every generator parameter that requires a gradient, all of them stacked into one vector.
    For the minimax loss the gradient is :math:`-\frac1n\sum_i \sigma(\ell_i)\,\nabla_\theta \ell_i`:
    it vanishes as the discriminator's confidence :math:`D(G(z_i)) = \sigma(\ell_i)` on the samples
    goes to 0. For the non-saturating loss the factor is :math:`\sigma(-\ell_i) \to 1` instead
    (Goodfellow et al. 2014, section 3; Arjovsky & Bottou 2017, section 2.2).

    The ``.grad`` fields of both networks are left untouched (``torch.autograd.grad`` is used).

    With ``per_member=True`` the generator and the critic hold :math:`M` independent members, as a
    :class:`gdmlib.nets.BatchedMLP` does: ``noise`` has shape ``(M, n, ...)``, row :math:`k` goes
    through member :math:`k`, and every trainable parameter of the generator has :math:`M` as its
    leading dimension. The loss is then :math:`\sum_k \mathcal{L}_G^{(k)}`, the sum of each member's
    own loss on its own logits, whose gradient with respect to member :math:`k`'s slice of the
    parameters is member :math:`k`'s gradient alone; the result is the list of the :math:`M` norms.

    Args:
        generator: Maps ``noise`` to samples.
        critic: Maps samples to the discriminator's logits.
        noise: A noise batch for ``generator``.
        kind: ``"non_saturating"`` or ``"minimax"`` (see :func:`generator_loss`).
        per_member: Return one norm per member of batched networks (see above).

    Returns:
        The norm, a Python float; with ``per_member=True``, a list of :math:`M` floats.

    Raises:
        TypeError: If ``generator`` is not an ``nn.Module`` or ``noise`` not a tensor.
        ValueError: If the generator has no trainable parameter, or ``kind`` is unknown; with
            ``per_member=True``, if ``noise`` has fewer than 2 dimensions, or a trainable parameter
            or the critic's output does not have ``noise``'s leading size :math:`M`.

    References:
        Arjovsky, Bottou. Towards principled methods for training generative adversarial
        networks. ICLR 2017, theorem 2.4 and figure 2.

    Example:
        >>> import torch
        >>> generator = torch.nn.Linear(1, 1)
        >>> with torch.no_grad():
        ...     _ = generator.weight.fill_(1.0), generator.bias.fill_(0.0)
        >>> confident = lambda x: -20.0 - x.squeeze(-1)  # D(G(z)) = sigmoid(-20 - G(z)) ≈ 0
        >>> z = torch.zeros(4, 1)  # so the gradient only has a bias component, of size sigma(-l)
        >>> round(generator_gradient_norm(generator, confident, z, "minimax"), 6)  # sigma(-20) = 2e-9
        0.0
        >>> round(generator_gradient_norm(generator, confident, z), 6)
        1.0

        Three independent members at once: one norm each.

        >>> from gdmlib.nets import BatchedMLP
        >>> _ = torch.manual_seed(0)
        >>> batched_generator, batched_critic = BatchedMLP(3, 2, 2, hidden=(8,)), BatchedMLP(3, 2, 1, hidden=(8,))
        >>> norms = generator_gradient_norm(batched_generator, batched_critic, torch.randn(3, 16, 2), per_member=True)
        >>> len(norms), all(norm > 0 for norm in norms)
        (3, True)
    """
    _check_module("generator", generator)
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    if not isinstance(per_member, bool):
        raise TypeError(f"per_member must be a bool, got {type(per_member).__name__}")
    parameters = [parameter for parameter in generator.parameters() if parameter.requires_grad]
    if not parameters:
        raise ValueError("the generator has no parameter that requires a gradient")
    if not per_member:
        loss = generator_loss(critic(generator(noise)), kind)
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        squares = [gradient.detach().double().square().sum() for gradient in gradients if gradient is not None]
        return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

    if noise.dim() < 2:
        raise ValueError(f"with per_member=True, noise must have shape (members, n, ...), got {tuple(noise.shape)}")
    members = noise.shape[0]
    for parameter in parameters:
        if parameter.dim() == 0 or parameter.shape[0] != members:
            raise ValueError(
                f"with per_member=True, every trainable generator parameter must have the {members} members "
                f"as its leading dimension, got one of shape {tuple(parameter.shape)}"
            )
    logits = critic(generator(noise))
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2 or logits.shape[0] != members:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"with per_member=True, the critic must return logits of shape ({members}, n, ...), got {shape}")
    # The sum of the members' own losses: member k's slice of the gradient is member k's gradient.
    loss = sum(generator_loss(logits[k], kind) for k in range(members))
    gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
    squares = torch.zeros(members, dtype=torch.float64, device=noise.device)
    for gradient in gradients:
        if gradient is not None:
            squares = squares + gradient.detach().double().reshape(members, -1).square().sum(dim=1).to(squares.device)
    return squares.sqrt().tolist()


@dataclass
class SaturationCurve:
    r"""What :func:`saturation_curve` records, one entry per recorded discriminator step.

    With ``per_member=True`` every entry of ``minimax``, ``non_saturating`` and
    ``fake_probability`` is a list with one value per member (so ``np.array(curve.minimax)`` has
    shape ``(records, members)``).

    Attributes:
        step: The number of discriminator updates made so far (0: the untrained discriminator).
        minimax: :math:`\lVert\nabla_\theta\mathcal{L}_G\rVert` for the minimax loss.
        non_saturating: The same for the non-saturating loss.
        fake_probability: The mean of :math:`D(G(z))` over the evaluation noise: the probability the
            discriminator gives to generated samples being data.
    """

    step: list[int] = field(default_factory=list)
    minimax: list[float] | list[list[float]] = field(default_factory=list)
    non_saturating: list[float] | list[list[float]] = field(default_factory=list)
    fake_probability: list[float] | list[list[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)


def saturation_curve(
    generator: nn.Module,
    critic: nn.Module,
    sample_real: Callable[[], torch.Tensor],
    sample_noise: Callable[[], torch.Tensor],
    eval_noise: torch.Tensor,
    *,
    steps: int,
    d_opt: torch.optim.Optimizer,
    record_every: int = 10,
    progress: bool = False,
    per_member: bool = False,
) -> SaturationCurve:
    r"""Train the discriminator alone against a frozen generator; record the generator's gradients.

    The experiment of Arjovsky & Bottou (2017, figure 2): the generator :math:`G_\theta` is held
    fixed while the discriminator minimises :func:`discriminator_loss` for ``steps`` updates of
    ``d_opt``. Before the first update and every ``record_every`` updates (and after the last one),
    :func:`generator_gradient_norm` is evaluated on ``eval_noise`` for both generator losses. As the
    discriminator approaches :math:`D^*`, :math:`D(G(z)) \to 0` where the data has no mass, the
    minimax gradient :math:`-\mathbb{E}\,\sigma(\ell)\nabla_\theta\ell` vanishes, while the
    non-saturating one :math:`-\mathbb{E}\,\sigma(-\ell)\nabla_\theta\ell` does not.

    With ``per_member=True`` the generator and the discriminator are batched networks of :math:`M`
    independent members (:class:`gdmlib.nets.BatchedMLP`; batches of shape ``(M, n, ...)``): the
    discriminator's loss averages over the members, which Adam makes equivalent to training each
    member alone, and every record holds one value per member (see
    :func:`generator_gradient_norm`): :math:`M` runs of the experiment for about the price of one.

    Args:
        generator: The generator, never updated (its parameters' ``.grad`` are left untouched).
        critic: The discriminator (logits), trained in place.
        sample_real: Returns a data batch, on the models' device.
        sample_noise: Returns a noise batch for the discriminator's updates.
        eval_noise: A fixed noise batch on which the gradients are measured.
        steps: Number of discriminator updates, :math:`\ge 0`.
        d_opt: Optimiser over the discriminator's parameters.
        record_every: Record every this many updates.
        progress: Show a progress bar.
        per_member: Record each member of batched networks separately (see above).

    Returns:
        The :class:`SaturationCurve`.

    Raises:
        TypeError, ValueError: On invalid arguments.

    References:
        Arjovsky, Bottou. Towards principled methods for training generative adversarial
        networks. ICLR 2017, section 2.2.

    Example:
        >>> import torch
        >>> from gdmlib.nets import MLP
        >>> _ = torch.manual_seed(0)
        >>> generator, critic = torch.nn.Linear(1, 1), MLP(1, 1, hidden=(16,))
        >>> curve = saturation_curve(
        ...     generator, critic, lambda: 4.0 + 0.1 * torch.randn(64, 1), lambda: torch.randn(64, 1),
        ...     torch.randn(256, 1), steps=150, record_every=75,
        ...     d_opt=torch.optim.Adam(critic.parameters(), lr=3e-2))
        >>> curve.step, curve.fake_probability[-1] < 0.01
        ([0, 75, 150], True)
        >>> curve.minimax[-1] < curve.minimax[0] / 10, curve.non_saturating[-1] > 10 * curve.non_saturating[0]
        (True, True)
    """
    _check_module("generator", generator)
    _check_module("critic", critic)
    for name, sampler in (("sample_real", sample_real), ("sample_noise", sample_noise)):
        if not callable(sampler):
            raise TypeError(f"{name} must be a callable returning a batch, got {type(sampler).__name__}")
    if not isinstance(eval_noise, torch.Tensor):
        raise TypeError(f"eval_noise must be a torch.Tensor, got {type(eval_noise).__name__}")
    if not isinstance(d_opt, torch.optim.Optimizer):
        raise TypeError(f"d_opt must be a torch.optim.Optimizer, got {type(d_opt).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    record_every = _check_positive_int("record_every", record_every)
    if not isinstance(per_member, bool):
        raise TypeError(f"per_member must be a bool, got {type(per_member).__name__}")

    curve = SaturationCurve()

    def record(step: int) -> None:
        curve.step.append(step)
        for kind, values in (("minimax", curve.minimax), ("non_saturating", curve.non_saturating)):
            values.append(generator_gradient_norm(generator, critic, eval_noise, kind, per_member=per_member))
        with torch.no_grad():
            probabilities = torch.sigmoid(critic(generator(eval_noise)))
        if per_member:
            curve.fake_probability.append(probabilities.reshape(eval_noise.shape[0], -1).double().mean(dim=1).tolist())
        else:
            curve.fake_probability.append(float(probabilities.mean()))

    record(0)
    bar = runtime.progress(total=steps, disable=not progress, desc="discriminator")
    try:
        for step in range(1, steps + 1):
            with torch.no_grad():
                fake = generator(sample_noise())
            loss = discriminator_loss(critic(sample_real()), critic(fake))
            _finite_value(loss, step - 1, "critic")
            d_opt.zero_grad(set_to_none=True)
            loss.backward()
            d_opt.step()
            if step % record_every == 0 or step == steps:
                record(step)
            bar.update(1)
    finally:
        bar.close()
    return curve


# --------------------------------------------------------------------------------------------------
# mode collapse: packing (PacGAN) and several independent runs at the price of one


def pack_samples(samples: torch.Tensor, pack: int) -> torch.Tensor:
    r"""Concatenate consecutive groups of ``pack`` samples: ``(..., N, d)`` → ``(..., N / pack, pack·d)``.

    Row :math:`j` of the result is :math:`(x_{jm+1}, \dots, x_{jm+m})` for :math:`m` = ``pack``,
    the input of a PacGAN discriminator (Lin et al. 2018). Samples drawn independently give packs
    of :math:`m` independent samples.

    Args:
        samples: A batch of shape ``(..., N, d)`` (leading dimensions, e.g. independent runs, are
            kept), with :math:`N` divisible by ``pack``.
        pack: The packing degree :math:`m \ge 1` (1 returns ``samples`` unchanged).

    Raises:
        TypeError: If ``samples`` is not a tensor or ``pack`` not an int.
        ValueError: If ``samples`` has fewer than two dimensions, ``pack < 1`` or :math:`N` is not
            divisible by ``pack``.

    Example:
        >>> import torch
        >>> pack_samples(torch.arange(12.0).reshape(6, 2), 3).tolist()
        [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]
    """
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    pack = _check_positive_int("pack", pack)
    if samples.ndim < 2:
        raise ValueError(f"samples must have shape (..., N, d), got {tuple(samples.shape)}")
    *leading, count, dim = samples.shape
    if count % pack:
        raise ValueError(f"the number of samples N = {count} must be divisible by pack = {pack}")
    return samples.reshape(*leading, count // pack, pack * dim)


class PackedDiscriminator(nn.Module):
    r"""PacGAN's discriminator: it judges ``pack`` samples at once.

    .. math::
        D_m(x^{(1)}, \dots, x^{(m)}) = D\bigl([x^{(1)}, \dots, x^{(m)}]\bigr),

    the wrapped discriminator applied to the concatenation of :math:`m` samples
    (:func:`pack_samples`). The generator and the losses are unchanged. :func:`train_adversarial`
    draws the real and the generated batches separately, so every pack holds only data or only
    generated samples, as in the paper; a batch of :math:`N` samples gives :math:`N/m` logits, so
    draw :math:`m` times more samples to keep the number of discriminator examples.

    The packed discriminator compares the product distributions :math:`\pi^{\otimes m}` and
    :math:`p^{\otimes m}`: at its optimum the game's value is
    :math:`2\,\mathrm{JSD}(\pi^{\otimes m}, p^{\otimes m}) - \log 4`. A generator that drops modes
    has a total variation to :math:`\pi` that packing amplifies
    (:math:`\mathrm{TV}(\pi^{\otimes m}, p^{\otimes m})` grows towards 1 with :math:`m`, and faster
    for a mode-collapsed :math:`p` than for a close but diverse one), which is what penalises mode
    collapse (Lin et al. 2018, section 3).

    Args:
        critic: A discriminator whose input has ``pack · d`` features in its last dimension, e.g.
            ``MLP(pack * d, 1)`` or ``nets.BatchedMLP(runs, pack * d, 1)``.
        pack: The packing degree :math:`m \ge 1`; 1 is the usual discriminator.

    Raises:
        TypeError: If ``critic`` is not an ``nn.Module`` or ``pack`` not an int.
        ValueError: If ``pack < 1``.

    References:
        Lin, Khetan, Fanti, Oh. PacGAN: the power of two samples in generative adversarial
        networks. NeurIPS 2018.

    Example:
        >>> import torch
        >>> from gdmlib.nets import MLP
        >>> critic = PackedDiscriminator(MLP(2 * 2, 1, hidden=(8,)), pack=2)
        >>> critic(torch.randn(10, 2)).shape  # 10 samples in 2-D, 5 packs of 2
        torch.Size([5, 1])
    """

    def __init__(self, critic: nn.Module, pack: int) -> None:
        super().__init__()
        self.critic = _check_module("critic", critic)
        self.pack = _check_positive_int("pack", pack)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """The logits of the packs of ``samples`` (shape ``(..., N, d)``): shape ``(..., N / pack, out)``."""
        return self.critic(pack_samples(samples, self.pack))

    def extra_repr(self) -> str:
        return f"pack={self.pack}"


# --------------------------------------------------------------------------------------------------
# WGAN-GP for several independent runs at once


def batched_gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The gradient penalty of :func:`gradient_penalty` for a batched critic, member by member.

    For inputs of shape ``(members, N, d)`` and a critic that maps them to ``(members, N, 1)``
    (e.g. :class:`gdmlib.nets.BatchedMLP`), it returns

    .. math::
        \frac{1}{M} \sum_{k=1}^{M} \frac1N \sum_{i=1}^{N}
        \bigl(\lVert \nabla_{\hat x} f_k(\hat x_{ki}) \rVert_2 - 1\bigr)^2,
        \qquad \hat x_{ki} = \epsilon_{ki} x_{ki} + (1 - \epsilon_{ki}) \tilde x_{ki},

    one weight :math:`\epsilon_{ki} \sim U[0, 1]` per sample: the mean over the members of each
    member's own penalty, which is what :func:`critic_loss_wasserstein` (a mean over members
    too) needs so that :func:`train_adversarial` trains every member as a WGAN-GP of its own. Pass
    it as ``penalty=batched_gradient_penalty``.

    Args:
        critic: Maps ``(members, N, d)`` to ``(members, N)`` or ``(members, N, 1)`` scores, each
            score depending on its own sample only.
        real: Data, shape ``(members, N, d)``.
        fake: Generated samples of the same shape, dtype and device.
        generator: A ``torch.Generator`` for the interpolation weights (see
            :func:`gradient_penalty`).

    Returns:
        A scalar tensor.

    Raises:
        TypeError, ValueError: If the inputs are not floating tensors of the same shape
            ``(members, N, d)``, or the critic does not return one score per sample.

    References:
        Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
        NeurIPS 2017, algorithm 1.

    Example:
        >>> import torch
        >>> from gdmlib.nets import BatchedMLP
        >>> _ = torch.manual_seed(0)
        >>> critic = BatchedMLP(3, 2, 1, hidden=(8,))
        >>> value = batched_gradient_penalty(critic, torch.randn(3, 16, 2), torch.randn(3, 16, 2))
        >>> value.shape, bool(value >= 0)
        (torch.Size([]), True)
    """
    for name, tensor in (("real", real), ("fake", fake)):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor")
        if tensor.ndim != 3:
            raise ValueError(f"{name} must have shape (members, N, d), got {tuple(tensor.shape)}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    members, count, dim = real.shape

    def flat_critic(points: torch.Tensor) -> torch.Tensor:
        scores = critic(points.reshape(members, count, dim))
        if not isinstance(scores, torch.Tensor) or scores.numel() != members * count:
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(
                f"critic must return one score per sample, shape ({members}, {count}) or ({members}, {count}, 1), "
                f"got {shape}"
            )
        return scores.reshape(-1)

    # Every member has N samples, so the mean over all of them is the mean of the members' penalties.
    return gradient_penalty(flat_critic, real.reshape(-1, dim), fake.reshape(-1, dim), generator)


# --------------------------------------------------------------------------------------------------
# the Cramér critique: minibatch Wasserstein losses have biased gradients

MinibatchDistance = Literal["wasserstein", "energy"]


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def _binomial_pmf(trials: int, probability: float, like: torch.Tensor) -> torch.Tensor:
    successes = torch.arange(trials + 1, dtype=torch.float64, device=like.device)
    p = torch.tensor(probability, dtype=torch.float64, device=like.device)
    log_choose = (
        math.lgamma(trials + 1) - torch.lgamma(successes + 1) - torch.lgamma(trials - successes + 1)
    )
    # xlogy makes 0 log 0 = 0, so p = 0 and p = 1 give point masses.
    log_pmf = log_choose + torch.special.xlogy(successes, p) + torch.special.xlogy(trials - successes, 1 - p)
    return log_pmf.exp()


def bernoulli_minibatch_loss(
    theta: torch.Tensor, p_star: float, batch_size: int, distance: MinibatchDistance = "wasserstein"
) -> torch.Tensor:
    r"""The expected minibatch loss :math:`\mathbb{E}\, d(\hat P_m, Q_\theta)` of a Bernoulli model, exactly.

    The data distribution is :math:`P = \mathrm{Bernoulli}(p^*)` on :math:`\{0, 1\}`, the model
    :math:`Q_\theta = \mathrm{Bernoulli}(\theta)`, and :math:`\hat P_m` the empirical distribution of
    a minibatch of :math:`m` independent draws of :math:`P`: it is :math:`\mathrm{Bernoulli}(K/m)`
    with :math:`K \sim \mathrm{Binomial}(m, p^*)`. Between two distributions on :math:`\{0, 1\}` the
    distances are functions of the difference of the masses at 1 (all the mass that moves moves
    by 1; the CDFs differ by it on :math:`[0, 1)`):

    .. math::
        W_1(\hat P_m, Q_\theta) = \Bigl|\frac{K}{m} - \theta\Bigr|, \qquad
        \mathcal{E}(\hat P_m, Q_\theta) = 2 \int (F_{\hat P_m} - F_{Q_\theta})^2
        = 2 \Bigl(\frac{K}{m} - \theta\Bigr)^2,

    with :math:`\mathcal E` the energy distance (twice the squared Cramér distance). The expectation
    over the minibatch is the finite sum
    :math:`\sum_{k=0}^{m} \binom{m}{k} p^{*k} (1 - p^*)^{m-k}\, d_k(\theta)`, computed here exactly
    (no Monte Carlo), in float64, differentiably in ``theta``: autograd gives the *expected
    gradient* :math:`\mathbb{E}\, \partial_\theta d(\hat P_m, Q_\theta)`, the mean of the gradients
    that minibatch training follows. For :math:`W_1` it is :math:`2 P(K/m < \theta) - 1` between
    the kinks :math:`k/m`, which changes sign at the median of :math:`K/m`, not at :math:`p^*`
    (Bellemare et al. 2017, section 3). For :math:`\mathcal E` it is
    :math:`4(\theta - p^*)`, the gradient of the true :math:`\mathcal E(P, Q_\theta) = 2(\theta - p^*)^2`:
    the sample energy loss has unbiased gradients.

    Args:
        theta: Model parameters in :math:`[0, 1]`, a floating tensor of any shape.
        p_star: The data's parameter :math:`p^* \in [0, 1]`.
        batch_size: The minibatch size :math:`m \ge 1`.
        distance: ``"wasserstein"`` (:math:`W_1`, equal to :math:`W_p^p` for every :math:`p` here)
            or ``"energy"``.

    Returns:
        The expected loss, a tensor of the shape, dtype and device of ``theta``.

    Raises:
        TypeError: If ``theta`` is not a floating tensor, or ``p_star`` / ``batch_size`` have the
            wrong type.
        ValueError: If a value lies outside its range, or ``distance`` is unknown.

    References:
        Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer, Munos. The Cramer distance
        as a solution to biased Wasserstein gradients. arXiv:1705.10743, 2017, section 3.

    Example:
        >>> import torch
        >>> theta = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        >>> bernoulli_minibatch_loss(theta, 0.5, 1).tolist()  # K/m is 0 or 1, each with probability 1/2
        [0.5, 0.5, 0.5]
        >>> bernoulli_minibatch_loss(theta, 0.5, 1, "energy").tolist()  # 2 (theta - p*)^2 + 2 p*(1 - p*) / m
        [1.0, 0.5, 1.0]
    """
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta must be a floating-point torch.Tensor, got {type(theta).__name__}")
    if bool(((theta < 0) | (theta > 1)).any()) or not bool(torch.isfinite(theta).all()):
        raise ValueError("theta must lie in [0, 1]")
    p_star = _check_probability("p_star", p_star)
    batch_size = _check_positive_int("batch_size", batch_size)
    if distance not in ("wasserstein", "energy"):
        raise ValueError(f"distance must be 'wasserstein' or 'energy', got {distance!r}")
    weights = _binomial_pmf(batch_size, p_star, theta)
    means = torch.arange(batch_size + 1, dtype=torch.float64, device=theta.device) / batch_size
    gaps = means - theta.double().unsqueeze(-1)
    losses = gaps.abs() if distance == "wasserstein" else 2 * gaps.square()
    return (losses * weights).sum(dim=-1).to(theta.dtype)


def bernoulli_minibatch_minimizer(p_star: float, batch_size: int, distance: MinibatchDistance = "wasserstein") -> float:
    r"""The :math:`\theta \in [0, 1]` that minimises :func:`bernoulli_minibatch_loss`.

    - ``"wasserstein"``: :math:`\theta \mapsto \mathbb{E}\lvert K/m - \theta\rvert` is convex and
      piecewise linear with kinks at :math:`k/m`, so it is evaluated at the :math:`m + 1` kinks and
      the smallest minimising kink is returned: a median of :math:`K/m` (when
      :math:`P(K \le k) = 1/2` exactly, all of :math:`[k/m, (k+1)/m]` minimises).
    - ``"energy"``: the expected loss is a quadratic in :math:`\theta`, so its derivative is affine;
      the derivative is taken by autograd at :math:`\theta = 0` and :math:`1` and its root
      :math:`g(0) / (g(0) - g(1))` returned (it is :math:`p^*`, up to rounding).

    Both use the same exact binomial sum as :func:`bernoulli_minibatch_loss`.

    Args:
        p_star: The data's parameter :math:`p^* \in [0, 1]`.
        batch_size: The minibatch size :math:`m \ge 1`.
        distance: ``"wasserstein"`` or ``"energy"``.

    Returns:
        The minimiser, a float.

    Raises:
        TypeError, ValueError: As :func:`bernoulli_minibatch_loss`.

    References:
        Bellemare et al. The Cramer distance as a solution to biased Wasserstein gradients.
        arXiv:1705.10743, 2017, section 3.

    Example:
        >>> bernoulli_minibatch_minimizer(0.65, 1), bernoulli_minibatch_minimizer(0.65, 2)  # not 0.65
        (1.0, 0.5)
        >>> round(bernoulli_minibatch_minimizer(0.65, 2, "energy"), 9)
        0.65
    """
    p_star = _check_probability("p_star", p_star)
    batch_size = _check_positive_int("batch_size", batch_size)
    if distance == "wasserstein":
        kinks = torch.arange(batch_size + 1, dtype=torch.float64) / batch_size
        return float(kinks[bernoulli_minibatch_loss(kinks, p_star, batch_size, distance).argmin()])
    if distance == "energy":
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
        (slopes,) = torch.autograd.grad(bernoulli_minibatch_loss(ends, p_star, batch_size, distance).sum(), ends)
        return float(slopes[0] / (slopes[0] - slopes[1]))
    raise ValueError(f"distance must be 'wasserstein' or 'energy', got {distance!r}")
