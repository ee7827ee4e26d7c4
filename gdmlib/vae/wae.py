r"""Wasserstein autoencoders and their family: AE, VAE, WAE-MMD, WAE-GAN and AAE as one model.

Bousquet et al. (2017) and Tolstikhin et al. (2018) read the regularised autoencoders as
relaxations of optimal transport. For a deterministic decoder :math:`G` and a cost :math:`c`,
Theorem 1 of the WAE paper says

.. math::
    W_c(P_X, G_\# P_Z) = \inf_{Q(Z \mid X):\ Q_Z = P_Z} \mathbb{E}_{P_X}
    \mathbb{E}_{Q(Z \mid X)}\, c\bigl(X, G(Z)\bigr),

and the constraint on the aggregate posterior :math:`Q_Z = \mathbb{E}_{P_X} Q(Z \mid X)` is
relaxed into a penalty,

.. math::
    \min_{Q, G}\ \mathbb{E}_{P_X} \mathbb{E}_{Q(Z \mid X)} \lVert X - G(Z) \rVert^2
    + \lambda\, \mathcal{D}(Q, P_Z).

:class:`RegularizedAutoencoder` is that objective with the cost :math:`c(x, y) = \lVert x - y
\rVert_2^2` (summed over coordinates, averaged over the batch) and one of four penalties:

- ``"none"``: the plain autoencoder (AE);
- ``"kl"``: :math:`\mathbb{E}_{P_X} \mathrm{KL}(Q(Z \mid X) \,\|\, P_Z)`, per data point, with a
  Gaussian encoder: the VAE with a Gaussian decoder of variance :math:`\sigma^2 = \lambda / 2`
  (its negative ELBO times :math:`2\sigma^2`, up to a constant);
- ``"mmd"``: :math:`\widehat{\mathrm{MMD}}{}^2_u(Q_Z, P_Z)` with the multi-scale IMQ kernel
  (:func:`gdmlib.two_sample.mmd2_imq`): WAE-MMD;
- ``"gan"``: the adversarial estimate of :math:`\mathrm{JS}(Q_Z, P_Z)` by a discriminator on the
  latent space: WAE-GAN with a deterministic encoder (Bousquet et al.'s POT), the adversarial
  autoencoder (AAE, Makhzani et al. 2016) with a Gaussian one.

The first two penalise every :math:`Q(Z \mid X = x)`, the last two only the aggregate :math:`Q_Z`.
:func:`make_autoencoder` builds each member of the family from MLPs, optionally as an
**ensemble** (``members`` seeds, or one model per penalty weight, trained together by
:class:`gdmlib.nets.BatchedMLP`), and :func:`fit_autoencoder` trains it: with
:func:`gdmlib.training.fit` for the first three penalties, with
:func:`gdmlib.gan.train_adversarial` (encoder as generator, prior draws as "real" samples) for the
adversarial one; both stop with :class:`gdmlib.training.NonFiniteLossError` on a NaN.
:func:`linear_gaussian_decoder_costs` is the closed form of the Gaussian-decoder example
(Proposition 2 of the VEGAN cookbook). Used in chapter 9.

Units: the WAE code scales the squared error by 0.05, so its :math:`\lambda = 10` on MNIST is
:math:`\lambda = 200` here. Devices and dtypes: the data must be on the model's device, in its
floating dtype.

References:
    Tolstikhin, Bousquet, Gelly & Schölkopf (2018). Wasserstein auto-encoders. ICLR.

    Bousquet, Gelly, Tolstikhin, Simon-Gabriel & Schölkopf (2017). From optimal transport to
    generative modeling: the VEGAN cookbook. arXiv:1705.07642.

    Makhzani, Shlens, Jaitly, Goodfellow & Frey (2016). Adversarial autoencoders. ICLR workshop.

    Kingma & Welling (2014). Auto-encoding variational Bayes. ICLR.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib._checks import check_positive_int, check_positive_number
from gdmlib.gan.losses import discriminator_loss
from gdmlib.gan.training import AdversarialHistory, train_adversarial
from gdmlib.nets import MLP, Activation, BatchedMLP
from gdmlib.training import FitHistory, fit
from gdmlib.two_sample import IMQ_SCALES, _mmd2_terms, imq_kernel
from gdmlib.vae.decoders import GaussianDecoder
from gdmlib.vae.model import VAE
from gdmlib.vae.posteriors import GaussianPosterior

__all__ = [
    "GaussianDecoderCosts",
    "Penalty",
    "RegularizedAutoencoder",
    "fit_autoencoder",
    "linear_gaussian_decoder_costs",
    "make_autoencoder",
]

Penalty = Literal["none", "kl", "mmd", "gan"]
_PENALTIES = ("none", "kl", "mmd", "gan")
_KINDS = {
    "ae": ("none", False),
    "vae": ("kl", True),
    "wae-mmd": ("mmd", False),
    "wae-gan": ("gan", False),
    "aae": ("gan", True),
}


def _check_module(name: str, module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    return module


class RegularizedAutoencoder(nn.Module):
    r"""An autoencoder with squared-error reconstruction and a penalty on its codes.

    .. math::
        \mathcal{L} = \mathbb{E}_{x} \mathbb{E}_{Q(z \mid x)} \lVert x - G(z) \rVert^2
        + \lambda\, \mathcal{D}, \qquad \mathcal{D} \in \Bigl\{0,\
        \mathbb{E}_x \mathrm{KL}\bigl(Q(z \mid x) \,\|\, P_Z\bigr),\
        \widehat{\mathrm{MMD}}{}^2_{\mathrm{IMQ}}(Q_Z, P_Z),\
        \text{adversarial } \mathrm{JS}(Q_Z, P_Z)\Bigr\},

    with the prior :math:`P_Z = \mathcal{N}(0, \sigma_z^2 I)`. A deterministic encoder outputs the
    code; a stochastic one (``stochastic=True``) outputs the mean and the log standard deviation of
    a diagonal Gaussian :math:`Q(z \mid x)` and the code is a reparametrised draw.

    **Ensembles.** With ``members = M``, the encoder, decoder and adversary map ``(M, N, features)``
    to ``(M, N, out)`` (e.g. :class:`gdmlib.nets.BatchedMLP`): each batch of data is fed to every
    member, ``lam`` may hold one weight per member, and the loss is the mean over members (which
    Adam turns into independent training of each, see :class:`gdmlib.nets.BatchedMLP`). Per-member
    quantities then have shape ``(M,)``.

    Args:
        encoder: Maps data ``(..., N, D)`` to ``(..., N, latent_dim)`` (``2 * latent_dim`` when
            stochastic).
        decoder: Maps codes ``(..., N, latent_dim)`` to ``(..., N, D)``.
        latent_dim: The code's dimension.
        penalty: ``"none"``, ``"kl"`` (needs ``stochastic``), ``"mmd"`` or ``"gan"``.
        lam: :math:`\lambda \ge 0`, a number or one per member.
        stochastic: Gaussian encoder instead of a deterministic one.
        members: The ensemble size, or ``None`` for one model.
        prior_scale: :math:`\sigma_z > 0`; the IMQ kernel's scale follows it
            (:math:`C_\text{base} = 2 d \sigma_z^2`).
        adversary: For ``"gan"``: maps codes ``(..., N, latent_dim)`` to logits ``(..., N, 1)``.

    Raises:
        TypeError, ValueError: On an unknown penalty, a negative or mis-sized ``lam``, a KL
            penalty without a stochastic encoder, a missing adversary, or bad sizes.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = make_autoencoder("wae-mmd", 3, 2, hidden=(8,), lam=10.0)
        >>> x = torch.randn(16, 3)
        >>> terms = model.terms(x)
        >>> terms.reconstruction.shape, bool(torch.isfinite(model.loss(x)))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        *,
        penalty: Penalty,
        lam: float | Sequence[float] = 1.0,
        stochastic: bool = False,
        members: int | None = None,
        prior_scale: float = 1.0,
        adversary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = _check_module("encoder", encoder)
        self.decoder = _check_module("decoder", decoder)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        if penalty not in _PENALTIES:
            raise ValueError(f"penalty must be one of {_PENALTIES}, got {penalty!r}")
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got {type(stochastic).__name__}")
        if penalty == "kl" and not stochastic:
            raise ValueError(
                "the KL penalty needs a stochastic encoder (the KL of a point mass is infinite); "
                "pass stochastic=True"
            )
        self.penalty, self.stochastic = penalty, stochastic
        self.members = None if members is None else check_positive_int("members", members)
        self.prior_scale = check_positive_number("prior_scale", prior_scale)
        if penalty == "gan":
            self.adversary = _check_module("adversary", adversary)
        elif adversary is not None:
            raise ValueError(f"an adversary is only used by penalty='gan', not {penalty!r}")
        else:
            self.adversary = None
        self.register_buffer("lam", self._check_lam(lam))

    def _check_lam(self, lam: object) -> Tensor:
        if isinstance(lam, numbers.Real) and not isinstance(lam, bool):
            values = [float(lam)]
        elif isinstance(lam, (Sequence, Tensor)) and not isinstance(lam, str):
            values = [float(v) for v in lam]
            if self.members is None or len(values) != self.members:
                raise ValueError(
                    f"lam must be a number, or one number per member ({self.members} members), "
                    f"got {len(values)} values"
                )
        else:
            raise TypeError(f"lam must be a number or a sequence of numbers, got {lam!r}")
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"lam must be finite and non-negative, got {values}")
        return torch.tensor(values[0] if len(values) == 1 else values)

    # -----------------------------------------------------------------------------------------
    # Shapes
    # -----------------------------------------------------------------------------------------

    def _parameter(self) -> Tensor:
        return next(self.encoder.parameters())

    def _batch(self, x: object) -> Tensor:
        """``x`` ``(N, D)`` checked, and broadcast to ``(M, N, D)`` for an ensemble."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
        parameter = self._parameter()
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
        if x.device != parameter.device:
            raise ValueError(f"x is on {x.device} but the model on {parameter.device}")
        if x.dtype != parameter.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model {parameter.dtype}")
        return x if self.members is None else x.expand(self.members, *x.shape)

    def _prefix(self) -> tuple[int, ...]:
        return () if self.members is None else (self.members,)

    def _lam(self) -> Tensor:
        return self.lam if self.members is None or self.lam.dim() == 0 else self.lam

    # -----------------------------------------------------------------------------------------
    # The model
    # -----------------------------------------------------------------------------------------

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.encoder(self._batch(x))
        width = 2 * self.latent_dim if self.stochastic else self.latent_dim
        expected = (*self._prefix(), x.shape[0], width)
        if tuple(out.shape) != expected:
            raise ValueError(f"the encoder must return shape {expected}, got {tuple(out.shape)}")
        if not self.stochastic:
            return out, None
        loc, log_scale = out.split(self.latent_dim, -1)
        return loc, log_scale.exp()

    def encode(self, x: Tensor, *, sample: bool = True) -> Tensor:
        """Codes of ``x``: a draw of :math:`Q(z \\mid x)` (its mean if ``sample=False``), shape
        ``([M,] N, latent_dim)``."""
        loc, scale = self._posterior(x)
        if scale is None or not sample:
            return loc
        return loc + scale * torch.randn_like(loc)

    def forward(self, x: Tensor) -> Tensor:
        """The codes of ``x`` (a draw when stochastic): the "generator" of the adversarial loop."""
        return self.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        """:math:`G(z)`, checked to be ``([M,] N, D)``."""
        out = self.decoder(z)
        if out.dim() != z.dim() or out.shape[:-1] != z.shape[:-1]:
            raise ValueError(
                f"the decoder must map codes of shape {tuple(z.shape)} to the same leading "
                f"shape with D features last, got {tuple(out.shape)}"
            )
        return out

    def prior_sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior draws :math:`\\mathcal N(0, \\sigma_z^2 I)` per member: ``([M,] n, d)``."""
        n = check_positive_int("n", n)
        parameter = self._parameter()
        shape = (*self._prefix(), n, self.latent_dim)
        noise = torch.randn(
            shape, generator=generator, device=parameter.device, dtype=parameter.dtype
        )
        return self.prior_scale * noise

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` model samples :math:`G(z)`, :math:`z \\sim P_Z`, per member: ``([M,] n, D)``."""
        return self.decode(self.prior_sample(n, generator=generator))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """:math:`G(\\mathbb{E}[z \\mid x])`, ``([M,] N, D)``."""
        return self.decode(self.encode(x, sample=False))

    def reconstruction_cost(self, x: Tensor, z: Tensor) -> Tensor:
        """:math:`\\lVert x - G(z) \\rVert^2` summed over coordinates, averaged over the batch:
        ``([M],)``."""
        x_hat = self.decode(z)
        if x_hat.shape[-1] != x.shape[-1]:
            raise ValueError(
                f"the decoder must return points of x's dimension {x.shape[-1]}, got "
                f"{x_hat.shape[-1]}"
            )
        return (x_hat - x).square().sum(-1).mean(-1)

    class Terms(NamedTuple):
        """Reconstruction cost and penalty, each ``()`` or ``(M,)``."""

        reconstruction: Tensor
        penalty: Tensor

    def terms(self, x: Tensor, *, generator: torch.Generator | None = None) -> Terms:
        r"""The two terms of the objective on a batch (for ``"gan"`` the penalty is the
        non-saturating loss :math:`\mathbb{E} \log(1 + e^{-T(z)})` of the current adversary)."""
        loc, scale = self._posterior(x)
        z = loc if scale is None else loc + scale * torch.randn_like(loc)
        reconstruction = self.reconstruction_cost(x, z)
        if self.penalty == "none":
            penalty = torch.zeros_like(reconstruction)
        elif self.penalty == "kl":
            ratio = scale / self.prior_scale
            kl = 0.5 * ((loc / self.prior_scale).square() + ratio.square() - 1) - ratio.log()
            penalty = kl.sum(-1).mean(-1)
        elif self.penalty == "mmd":
            prior = self.prior_sample(x.shape[0], generator=generator)
            # The statistic of mmd2_imq without its input checks: a NaN code must reach the
            # training loop's guard (NonFiniteLossError) rather than stop in a check.
            c_base = 2.0 * self.latent_dim * self.prior_scale**2
            penalty = _mmd2_terms(z, prior, lambda a, b: imq_kernel(a, b, c_base, IMQ_SCALES))
        else:
            penalty = F.softplus(-self.adversary(z)).mean((-2, -1))
        return self.Terms(reconstruction, penalty)

    def loss(self, x: Tensor) -> Tensor:
        """The objective averaged over members (for :func:`gdmlib.training.fit`); the adversarial
        penalty is trained by :func:`fit_autoencoder` instead."""
        if self.penalty == "gan":
            raise TypeError("an adversarial penalty needs its own loop: use fit_autoencoder")
        reconstruction, penalty = self.terms(x)
        return (reconstruction + self._lam() * penalty).mean()

    @torch.no_grad()
    def as_vae(self, member: int | None = None, *, decoder_scale: float = 1.0) -> VAE:
        r"""A stochastic encoder and its decoder as a :class:`gdmlib.vae.VAE`, for
        :func:`gdmlib.vae.elbo_surgery` (copies of the weights).

        The decoder becomes a :class:`gdmlib.vae.GaussianDecoder` of fixed scale ``decoder_scale``
        (:math:`\lambda = 2\sigma^2` for the ``"kl"`` penalty) and the prior
        :math:`\mathcal N(0, I)`, so ``prior_scale`` must be 1. Needs MLP (or
        :class:`gdmlib.nets.BatchedMLP`, then ``member``) networks, as :func:`make_autoencoder`
        builds them.

        Raises:
            ValueError: For a deterministic encoder, another prior scale, a missing or
                out-of-range ``member``, or networks that are not MLPs.
        """
        if not self.stochastic:
            raise ValueError("only a stochastic encoder is a VAE posterior (its KL is finite)")
        if self.prior_scale != 1.0:
            raise ValueError(f"a VAE's prior here is N(0, I), not of scale {self.prior_scale}")
        decoder_scale = check_positive_number("decoder_scale", decoder_scale)

        def single(network: nn.Module, name: str) -> nn.Module:
            inner = network[0] if isinstance(network, nn.Sequential) else network
            if isinstance(inner, BatchedMLP):
                if member is None:
                    raise ValueError("pick the ensemble's member to convert: member=...")
                inner = inner.member(member)
            elif member is not None:
                raise ValueError("member is only for ensembles")
            if not isinstance(inner, MLP):
                raise ValueError(f"the {name} must be an MLP or BatchedMLP to become a VAE's")
            inner = copy.deepcopy(inner)
            if isinstance(network, nn.Sequential):
                return nn.Sequential(inner, *copy.deepcopy(list(network)[1:]))
            return inner

        encoder_net = single(self.encoder, "encoder")
        decoder_net = single(self.decoder, "decoder")
        posterior = GaussianPosterior((encoder_net.in_features,), self.latent_dim, hidden=(1,))
        posterior.net = encoder_net
        data_dim = encoder_net.in_features
        decoder = GaussianDecoder(
            self.latent_dim, (data_dim,), scale=decoder_scale, learn_scale=False, net=decoder_net
        )
        parameter = self._parameter()
        return VAE(posterior, decoder).to(device=parameter.device, dtype=parameter.dtype)

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """The encoder's and decoder's parameters (not the adversary's)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]


def make_autoencoder(
    kind: Literal["ae", "vae", "wae-mmd", "wae-gan", "aae"],
    data_dim: int,
    latent_dim: int,
    *,
    hidden: Sequence[int] = (128, 128),
    members: int | None = None,
    lam: float | Sequence[float] = 1.0,
    prior_scale: float = 1.0,
    activation: Activation = "relu",
    output: Literal["identity", "sigmoid"] = "identity",
    adversary_hidden: Sequence[int] = (64, 64),
) -> RegularizedAutoencoder:
    r"""One member of the family from MLPs (a :class:`gdmlib.nets.BatchedMLP` ensemble when
    ``members`` is given).

    =========== ============= ===================================================
    ``kind``    encoder       penalty
    =========== ============= ===================================================
    ``ae``      deterministic none
    ``vae``     Gaussian      :math:`\mathbb{E}_x \mathrm{KL}(Q(z \mid x) \| P_Z)`
    ``wae-mmd`` deterministic IMQ :math:`\mathrm{MMD}^2(Q_Z, P_Z)`
    ``wae-gan`` deterministic adversarial, on :math:`Q_Z`
    ``aae``     Gaussian      adversarial, on :math:`Q_Z`
    =========== ============= ===================================================

    Args:
        kind: The family member.
        data_dim: :math:`D`, the data's (flattened) dimension.
        latent_dim: The code's dimension.
        hidden: Hidden widths of the encoder and (reversed) the decoder.
        members: Ensemble size, or ``None``.
        lam: :math:`\lambda`, one or one per member.
        prior_scale: :math:`\sigma_z`.
        activation: Of the MLPs.
        output: ``"sigmoid"`` for data in :math:`[0, 1]` (images), else ``"identity"``.
        adversary_hidden: Hidden widths of the latent discriminator (adversarial kinds).

    Raises:
        ValueError: On an unknown ``kind`` or ``output``, and as :class:`RegularizedAutoencoder`.

    Example:
        >>> model = make_autoencoder("aae", 64, 8, members=3, lam=[1.0, 3.0, 10.0])
        >>> model.penalty, model.stochastic, model.sample(5).shape
        ('gan', True, torch.Size([3, 5, 64]))
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {tuple(_KINDS)}, got {kind!r}")
    if output not in ("identity", "sigmoid"):
        raise ValueError(f"output must be 'identity' or 'sigmoid', got {output!r}")
    penalty, stochastic = _KINDS[kind]
    width = 2 * latent_dim if stochastic else latent_dim
    hidden = tuple(hidden)

    def mlp(inputs: int, outputs: int, widths: tuple[int, ...]) -> nn.Module:
        if members is None:
            return MLP(inputs, outputs, hidden=widths, activation=activation)
        return BatchedMLP(members, inputs, outputs, hidden=widths, activation=activation)

    decoder = mlp(latent_dim, data_dim, hidden[::-1])
    if output == "sigmoid":
        decoder = nn.Sequential(decoder, nn.Sigmoid())
    adversary = mlp(latent_dim, 1, tuple(adversary_hidden)) if penalty == "gan" else None
    return RegularizedAutoencoder(
        mlp(data_dim, width, hidden),
        decoder,
        latent_dim,
        penalty=penalty,
        lam=lam,
        stochastic=stochastic,
        members=members,
        prior_scale=prior_scale,
        adversary=adversary,
    )


def fit_autoencoder(
    model: RegularizedAutoencoder,
    data: Tensor,
    *,
    steps: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    adversary_lr: float = 5e-4,
    adversary_steps: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FitHistory | AdversarialHistory:
    r"""Train a :class:`RegularizedAutoencoder` with Adam.

    Penalties ``"none"``, ``"kl"`` and ``"mmd"`` go through :func:`gdmlib.training.fit` (the loss
    :meth:`RegularizedAutoencoder.loss`). The adversarial penalty is a game: the latent
    discriminator :math:`T` minimises the logistic loss of telling prior draws (label 1) from codes
    (label 0), ``adversary_steps`` times per autoencoder step, and the autoencoder minimises

    .. math::
        \mathbb{E} \lVert x - G(z) \rVert^2 + \lambda\, \mathbb{E} \log\bigl(1 + e^{-T(z)}\bigr),
        \qquad z \sim Q(z \mid x),

    the non-saturating generator loss of the codes, as in the WAE code (``wae.py``,
    ``gan_penalty``) and pythae's adversarial autoencoder. This is
    :func:`gdmlib.gan.train_adversarial` with the encoder as generator, data batches as its
    "noise", prior draws as the "real" samples and the reconstruction as its extra loss; Adam's
    ``betas=(0.5, 0.999)`` as in the WAE's MNIST setting. Both loops stop with
    :class:`gdmlib.training.NonFiniteLossError` on a NaN or infinite loss or parameter.

    Args:
        model: The model, on the data's device.
        data: Training data ``(N, D)``.
        steps: Autoencoder steps.
        batch_size: Data points per step.
        lr: The autoencoder's learning rate.
        adversary_lr: The discriminator's learning rate (adversarial penalty only).
        adversary_steps: Discriminator updates per autoencoder step.
        generator: Draws the minibatches (on the CPU).
        progress: Show a progress bar.

    Returns:
        The loop's history.

    Raises:
        TypeError, ValueError: On a bad model, data or argument.
        gdmlib.training.NonFiniteLossError: If training diverges.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(256, 2) @ torch.tensor([[1.0, 0.5], [0.0, 0.3]])
        >>> model = make_autoencoder("wae-gan", 2, 1, hidden=(16,), lam=1.0)
        >>> history = fit_autoencoder(model, x, steps=20, batch_size=64)
        >>> len(history), bool(torch.isfinite(model.terms(x).reconstruction))
        (20, True)
    """
    if not isinstance(model, RegularizedAutoencoder):
        raise TypeError(f"model must be a RegularizedAutoencoder, got {type(model).__name__}")
    if model.penalty != "gan":
        return fit(
            model,
            data,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            generator=generator,
            progress=progress,
        )
    model._batch(data)  # the data checks of the model
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > data.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {data.shape[0]} data points")
    lr, adversary_lr = (
        check_positive_number("lr", lr),
        check_positive_number("adversary_lr", adversary_lr),
    )
    lam = model._lam()
    if model.members is not None and lam.dim() == 1:
        lam = lam[:, None, None]

    def sample_data() -> Tensor:
        index = torch.randint(data.shape[0], (batch_size,), generator=generator)
        return data[index.to(data.device)]

    def reconstruction(x: Tensor, z: Tensor) -> Tensor:
        return model.reconstruction_cost(x, z).mean()

    def adversarial(logits: Tensor) -> Tensor:
        return (lam * F.softplus(-logits)).mean()

    return train_adversarial(
        model,
        model.adversary,
        sample_real=lambda: model.prior_sample(batch_size),
        sample_noise=sample_data,
        steps=check_positive_int("steps", steps),
        g_opt=torch.optim.Adam(model.autoencoder_parameters(), lr=lr, betas=(0.5, 0.999)),
        d_opt=torch.optim.Adam(model.adversary.parameters(), lr=adversary_lr, betas=(0.5, 0.999)),
        d_loss_fn=discriminator_loss,
        g_loss_fn=adversarial,
        critic_steps=check_positive_int("adversary_steps", adversary_steps),
        generator_extra_loss=reconstruction,
        progress=progress,
    )


class GaussianDecoderCosts(NamedTuple):
    r"""The two transport costs of a Gaussian decoder (:func:`linear_gaussian_decoder_costs`).

    Attributes:
        wasserstein: :math:`W_2^2(P_X, P_G^\sigma)`.
        upper_bound: :math:`W_c^\dagger(P_X, P_G^\sigma)`.
    """

    wasserstein: Tensor
    upper_bound: Tensor


def linear_gaussian_decoder_costs(
    s: float | Tensor, a: float | Tensor, sigma: float | Tensor
) -> GaussianDecoderCosts:
    r"""Both costs of the Gaussian decoder :math:`Y = aZ + \sigma\varepsilon` for
    :math:`P_X = \mathcal N(0, s^2)`, :math:`P_Z = \mathcal N(0, 1)`, in closed form.

    :math:`P_G^\sigma = \mathcal N(0, a^2 + \sigma^2)`, and between centred Gaussians on the line
    :math:`W_2^2` is the squared difference of the standard deviations; the optimal coupling of
    :math:`(X, Z)` is comonotone, so :math:`\min_\pi \mathbb E (X - aZ)^2 = (s - |a|)^2` and
    (Corollary 7 of Tolstikhin et al., the decoder's noise adds :math:`d\sigma^2` with
    :math:`d = 1`)

    .. math::
        W_2^2(P_X, P_G^\sigma) = \bigl(s - \sqrt{a^2 + \sigma^2}\bigr)^2
        \;\le\; W_c^\dagger = (s - |a|)^2 + \sigma^2 .

    The first is minimised at :math:`|a| = \sqrt{s^2 - \sigma^2}` (for :math:`\sigma < s`), which
    depends on :math:`\sigma`; the second at :math:`|a| = s` for every :math:`\sigma`
    (Proposition 2 of Bousquet et al. 2017). Broadcasts over tensors.

    Args:
        s: The data's standard deviation, :math:`s > 0`.
        a: The decoder's slope.
        sigma: The decoder's noise, :math:`\sigma \ge 0`.

    Returns:
        :class:`GaussianDecoderCosts` of float64 tensors.

    Raises:
        ValueError: If ``s <= 0`` or ``sigma < 0`` somewhere.

    Example:
        >>> costs = linear_gaussian_decoder_costs(2.0, 2.0, 0.5)
        >>> round(float(costs.wasserstein), 6), float(costs.upper_bound)  # a = s is not optimal
        (0.003789, 0.25)
    """
    s, a, sigma = (torch.as_tensor(v, dtype=torch.float64) for v in (s, a, sigma))
    if not bool((s > 0).all()) or not bool((sigma >= 0).all()):
        raise ValueError("s must be positive and sigma non-negative")
    wasserstein = (s - torch.sqrt(a.square() + sigma.square())).square()
    return GaussianDecoderCosts(wasserstein, (s - a.abs()).square() + sigma.square())
