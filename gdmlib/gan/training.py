r"""The adversarial training loop of the book: :func:`train_adversarial` and its history.

:math:`k` critic updates per generator update (Goodfellow et al. 2014, algorithm 1; Arjovsky et al.
2017, algorithm 1; Gulrajani et al. 2017, algorithm 1), for GAN, WGAN, WGAN-GP and AAE/WAE-GAN:
device-aware, with a progress bar, the non-finite guards of :mod:`gdmlib.training` (every loss
before its backward pass, both models' parameters after every generator step) and exact
checkpoint/resume through :func:`gdmlib.training.save_checkpoint` and
:func:`gdmlib.training.rng_state`. Used by chapters 03, 04 and 08.

References:
    Goodfellow et al. Generative adversarial nets. NeurIPS 2014.

    Arjovsky, Chintala, Bottou. Wasserstein generative adversarial networks. ICML 2017.

    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
    NeurIPS 2017.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gdmlib import runtime
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.gan.losses import discriminator_loss, generator_loss
from gdmlib.lipschitz import clip_weights
from gdmlib.training import (
    check_finite_parameters,
    finite_loss,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

__all__ = ["AdversarialHistory", "train_adversarial"]

_CHECKPOINT_FORMAT = 1
# What NonFiniteLossError suggests for an adversarial loop.
_HINT = (
    "lower the learning rate, check the data for NaN/inf, or use the non-saturating / "
    "Wasserstein losses"
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
    step, the history and the random states (:func:`gdmlib.training.rng_state`) are saved every
    ``checkpoint_every`` steps and at the end, atomically (:func:`gdmlib.training.save_checkpoint`).
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
            ``penalty_weight``, e.g. :func:`~gdmlib.lipschitz.gradient_penalty`.
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
            or infinite (raised before the backward pass of that loss), or the first parameter
            of either model that is no longer finite after the step's updates.
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
        >>> # the generator's mean moved to the data's
        >>> len(history), abs(generator.bias.item() - 2.0) < 1.0
        (200, True)
    """
    for name, module in (("generator", generator), ("critic", critic)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    for name, sampler in (("sample_real", sample_real), ("sample_noise", sample_noise)):
        if not callable(sampler):
            raise TypeError(
                f"{name} must be a callable returning a batch, got {type(sampler).__name__}"
            )
    for name, optimizer in (("g_opt", g_opt), ("d_opt", d_opt)):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"{name} must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    critic_steps = _check_positive_int("critic_steps", critic_steps)
    history_every = _check_positive_int("history_every", history_every)
    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    if clip is not None and (
        isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < math.inf
    ):
        raise ValueError(f"clip must be a positive number or None, got {clip!r}")
    if penalty is not None and not callable(penalty):
        raise TypeError("penalty must be a callable (critic, real, fake) -> tensor, or None")
    if (
        isinstance(penalty_weight, bool)
        or not isinstance(penalty_weight, (int, float))
        or not math.isfinite(penalty_weight)
        or penalty_weight < 0
    ):
        raise ValueError(
            f"penalty_weight must be a non-negative finite number, got {penalty_weight!r}"
        )
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
        checkpoint = load_checkpoint(path)
        if checkpoint.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path} is not a train_adversarial checkpoint "
                f"(format {checkpoint.get('format')!r}); delete it or pass another checkpoint_path"
            )
        if checkpoint["critic_steps"] != critic_steps:
            raise ValueError(
                f"{path} was written with critic_steps={checkpoint['critic_steps']}, "
                f"not {critic_steps}; delete it to start afresh"
            )
        generator.load_state_dict(checkpoint["generator"])
        critic.load_state_dict(checkpoint["critic"])
        g_opt.load_state_dict(checkpoint["g_opt"])
        d_opt.load_state_dict(checkpoint["d_opt"])
        history = AdversarialHistory.from_dict(checkpoint["history"])
        start = int(checkpoint["step"])
        set_rng_state(checkpoint["rng"])

    def batch(sampler: Callable[[], torch.Tensor], name: str) -> torch.Tensor:
        values = sampler()
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"{name} must return a torch.Tensor, got {type(values).__name__}")
        return values if values.device == device else values.to(device)

    def save(next_step: int) -> None:
        if path is None:
            return
        save_checkpoint(
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
                "rng": rng_state(),
            },
        )

    bar = runtime.progress(
        total=steps, initial=min(start, steps), disable=not progress, desc="training"
    )
    try:
        for step in range(start, steps):
            critic_total = penalty_total = 0.0
            for update in range(critic_steps):
                detail = f" (critic update {update + 1} of {critic_steps})"
                real = batch(sample_real, "sample_real")
                with torch.no_grad():
                    fake = generator(batch(sample_noise, "sample_noise"))
                d_loss = d_loss_fn(critic(real), critic(fake))
                critic_total += finite_loss(d_loss, step, "critic", detail, _HINT)
                if penalty is not None:
                    penalty_value = penalty(critic, real, fake)
                    penalty_total += finite_loss(penalty_value, step, "penalty", detail, _HINT)
                    d_loss = d_loss + penalty_weight * penalty_value
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                if clip is not None:
                    clip_weights(critic, clip)

            # The generator's backward pass needs no critic gradients; frozen flags are restored.
            trainable = [parameter for parameter in critic.parameters() if parameter.requires_grad]
            for parameter in trainable:
                parameter.requires_grad_(False)
            try:
                noise = batch(sample_noise, "sample_noise")
                fake = generator(noise)
                g_loss = g_loss_fn(critic(fake))
                generator_value = finite_loss(g_loss, step, "generator", hint=_HINT)
                if generator_extra_loss is not None:
                    extra = generator_extra_loss(noise, fake)
                    extra_value = finite_loss(extra, step, "generator_extra", hint=_HINT)
                    g_loss = g_loss + extra
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
            finally:
                for parameter in trainable:
                    parameter.requires_grad_(True)
            # One fused reduction per model: a finite loss can still give an infinite update.
            check_finite_parameters(critic, step, _HINT)
            check_finite_parameters(generator, step, _HINT)

            if step % history_every == 0:
                history.step.append(step)
                history.critic_loss.append(critic_total / critic_steps)
                history.generator_loss.append(generator_value)
                if penalty is not None:
                    history.penalty.append(penalty_total / critic_steps)
                if generator_extra_loss is not None:
                    history.generator_extra.append(extra_value)
                bar.set_postfix(
                    critic=f"{history.critic_loss[-1]:.3g}",
                    generator=f"{generator_value:.3g}",
                    refresh=False,
                )
            bar.update(1)
            if callback is not None:
                callback(step, history)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save(step + 1)
    finally:
        bar.close()
    return history
