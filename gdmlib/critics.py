r"""Neural critics that estimate the Wasserstein-1 distance between two samples.

Used in chapter 07 (critics of the Kantorovich–Rubinstein dual and their Lipschitz constraints).

By the Kantorovich–Rubinstein duality,

.. math::
    W_1(P, Q) = \sup_{\lVert f \rVert_L \le 1} \mathbb{E}_{P} f - \mathbb{E}_{Q} f ,

so a network :math:`f_\theta` kept (close to) 1-Lipschitz and trained to maximise the gap
:math:`\frac1n \sum_i f_\theta(x_i) - \frac1m \sum_j f_\theta(y_j)` estimates :math:`W_1` from
samples :math:`x_i \sim P`, :math:`y_j \sim Q`. This is the critic of a Wasserstein GAN, trained
here against *fixed* samples. The three ways of keeping the critic Lipschitz are

- ``"clip"``: clamp every weight to :math:`[-c, c]` after each step (Arjovsky et al. 2017). The
  critic is then :math:`K`-Lipschitz for some unknown :math:`K`, so its gap estimates
  :math:`K\,W_1`; :attr:`CriticFit.lipschitz` measures :math:`K` on the data and
  :attr:`CriticFit.normalized_estimate` divides by it;
- ``"gp"``: add :math:`\lambda\,\mathbb{E}(\lVert\nabla f(\hat x)\rVert - 1)^2` on random
  interpolates :math:`\hat x` (Gulrajani et al. 2017), a soft constraint: the critic's slope
  settles above 1 (at :math:`1 + W_1/(2\lambda)` for a linear critic) so the gap overshoots
  :math:`W_1`, and since the penalty is symmetric in the slope's sign, a critic too narrow to
  bend can stay stuck with the wrong sign, a local optimum;
- ``"sn"``: divide every weight matrix by its largest singular value (Miyato et al. 2018), so that
  with 1-Lipschitz activations :math:`\lVert f \rVert_L \le \prod_l \lVert W_l \rVert_2 = 1`.

Two facts to keep in mind when reading an estimate. For a critic that is exactly 1-Lipschitz the
gap on the *training samples* is at most :math:`W_1(\hat P_n, \hat Q_m)`, the exact distance between
the empirical measures, which overestimates :math:`W_1(P, Q)` on average (the empirical measures
are farther apart than the populations). On *fresh* samples the gap of a fixed critic is an unbiased
estimate of :math:`\mathbb{E}_P f - \mathbb{E}_Q f \le W_1(P, Q)`: a lower bound in the population.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(256, 1, generator=g), torch.randn(256, 1, generator=g) + 2.0
    >>> fit = train_critic(x, y, "sn", hidden=(32, 32), steps=300, seed=0)
    >>> from gdmlib.ot import wasserstein
    >>> exact = float(wasserstein(x, y, p=1))  # W_1 of the samples, near W_1(N(0, 1), N(2, 1)) = 2
    >>> round(exact, 2), round(fit.estimate, 2), round(fit.lipschitz, 2)
    (2.07, 2.07, 1.0)

References:
    Arjovsky, Chintala & Bottou (2017). Wasserstein generative adversarial networks. ICML.

    Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville (2017). Improved training of Wasserstein
    GANs. NeurIPS.

    Miyato, Kataoka, Koyama & Yoshida (2018). Spectral normalization for generative adversarial
    networks. ICLR.

    Villani (2009). Optimal Transport: Old and New, Remark 6.5. Springer.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from gdmlib import runtime
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib._checks import (
    check_positive_number,
    check_same_dtype_and_device,
    check_sample_pair,
    check_seed,
)
from gdmlib.lipschitz import _scores, clip_weights, gradient_norms, gradient_penalty
from gdmlib.nets import MLP, BatchedMLP
from gdmlib.training import check_finite_parameters, finite_loss

__all__ = [
    "BatchedCritic",
    "CriticEnsembleFit",
    "CriticFit",
    "LipschitzMethod",
    "critic_gap",
    "gradient_norms",
    "make_critic",
    "train_critic",
    "train_critics",
]

LipschitzMethod = Literal["clip", "gp", "sn"]
_METHODS = ("clip", "gp", "sn")
# Spectral normalisation runs one power iteration per training forward pass, so its estimate of each
# largest singular value lags behind weights that Adam keeps moving (measured: gradient norms up to
# 1.04 after 300 steps). This many extra iterations at the end make the 1-Lipschitz bound hold.
_SN_SETTLE_ITERATIONS = 50
# The non-finite guards: every step on the CPU (a loss read costs nothing there); every this many
# steps on an accelerator, where each check is a host sync (the loss of every step is still
# checked, so the error names the first bad step; the parameters are checked at the same cadence).
_ACCELERATOR_CHECK_EVERY = 25
_HINT = "lower lr (or raise clip for 'clip')"


def _check_every(device: torch.device) -> int:
    return 1 if device.type == "cpu" else _ACCELERATOR_CHECK_EVERY


def _check_pending(pending: list[tuple[int, Tensor]], name: str) -> None:
    """Raise NonFiniteLossError for the first non-finite loss of ``(step, loss)`` pairs; clear
    them."""
    if len(pending) == 1:
        finite_loss(pending[0][1], pending[0][0], name, hint=_HINT)
    elif not bool(torch.isfinite(torch.stack([loss for _, loss in pending])).all()):
        for step, loss in pending:
            finite_loss(loss, step, name, hint=_HINT)
    pending.clear()


def _check_method(method: object) -> str:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS} ('clip', 'gp' or 'sn'), got {method!r}")
    return str(method)


def _check_samples(x: object, y: object) -> tuple[Tensor, Tensor]:
    """The two samples as ``(n, d)`` and ``(m, d)``: :func:`gdmlib._checks.check_sample_pair`."""
    return check_sample_pair(x, y, min_points=2, finite=True)


def _wasserstein_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""The critic's loss :math:`\mathbb{E}_{\hat Q} f - \mathbb{E}_{\hat P} f` (minus the gap)."""
    return fake_scores.mean() - real_scores.mean()


def make_critic(
    dim: int,
    method: LipschitzMethod,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
) -> MLP:
    r"""A critic :math:`f: \mathbb{R}^d \to \mathbb{R}` for the Lipschitz method ``method``.

    An :class:`gdmlib.nets.MLP` with one output, spectrally normalised when ``method == "sn"``
    (every linear layer, so that the network is 1-Lipschitz with a 1-Lipschitz activation such as
    ReLU); plain otherwise.

    Args:
        dim: The dimension :math:`d` of the samples.
        method: ``"clip"``, ``"gp"`` or ``"sn"``.
        hidden: Widths of the hidden layers.
        activation: The nonlinearity (see :func:`gdmlib.nets.make_activation`); keep it
            1-Lipschitz (``"relu"``, ``"tanh"``...) for ``"sn"``.

    Raises:
        ValueError: On an unknown method or invalid sizes.

    Example:
        >>> critic = make_critic(2, "sn", hidden=(8,))
        >>> critic(torch.zeros(5, 2)).shape
        torch.Size([5, 1])
    """
    method = _check_method(method)
    return MLP(dim, 1, hidden=hidden, activation=activation, spectral_norm=method == "sn")


def critic_gap(critic: nn.Module, x: Tensor, y: Tensor) -> float:
    r"""The gap :math:`\frac1n \sum_i f(x_i) - \frac1m \sum_j f(y_j)` of a critic on two samples.

    The critic is evaluated in evaluation mode (spectral normalisation then uses its stored
    singular vectors, without a power-iteration update) and without gradients; its mode is restored.

    Args:
        critic: Maps ``(N, d)`` to ``(N,)`` or ``(N, 1)`` scores.
        x: A sample of :math:`P`, ``(n, d)`` or ``(n,)``.
        y: A sample of :math:`Q`, ``(m, d)`` or ``(m,)``, same dtype and device.

    Returns:
        The gap, a Python float (the negative of :func:`gdmlib.gan.critic_loss_wasserstein`).

    Example:
        >>> identity = torch.nn.Linear(1, 1)
        >>> with torch.no_grad():
        ...     _ = identity.weight.fill_(1.0), identity.bias.fill_(0.0)
        >>> critic_gap(identity, torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        2.0
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
    x, y = _check_samples(x, y)
    was_training = critic.training
    critic.eval()
    try:
        with torch.no_grad():
            loss = _wasserstein_loss(_scores(critic, x), _scores(critic, y))
    finally:
        critic.train(was_training)
    return -float(loss)


@dataclass
class CriticFit:
    r"""What :func:`train_critic` returns.

    Attributes:
        critic: The trained critic (in evaluation mode, on the samples' device and dtype).
        method: The Lipschitz method, ``"clip"``, ``"gp"`` or ``"sn"``.
        estimate: The gap :math:`\frac1n\sum_i f(x_i) - \frac1m\sum_j f(y_j)` on the training
            samples after training (:func:`critic_gap`): the estimate of :math:`W_1` for ``"gp"``
            and ``"sn"``.
        lipschitz: The largest gradient norm of the critic on the samples and on as many random
            interpolates between them (:func:`gradient_norms`): an empirical Lipschitz constant.
        history: The training gap (the negative critic loss, without the penalty) at every step.
    """

    critic: nn.Module
    method: str
    estimate: float
    lipschitz: float
    history: list[float] = field(default_factory=list)

    @property
    def normalized_estimate(self) -> float:
        r"""The gap divided by the empirical Lipschitz constant, :math:`\widehat{W}_1 / \hat K`.

        The way to read a weight-clipped critic, which is :math:`K`-Lipschitz with :math:`K` set by
        the clipping bound and the architecture rather than 1. Since :math:`\hat K` is measured
        on finitely many points it can underestimate :math:`K`.
        """
        return self.estimate / self.lipschitz if self.lipschitz > 0 else 0.0


def train_critic(
    x: Tensor,
    y: Tensor,
    method: LipschitzMethod = "gp",
    *,
    critic: nn.Module | None = None,
    hidden: Sequence[int] = (64, 64),
    steps: int = 500,
    lr: float = 3e-3,
    batch_size: int | None = None,
    penalty_weight: float = 10.0,
    clip: float = 0.01,
    seed: int | None = None,
    progress: bool = False,
) -> CriticFit:
    r"""Train a critic to maximise :math:`\mathbb{E}_{\hat P} f - \mathbb{E}_{\hat Q} f` on two
    samples.

    Each step draws a batch of each sample (the whole samples when ``batch_size`` is ``None``) and
    takes one Adam step (:math:`\beta = (0.5, 0.9)`, as in Gulrajani et al.) on the critic loss
    :func:`gdmlib.gan.critic_loss_wasserstein`
    :math:`= \mathbb{E}_{\hat Q} f - \mathbb{E}_{\hat P} f`, with the Lipschitz constraint of
    ``method``:

    - ``"clip"``: :func:`gdmlib.lipschitz.clip_weights` with bound ``clip`` after every step;
    - ``"gp"``: plus ``penalty_weight`` times :func:`gdmlib.lipschitz.gradient_penalty`, on
      interpolates between the ``x`` batch and as many points drawn from ``y``;
    - ``"sn"``: a spectrally normalised critic (:func:`make_critic`), no penalty. Power iteration
      (one step per forward pass) lags behind the moving weights, so 50 extra iterations are run
      after training: the returned critic is then 1-Lipschitz up to their convergence.

    The gap is then measured on the full samples (:attr:`CriticFit.estimate`).

    Args:
        x: A sample of :math:`P`, ``(n, d)`` or ``(n,)``, :math:`n \ge 2`.
        y: A sample of :math:`Q`, ``(m, d)`` or ``(m,)``, the same dtype and device.
        method: ``"clip"``, ``"gp"`` or ``"sn"``.
        critic: A critic to train in place (moved to the samples' device and dtype); by default
            ``make_critic(d, method, hidden)``. For ``"sn"`` it must be spectrally normalised
            already.
        hidden: Hidden widths of the default critic.
        steps: Number of optimiser steps.
        lr: Adam's learning rate.
        batch_size: Points drawn (with replacement) from each sample per step; all when ``None``.
        penalty_weight: :math:`\lambda` of the gradient penalty (``"gp"`` only).
        clip: The clipping bound :math:`c` (``"clip"`` only).
        seed: Seeds the default critic's initialisation, the batches and the interpolation weights,
            without touching the global random state; when ``None`` they come from the global state.
        progress: Show a progress bar (:func:`gdmlib.runtime.progress`).

    Returns:
        A :class:`CriticFit`.

    Raises:
        TypeError: If a sample is not a floating-point tensor or ``critic`` not an ``nn.Module``.
        ValueError: On mismatched samples, an unknown method, or invalid hyperparameters.
        gdmlib.training.NonFiniteLossError: A ``FloatingPointError`` naming the first step whose
            loss (penalty included) is NaN or infinite, raised before that step's backward pass on
            the CPU; or the first parameter that is no longer finite.

    Example:
        >>> g = torch.Generator().manual_seed(1)
        >>> x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
        >>> fit = train_critic(x, y, "sn", hidden=(16,), steps=100, seed=0)
        >>> fit.lipschitz <= 1.01, fit.estimate < 0.5  # same distribution: a small gap
        (True, True)

    References:
        Arjovsky, Chintala & Bottou (2017). Wasserstein GAN. ICML, algorithm 1.

        Gulrajani et al. (2017). Improved training of Wasserstein GANs. NeurIPS, algorithm 1.

        Miyato et al. (2018). Spectral normalization for generative adversarial networks. ICLR.
    """
    x, y = _check_samples(x, y)
    method = _check_method(method)
    steps = _check_positive_int("steps", steps)
    lr = check_positive_number("lr", lr)
    penalty_weight = check_positive_number("penalty_weight", penalty_weight, allow_zero=True)
    clip = check_positive_number("clip", clip)
    if batch_size is not None:
        batch_size = _check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    if critic is None:
        if seed is None:
            critic = make_critic(x.shape[1], method, hidden)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                critic = make_critic(x.shape[1], method, hidden)
    elif not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module or None, got {type(critic).__name__}")
    critic.to(device=x.device, dtype=x.dtype)
    critic.train()
    # Index draws on the CPU: a CPU generator is reproducible whatever the samples' device.
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    n, m = x.shape[0], y.shape[0]

    def draw(points: Tensor, size: int) -> Tensor:
        index = torch.randint(points.shape[0], (size,), generator=generator)
        return points[index.to(points.device)]

    check_every, pending = _check_every(x.device), []
    with runtime.single_threaded(x.device):
        gaps = []
        bar = runtime.progress(total=steps, disable=not progress, desc=f"critic ({method})")
        try:
            for step in range(steps):
                real = x if batch_size is None else draw(x, batch_size)
                fake = y if batch_size is None else draw(y, batch_size)
                loss = _wasserstein_loss(_scores(critic, real), _scores(critic, fake))
                gaps.append(-loss.detach())
                if method == "gp":
                    partners = fake if fake.shape[0] == real.shape[0] else draw(y, real.shape[0])
                    weights = torch.rand(real.shape[0], generator=generator, dtype=real.dtype).to(
                        real.device
                    )
                    penalty = gradient_penalty(critic, real, partners, weights=weights)
                    loss = loss + penalty_weight * penalty
                pending.append((step, loss.detach()))
                checking = (step + 1) % check_every == 0 or step + 1 == steps
                if checking:  # before the backward pass: on the CPU the parameters stay finite
                    _check_pending(pending, "critic")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if method == "clip":
                    clip_weights(critic, clip)
                if checking:
                    check_finite_parameters(critic, step, _HINT)
                bar.update(1)
        finally:
            bar.close()
    if method == "sn":
        with torch.no_grad():
            for _ in range(_SN_SETTLE_ITERATIONS):
                critic(x[:1])  # in training mode, each call advances every power iteration
    history = torch.stack(gaps).tolist()

    critic.eval()
    size = max(n, m)
    weights = torch.rand(size, 1, generator=generator, dtype=x.dtype).to(x.device)
    interpolates = weights * draw(x, size) + (1 - weights) * draw(y, size)
    lipschitz = float(gradient_norms(critic, torch.cat([x, y, interpolates])).max())
    return CriticFit(
        critic=critic,
        method=method,
        estimate=critic_gap(critic, x, y),
        lipschitz=lipschitz,
        history=history,
    )


class BatchedCritic(nn.Module):
    r"""Several independent critics :math:`f_k: \mathbb{R}^d \to \mathbb{R}`, evaluated together.

    A :class:`gdmlib.nets.BatchedMLP` with one output: an input ``(members, N, d)`` gives scores
    ``(members, N, 1)``, row :math:`k` through member :math:`k` alone. With ``spectral_norm=True``
    every weight matrix :math:`W_{k,l}` of every member is divided by an estimate of its largest
    singular value, :math:`\sigma_{k,l} = u^\top W_{k,l} v`, with the singular vectors
    :math:`u, v` kept in buffers and refined by one power iteration per forward pass in training
    mode (none in evaluation mode), as :func:`torch.nn.utils.parametrizations.spectral_norm` does
    for one network (Miyato et al. 2018). With ReLU activations each member is then
    :math:`\prod_l \lVert W_{k,l} / \sigma_{k,l} \rVert_2`-Lipschitz, 1 once the power
    iterations have converged.

    Args:
        members: The number of independent critics.
        dim: The dimension :math:`d` of the points.
        hidden: Widths of the hidden layers.
        spectral_norm: Normalise every weight matrix by its largest singular value.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> critics = BatchedCritic(3, 2, hidden=(8,), spectral_norm=True)
        >>> critics(torch.zeros(3, 5, 2)).shape
        torch.Size([3, 5, 1])
    """

    def __init__(
        self, members: int, dim: int, hidden: Sequence[int] = (64, 64), spectral_norm: bool = False
    ) -> None:
        super().__init__()
        self.net = BatchedMLP(members, dim, 1, hidden=hidden, activation="relu")
        self.members, self.dim, self.spectral_norm = (
            self.net.members,
            self.net.in_features,
            bool(spectral_norm),
        )
        if self.spectral_norm:
            for index, weight in enumerate(self.net.weights):
                # weight is (members, in, out) and acts as x @ W: u lives in R^out, v in R^in.
                u = nn.functional.normalize(torch.randn(members, weight.shape[2]), dim=1)
                v = nn.functional.normalize(torch.randn(members, weight.shape[1]), dim=1)
                self.register_buffer(f"_u{index}", u)
                self.register_buffer(f"_v{index}", v)

    @torch.no_grad()
    def power_iteration(self, iterations: int = 1) -> None:
        """Refine the singular-vector estimates of every weight by ``iterations`` power steps."""
        if not self.spectral_norm:
            return
        for index, weight in enumerate(self.net.weights):
            u, v = getattr(self, f"_u{index}"), getattr(self, f"_v{index}")
            for _ in range(iterations):
                v = nn.functional.normalize(torch.einsum("kio,ko->ki", weight, u), dim=1, eps=1e-12)
                u = nn.functional.normalize(torch.einsum("kio,ki->ko", weight, v), dim=1, eps=1e-12)
            getattr(self, f"_u{index}").copy_(u)
            getattr(self, f"_v{index}").copy_(v)

    def effective_weights(self) -> list[Tensor]:
        """The weights the forward pass uses, ``(members, in, out)`` each (normalised for
        ``spectral_norm``)."""
        weights = list(self.net.weights)
        if not self.spectral_norm:
            return weights
        normalised = []
        for index, weight in enumerate(weights):
            # Clones: a later forward pass refines the buffers in place, under this pass's graph.
            u, v = getattr(self, f"_u{index}").clone(), getattr(self, f"_v{index}").clone()
            sigma = torch.einsum("ki,kio,ko->k", v, weight, u)
            normalised.append(weight / sigma[:, None, None])
        return normalised

    def forward(self, x: Tensor) -> Tensor:
        """Scores ``(members, N, 1)`` of points ``(members, N, d)``, row :math:`k` by critic
        :math:`k`."""
        if x.dim() != 3 or x.shape[0] != self.members or x.shape[2] != self.dim:
            raise ValueError(
                f"BatchedCritic expects points of shape ({self.members}, N, {self.dim}), got "
                f"{tuple(x.shape)}"
            )
        if self.spectral_norm and self.training:
            self.power_iteration(1)
        weights = self.effective_weights()
        for index, (weight, bias) in enumerate(zip(weights, self.net.biases)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(weights) - 1:
                x = torch.relu(x)
        return x


class _MemberCritic(nn.Module):
    """One member of a :class:`BatchedCritic`, mapping ``(N, d)`` to ``(N, 1)``."""

    def __init__(self, critic: BatchedCritic, index: int) -> None:
        super().__init__()
        self.critic, self.index = critic, index

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"points must have shape (N, d), got {tuple(x.shape)}")
        return self.critic(x.unsqueeze(0).expand(self.critic.members, *x.shape))[self.index]


def _check_member_samples(x: object, y: object) -> tuple[Tensor, Tensor]:
    """Validate ``(members, n, d)`` and ``(members, m, d)`` samples."""
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
        if value.dim() != 3:
            raise ValueError(f"{name} must have shape (members, n, d), got {tuple(value.shape)}")
        if value.shape[1] < 2:
            raise ValueError(f"{name} needs at least 2 points per member, got {value.shape[1]}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    check_same_dtype_and_device(x, y)
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"x and y must have the same members and dimension, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    return x, y


@dataclass
class CriticEnsembleFit:
    r"""What :func:`train_critics` returns: one independent critic per member.

    Attributes:
        critic: The trained :class:`BatchedCritic` (in evaluation mode).
        method: The Lipschitz method, ``"clip"``, ``"gp"`` or ``"sn"``.
        estimates: ``(members,)``, each critic's gap on its own training samples.
        lipschitz: ``(members,)``, each critic's largest gradient norm on its samples and as many
            random interpolates between them: an empirical Lipschitz constant :math:`\hat K_k`.
        history: ``(steps, members)``, the training gaps (without the penalty).
        penalty: ``(members,)``, :math:`\frac1N \sum_i (\lVert \nabla f_k(\hat x_i) \rVert - 1)^2`
            on the interpolates used for :attr:`lipschitz`, so that for ``"gp"``
            ``estimates - penalty_weight * penalty`` is each critic's penalised objective (the
            way to pick the best of several restarts on the same samples).
    """

    critic: BatchedCritic
    method: str
    estimates: Tensor
    lipschitz: Tensor
    history: Tensor
    penalty: Tensor

    def member(self, index: int) -> CriticFit:
        """Critic ``index`` alone, as a :class:`CriticFit` whose critic maps ``(N, d)`` to ``(N,
        1)``."""
        members = self.critic.members
        if (
            isinstance(index, bool)
            or not isinstance(index, numbers.Integral)
            or not -members <= index < members
        ):
            raise IndexError(f"member index must be an int in [0, {members}), got {index!r}")
        index = int(index) % members
        return CriticFit(
            critic=_MemberCritic(self.critic, index).eval(),
            method=self.method,
            estimate=float(self.estimates[index]),
            lipschitz=float(self.lipschitz[index]),
            history=self.history[:, index].tolist(),
        )

    @property
    def scale(self) -> Tensor:
        r"""``(members,)``: :math:`\hat K_k` for ``"clip"`` (read in units of its Lipschitz
        constant), else 1."""
        return self.lipschitz if self.method == "clip" else torch.ones_like(self.lipschitz)

    @property
    def normalized_estimates(self) -> Tensor:
        r"""``(members,)``: :math:`\widehat W_k / \hat K_k`, the estimates in units of each critic's
        :math:`\hat K_k`."""
        return self.estimates / self.lipschitz.clamp_min(1e-12)

    def gaps(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        r"""Each critic's gap on samples ``x``, ``y`` and its standard error, divided by
        :attr:`scale`.

        ``x`` is ``(members, n, d)`` (member :math:`k` scores row :math:`k`) or ``(n, d)`` (every
        member scores the same points); likewise ``y``. The standard error
        :math:`\sqrt{(s_x^2 / n + s_y^2 / m)}` treats the two samples as independent and the critic
        as fixed: for fresh samples it is the error of the gap as an estimate of
        :math:`\mathbb{E}_P f_k - \mathbb{E}_Q f_k`.

        Returns:
            ``(gap, standard_error)``, both ``(members,)``.
        """
        members = self.critic.members
        x = (
            x.unsqueeze(0).expand(members, *x.shape)
            if isinstance(x, Tensor) and x.dim() == 2
            else x
        )
        y = (
            y.unsqueeze(0).expand(members, *y.shape)
            if isinstance(y, Tensor) and y.dim() == 2
            else y
        )
        x, y = _check_member_samples(x, y)
        self.critic.eval()
        with torch.no_grad():
            f_x, f_y = self.critic(x)[..., 0], self.critic(y)[..., 0]
        gap = f_x.mean(1) - f_y.mean(1)
        se = (f_x.var(1) / f_x.shape[1] + f_y.var(1) / f_y.shape[1]).sqrt()
        return gap / self.scale, se / self.scale


def train_critics(
    x: Tensor,
    y: Tensor,
    method: LipschitzMethod = "gp",
    *,
    hidden: Sequence[int] = (64, 64),
    steps: int = 500,
    lr: float = 3e-3,
    penalty_weight: float = 10.0,
    clip: float = 0.01,
    seed: int = 0,
) -> CriticEnsembleFit:
    r"""Train ``members`` independent critics at once, critic :math:`k` on the samples ``x[k]``,
    ``y[k]``.

    The batched counterpart of :func:`train_critic` (full batches): the same loss, Adam
    (:math:`\beta = (0.5, 0.9)`) and Lipschitz constraint, applied to a :class:`BatchedCritic` whose
    members share no parameter and no data. The loss is the *sum* of the members' losses, so each
    member gets exactly the gradient it would get alone, and Adam treats every parameter separately:
    the members are independent runs with independent initialisations (and, when the rows of
    ``x``, ``y`` are independent draws, independent data), at about the cost of one on a CPU. Use it
    to report a trained result as a mean over runs with its standard error.

    Args:
        x: Samples of :math:`P`, ``(members, n, d)``.
        y: Samples of :math:`Q`, ``(members, m, d)``, the same dtype and device.
        method: ``"clip"``, ``"gp"`` or ``"sn"``.
        hidden: Hidden widths of every critic.
        steps: Number of optimiser steps.
        lr: Adam's learning rate.
        penalty_weight: :math:`\lambda` of the gradient penalty (``"gp"`` only).
        clip: The clipping bound :math:`c` (``"clip"`` only).
        seed: Seeds the initialisation and the interpolation weights, without touching the global
            random state.

    Returns:
        A :class:`CriticEnsembleFit`.

    Raises:
        TypeError: If a sample is not a floating-point tensor or ``seed`` not an int.
        ValueError: On mismatched shapes, an unknown method or invalid hyperparameters.
        gdmlib.training.NonFiniteLossError: A ``FloatingPointError`` naming the first step whose
            loss (penalty included) is NaN or infinite, raised before that step's backward pass on
            the CPU; or the first parameter that is no longer finite.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(4, 256, 1, generator=g), torch.randn(4, 256, 1, generator=g) + 2.0
        >>> fit = train_critics(x, y, "sn", hidden=(16,), steps=200, seed=0)
        >>> fit.estimates.shape, bool((fit.lipschitz <= 1.01).all())
        (torch.Size([4]), True)
    """
    x, y = _check_member_samples(x, y)
    method = _check_method(method)
    steps = _check_positive_int("steps", steps)
    lr = check_positive_number("lr", lr)
    penalty_weight = check_positive_number("penalty_weight", penalty_weight, allow_zero=True)
    clip = check_positive_number("clip", clip)
    if seed is None:
        raise TypeError("seed must be an int: the members' initialisation is drawn from it")
    seed = check_seed(seed)
    members, n, m = x.shape[0], x.shape[1], y.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        critic = BatchedCritic(members, x.shape[2], hidden, spectral_norm=method == "sn")
    critic.to(device=x.device, dtype=x.dtype)
    critic.train()
    generator = torch.Generator().manual_seed(int(seed))  # on the CPU: reproducible on any device
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))

    def draw(points: Tensor, size: int) -> Tensor:
        index = torch.randint(points.shape[1], (members, size), generator=generator).to(
            points.device
        )
        return torch.gather(points, 1, index.unsqueeze(-1).expand(-1, -1, points.shape[2]))

    gaps, check_every, pending = [], _check_every(x.device), []
    with runtime.single_threaded(x.device):
        for step in range(steps):
            gap = critic(x)[..., 0].mean(1) - critic(y)[..., 0].mean(1)
            gaps.append(gap.detach())
            loss = -gap.sum()
            if method == "gp":
                partners = y if m == n else draw(y, n)
                weights = torch.rand(members, n, 1, generator=generator, dtype=x.dtype).to(x.device)
                points = (weights * x + (1 - weights) * partners).requires_grad_(True)
                (gradients,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
                loss = loss + penalty_weight * ((gradients.norm(dim=2) - 1) ** 2).mean(1).sum()
            pending.append((step, loss.detach()))
            checking = (step + 1) % check_every == 0 or step + 1 == steps
            if checking:  # the summed loss: one member's NaN is caught
                _check_pending(pending, "critics' summed")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if method == "clip":
                with torch.no_grad():
                    for parameter in critic.parameters():
                        parameter.clamp_(-clip, clip)
            if checking:
                check_finite_parameters(critic, step, _HINT)
    critic.power_iteration(_SN_SETTLE_ITERATIONS)
    history = torch.stack(gaps)

    critic.eval()
    size = max(n, m)
    weights = torch.rand(members, size, 1, generator=generator, dtype=x.dtype).to(x.device)
    interpolates = weights * draw(x, size) + (1 - weights) * draw(y, size)
    points = torch.cat([x, y, interpolates], 1).detach().requires_grad_(True)
    with torch.enable_grad():
        (gradients,) = torch.autograd.grad(critic(points).sum(), points)
    norms = gradients.norm(dim=2).detach()
    lipschitz = norms.max(1).values
    penalty = ((norms[:, n + m :] - 1) ** 2).mean(1)
    with torch.no_grad():
        estimates = critic(x)[..., 0].mean(1) - critic(y)[..., 0].mean(1)
    return CriticEnsembleFit(
        critic=critic,
        method=method,
        estimates=estimates,
        lipschitz=lipschitz,
        history=history,
        penalty=penalty,
    )
