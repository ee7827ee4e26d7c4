r"""Discrete latent variables: the Gumbel-max trick, the Gumbel-softmax relaxation, vector
quantisation.

Used in chapter 12.

- :func:`gumbel_max` draws **exact** categorical samples: with i.i.d. standard Gumbel noise
  :math:`g_k = -\log(-\log U_k)`, :math:`U_k \sim \mathcal{U}(0, 1)`,

  .. math::
      \arg\max_k\, (\ell_k + g_k) \sim \mathrm{Categorical}(\pi), \qquad
      \pi = \mathrm{softmax}(\ell),

  (Maddison et al. 2014). It returns the **indices** (a ``LongTensor`` of the batch shape); use
  ``torch.nn.functional.one_hot`` for one-hot vectors.
- :func:`gumbel_softmax` replaces the argmax by a tempered softmax (Jang et al. 2017; Maddison et
  al. 2017), :math:`y = \mathrm{softmax}((\ell + g)/\tau)`, a point of the simplex that is
  differentiable in :math:`\ell`. It is a *relaxation*: for :math:`\tau > 0`,
  :math:`\mathbb{E}[y] \ne \pi` in general, and :math:`y` tends to the one-hot Gumbel-max sample
  as :math:`\tau \to 0` (while the gradient's variance grows). With ``hard=True`` the returned value
  is that one-hot sample and the gradient is the relaxed one's (straight-through).
- :class:`VectorQuantizer` (VQ-VAE, van den Oord et al. 2017) replaces each encoder output
  :math:`z_e` by its nearest codebook vector :math:`e_k`, passes the decoder's gradient straight
  through to :math:`z_e`, and returns the codebook and commitment losses separately.
- :func:`categorical_kl_uniform` is the KL term of a categorical posterior against a uniform prior,
  :math:`\mathrm{KL}(q \,\|\, \mathcal{U}_K) = \log K - H(q)`; :func:`codebook_perplexity` measures
  how many codes are in use.
- :class:`VQVAE` (encoder, quantiser, :mod:`gdmlib.vae` decoder) and :class:`CategoricalVAE`
  (:math:`M` categorical latents, Gumbel-softmax training, exact hard-sample ELBO and IWAE bound,
  :func:`annealed_loss` for a temperature schedule) are models with ``loss(x)`` for
  :func:`gdmlib.vae.fit`. Like :mod:`gdmlib.vae`, they **sum** KL and auxiliary terms over latents
  and pixels and **average** over the batch.

Example:
    >>> import torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> logits = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    >>> draws = gumbel_max(logits.expand(10_000, 3), generator=generator)
    >>> torch.bincount(draws, minlength=3).tolist()  # about [2000, 3000, 5000]
    [2026, 2908, 5066]
    >>> y = gumbel_softmax(logits, tau=0.5, generator=generator)
    >>> round(float(y.sum()), 6)
    1.0

References:
    Maddison, Tarlow, Minka. A* sampling. NeurIPS 2014.

    Jang, Gu, Poole. Categorical reparameterization with Gumbel-softmax. ICLR 2017.

    Maddison, Mnih, Teh. The concrete distribution: a continuous relaxation of discrete random
    variables. ICLR 2017.

    van den Oord, Vinyals, Kavukcuoglu. Neural discrete representation learning (VQ-VAE).
    NeurIPS 2017.

    Bengio, Léonard, Courville. Estimating or propagating gradients through stochastic neurons for
    conditional computation (straight-through estimator). arXiv:1308.3432, 2013.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib._checks import check_batch, check_input_shape
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.nets import MLP, Activation
from gdmlib.vae import ELBO, importance_weighted_bound, make_decoder

__all__ = [
    "CategoricalVAE",
    "VQLosses",
    "VQVAE",
    "VectorQuantizer",
    "annealed_loss",
    "categorical_kl_uniform",
    "codebook_perplexity",
    "gumbel_max",
    "gumbel_softmax",
    "sample_gumbel",
]


def _check_logits(logits: object) -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(
            f"logits must have shape (..., K) with K >= 1 categories, got {tuple(logits.shape)}"
        )
    return logits


def _check_code_indices(indices: Tensor, codebook: Tensor) -> None:
    if indices.device != codebook.device:
        raise ValueError(
            f"indices are on {indices.device} but the codebook on {codebook.device}; move them "
            "with .to()"
        )
    if indices.numel() and bool(((indices < 0) | (indices >= codebook.shape[0])).any()):
        bad = indices[(indices < 0) | (indices >= codebook.shape[0])].flatten()[0]
        raise ValueError(
            f"indices must lie in 0..{codebook.shape[0] - 1} (the codebook's codes), got {int(bad)}"
        )


def _check_tau(tau: object) -> float:
    if isinstance(tau, Tensor):
        if tau.numel() != 1:
            raise ValueError(
                f"tau must be a single number, got a tensor of shape {tuple(tau.shape)}"
            )
        tau = float(tau)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a number, got {type(tau).__name__}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"the temperature tau must be a finite positive number, got {tau}")
    return float(tau)


def sample_gumbel(
    shape: tuple[int, ...] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""I.i.d. standard Gumbel noise :math:`g = -\log(-\log U)`, :math:`U \sim \mathcal{U}(0, 1)`.

    Its CDF is :math:`\exp(-e^{-g})`, mean the Euler–Mascheroni constant
    :math:`\gamma \approx 0.5772`.

    Args:
        shape: The shape of the noise.
        dtype, device: Those of the result (torch's defaults when ``None``).
        generator: A ``torch.Generator`` on ``device``, for reproducible draws.

    Raises:
        ValueError: If ``generator`` lives on another device than the one requested.
    """
    device = torch.device(device) if device is not None else torch.empty(0).device
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the noise is drawn on {device}")
    uniform = torch.rand(shape, dtype=dtype, device=device, generator=generator)
    # torch.rand can return exactly 0, where -log(-log u) = -inf; the smallest positive normal
    # number keeps the noise finite without changing its law at any visible precision.
    uniform = uniform.clamp_min(torch.finfo(uniform.dtype).tiny)
    return -torch.log(-torch.log(uniform))


def gumbel_max(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    r"""Exact categorical samples by the Gumbel-max trick (Maddison et al. 2014).

    .. math::
        k^\star = \arg\max_k\, (\ell_k + g_k), \quad g_k \overset{iid}{\sim} \mathrm{Gumbel}(0, 1)
        \quad\Longrightarrow\quad P(k^\star = k) = \frac{e^{\ell_k}}{\sum_j e^{\ell_j}}.

    Logits are unnormalised log-probabilities (adding a constant to a row changes nothing);
    ``-inf`` marks an impossible category.

    Args:
        logits: Tensor of shape ``(..., K)``.
        generator: A ``torch.Generator`` on the logits' device.

    Returns:
        The sampled category indices, a ``LongTensor`` of shape ``(...)`` (one draw per row).

    Raises:
        TypeError, ValueError: On non-tensor, non-float or 0-dimensional logits.

    Example:
        >>> logits = torch.tensor([[0.0, 10.0, 0.0], [10.0, 0.0, 0.0]])
        >>> gumbel_max(logits, generator=torch.Generator().manual_seed(1)).tolist()
        [1, 0]
    """
    logits = _check_logits(logits)
    noise = sample_gumbel(
        logits.shape, dtype=logits.dtype, device=logits.device, generator=generator
    )
    return torch.argmax(logits.detach() + noise, dim=-1)


def gumbel_softmax(
    logits: Tensor, tau: float, hard: bool = False, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""A Gumbel-softmax (concrete) sample, relaxed or straight-through (Jang et al. 2017).

    .. math::
        y = \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right), \qquad
        g_k \overset{iid}{\sim} \mathrm{Gumbel}(0, 1).

    ``y`` lies on the simplex and is differentiable in :math:`\ell`. Its mean is **not**
    :math:`\pi = \mathrm{softmax}(\ell)` for :math:`\tau > 0`; it approaches the one-hot
    :math:`\arg\max_k(\ell_k + g_k)` (an exact categorical sample) as :math:`\tau \to 0`.

    With ``hard=True`` the value returned is that one-hot vector, and its gradient is the gradient
    of the relaxed :math:`y` (the straight-through Gumbel-softmax estimator): it is computed as
    :math:`\mathrm{onehot} + (y - \mathrm{sg}[y])`, which equals the one-hot vector exactly.

    Args:
        logits: Tensor of shape ``(..., K)``.
        tau: The temperature :math:`\tau > 0`.
        hard: Return the one-hot sample with the relaxed gradient.
        generator: A ``torch.Generator`` on the logits' device.

    Returns:
        A tensor of the logits' shape, dtype and device whose rows sum to 1.

    Raises:
        TypeError, ValueError: On bad logits, or a temperature that is not a finite positive number.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.zeros(2, 4, requires_grad=True)
        >>> y = gumbel_softmax(logits, tau=0.1, hard=True, generator=generator)
        >>> y.tolist(), y.requires_grad
        ([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], True)
    """
    logits = _check_logits(logits)
    tau = _check_tau(tau)
    noise = sample_gumbel(
        logits.shape, dtype=logits.dtype, device=logits.device, generator=generator
    )
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    r"""KL divergence from a categorical :math:`q = \mathrm{softmax}(\ell)` to the uniform on K
    values.

    .. math::
        \mathrm{KL}(q \,\|\, \mathcal{U}_K) = \sum_{k=1}^K q_k \log \frac{q_k}{1/K}
        = \log K - H(q), \qquad H(q) = -\sum_k q_k \log q_k,

    in nats, between 0 (uniform :math:`q`) and :math:`\log K` (one-hot :math:`q`). The sum runs over
    the last dimension only: for a latent made of :math:`L` independent categoricals, pass logits of
    shape ``(..., L, K)`` and sum the result over ``L`` yourself. Categories with logit ``-inf``
    contribute :math:`0 \log 0 = 0`, with finite gradients.

    Args:
        logits: Tensor of shape ``(..., K)`` (unnormalised log-probabilities).

    Returns:
        The KL of every distribution, shape ``(...)``.

    Raises:
        TypeError: If ``logits`` is not a floating tensor.
        ValueError: On an empty last dimension, or a NaN or ``+inf`` logit.

    Example:
        >>> round(float(categorical_kl_uniform(torch.zeros(10))), 6)
        0.0
        >>> round(float(categorical_kl_uniform(torch.tensor([0.0, -float("inf")]))), 6)  # log 2
        0.693147
    """
    logits = _check_logits(logits)
    if bool((torch.isnan(logits) | (logits == math.inf)).any()):
        raise ValueError(
            "logits must be finite or -inf (a category of probability 0), got NaN or +inf; "
            "+inf has no softmax: subtract the row maximum or mask the other categories with -inf"
        )
    return _categorical_kl_uniform(logits)


def _categorical_kl_uniform(logits: Tensor) -> Tensor:
    # The model's own logits (unchecked: a NaN there surfaces as a non-finite training loss).
    log_q = torch.log_softmax(logits, dim=-1)
    q = log_q.exp()
    # where(q > 0, ...) keeps 0 log 0 = 0 and, unlike xlogy, a finite gradient for -inf logits.
    neg_entropy = (q * torch.where(q > 0, log_q, torch.zeros_like(log_q))).sum(-1)
    return neg_entropy + math.log(logits.shape[-1])


class VQLosses(NamedTuple):
    r"""The two auxiliary losses of a VQ-VAE, and their sum.

    Attributes:
        codebook: :math:`\|\mathrm{sg}[z_e] - e\|^2`, averaged; moves the codes only.
        commitment: :math:`\beta\, \|z_e - \mathrm{sg}[e]\|^2`, averaged; moves the encoder only.
        total: ``codebook + commitment``, to add to the reconstruction loss.
    """

    codebook: Tensor
    commitment: Tensor
    total: Tensor


class VectorQuantizer(nn.Module):
    r"""Nearest-neighbour vector quantisation with straight-through gradients (van den Oord et al.
    2017).

    Each encoder output vector :math:`z_e \in \mathbb{R}^D` is replaced by its nearest code
    :math:`e_k`, :math:`k = \arg\min_j \|z_e - e_j\|_2`, of a learned codebook
    :math:`e \in \mathbb{R}^{K \times D}`. The three gradient paths of VQ-VAE are kept apart with
    the stop-gradient :math:`\mathrm{sg}` (``detach``):

    .. math::
        z_q^{\mathrm{st}} = z_e + \mathrm{sg}[e_k - z_e], \qquad
        \mathcal{L}_{\mathrm{codebook}} = \|\mathrm{sg}[z_e] - e_k\|^2, \qquad
        \mathcal{L}_{\mathrm{commit}} = \beta\, \|z_e - \mathrm{sg}[e_k]\|^2.

    So the decoder's gradient reaches :math:`z_e` unchanged (straight through the argmin) and never
    the codebook; the codebook moves only through :math:`\mathcal{L}_{\mathrm{codebook}}` (towards
    the encoder outputs assigned to it); and :math:`\mathcal{L}_{\mathrm{commit}}` pulls the encoder
    towards its code, weighted by :math:`\beta` alone. The straight-through output is computed as
    :math:`\mathrm{sg}[e_k] + (z_e - \mathrm{sg}[z_e])`: the same gradient, and a forward value
    equal to :math:`e_k` bit for bit. Both losses are means over all elements of :math:`z_e` (as in
    the reference implementation), i.e. the paper's squared norms divided by the number of elements.

    Inputs are ``(N, D)`` vectors or ``(N, D, *spatial)`` feature maps such as ``(N, D, H, W)``,
    with the channel dimension 1 holding the :math:`D` coordinates; every spatial position is
    quantised on its own.

    Args:
        num_codes: The codebook size :math:`K \ge 1`.
        dim: The code dimension :math:`D \ge 1`.
        beta: The commitment weight :math:`\beta \ge 0` (0.25 in the paper).

    Attributes:
        codebook: The parameter :math:`e`, shape ``(K, D)``, initialised uniformly in
            :math:`[-1/K, 1/K]`.

    Raises:
        TypeError, ValueError: On non-integer or non-positive sizes, or a negative ``beta``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vq = VectorQuantizer(num_codes=8, dim=4)
        >>> z_q, indices, losses = vq(torch.randn(2, 4, 3, 3))
        >>> z_q.shape, indices.shape, losses.total.shape
        (torch.Size([2, 4, 3, 3]), torch.Size([2, 3, 3]), torch.Size([]))
        >>> torch.equal(z_q, vq.embed(indices))
        True
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25) -> None:
        super().__init__()
        _check_positive_int("num_codes", num_codes)
        _check_positive_int("dim", dim)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError(f"beta must be a number, got {type(beta).__name__}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite non-negative number, got {beta}")
        self.num_codes = num_codes
        self.dim = dim
        self.beta = float(beta)
        self.codebook = nn.Parameter(
            torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        )

    def extra_repr(self) -> str:
        return f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}"

    def _flatten(self, z_e: Tensor) -> Tensor:
        """``(N, D, *spatial)`` to ``(N * prod(spatial), D)``, channel last."""
        if not isinstance(z_e, Tensor):
            raise TypeError(f"z_e must be a torch.Tensor, got {type(z_e).__name__}")
        if not z_e.is_floating_point():
            raise TypeError(f"z_e must be a floating-point tensor, got dtype {z_e.dtype}")
        if z_e.dim() < 2 or z_e.shape[1] != self.dim:
            raise ValueError(
                f"z_e must have shape (N, {self.dim}) or (N, {self.dim}, H, W) (channels = dim), "
                f"got {tuple(z_e.shape)}"
            )
        return z_e.movedim(1, -1).reshape(-1, self.dim)

    def nearest(self, z_e: Tensor) -> Tensor:
        r"""Index of the nearest code of every vector: shape ``(N,)`` or ``(N, *spatial)``."""
        flat = self._flatten(z_e).detach()
        codes = self.codebook.detach()
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; the ||z||^2 term does not change the argmin.
        distances = codes.square().sum(-1) - 2 * flat @ codes.T
        return distances.argmin(dim=-1).reshape(z_e.shape[:1] + z_e.shape[2:])

    def embed(self, indices: Tensor) -> Tensor:
        r"""The codes of ``indices``, in the input layout: ``(N,) -> (N, D)``, ``(N, H, W) -> (N, D,
        H, W)``.

        Gradients flow to the codebook (this is a plain lookup, without straight-through).
        """
        if not isinstance(indices, Tensor) or indices.dtype not in (torch.int32, torch.int64):
            raise TypeError("indices must be an integer (int64 or int32) tensor")
        if indices.dim() < 1:
            raise ValueError("indices must have shape (N,) or (N, *spatial)")
        _check_code_indices(indices, self.codebook)
        return F.embedding(indices, self.codebook).movedim(-1, 1)

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, VQLosses]:
        r"""Quantise ``z_e``.

        Args:
            z_e: Encoder output, ``(N, D)`` or ``(N, D, *spatial)``.

        Returns:
            ``(z_q, indices, losses)``: the straight-through quantised tensor (shape of ``z_e``,
            value of the nearest codes), the code indices (``(N,)`` or ``(N, *spatial)``) and the
            :class:`VQLosses`.
        """
        indices = self.nearest(z_e)
        codes = self.embed(indices)
        codebook_loss = F.mse_loss(codes, z_e.detach())
        commitment_loss = self.beta * F.mse_loss(z_e, codes.detach())
        z_q = codes.detach() + (z_e - z_e.detach())
        return (
            z_q,
            indices,
            VQLosses(codebook_loss, commitment_loss, codebook_loss + commitment_loss),
        )


def codebook_perplexity(indices: Tensor, num_codes: int) -> Tensor:
    r"""How many codes are in use: :math:`\exp H(\hat p)` of the empirical code histogram.

    .. math::
        \hat p_k = \frac{\#\{i : k_i = k\}}{n}, \qquad \mathrm{perplexity} = \exp\Bigl(-\sum_k \hat
        p_k \log \hat p_k\Bigr) \in [1, K].

    It equals :math:`K` when all codes are used equally and 1 when a single code is (codebook
    collapse).

    Args:
        indices: Integer tensor of code indices, any shape.
        num_codes: The codebook size :math:`K`.

    Example:
        >>> round(float(codebook_perplexity(torch.tensor([0, 1, 2, 3]), num_codes=8)), 6)
        4.0
    """
    if not isinstance(indices, Tensor) or indices.dtype not in (torch.int32, torch.int64):
        raise TypeError("indices must be an integer (int64 or int32) tensor")
    if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes < 1:
        raise ValueError(f"num_codes must be a positive int, got {num_codes!r}")
    if indices.numel() == 0:
        raise ValueError("indices must not be empty")
    flat = indices.flatten().long()
    if int(flat.min()) < 0 or int(flat.max()) >= num_codes:
        raise ValueError(f"indices must lie in 0..{num_codes - 1}")
    counts = torch.bincount(flat, minlength=num_codes).double()
    p = counts / counts.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum())


# ---------------------------------------------------------------------------------------------
# Models with discrete latents
# ---------------------------------------------------------------------------------------------


def _check_reduction(reduction: object) -> str:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def _make_encoder(
    encoder: nn.Module | None,
    input_shape: tuple[int, ...],
    out_features: int,
    hidden: Sequence[int],
    activation: Activation,
) -> nn.Module:
    if encoder is None:
        return nn.Sequential(
            nn.Flatten(), MLP(math.prod(input_shape), out_features, hidden, activation)
        )
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
    return encoder


def _encode(encoder: nn.Module, x: Tensor, out_features: int) -> Tensor:
    first = next(encoder.parameters(), None)
    if first is not None:
        if first.device != x.device:
            raise ValueError(
                f"x is on {x.device} but the model on {first.device}; move one of them"
            )
        x = x.to(first.dtype)  # integer levels or float64 pixels into the network's dtype
    out = encoder(x)
    if out.dim() != 2 or out.shape != (x.shape[0], out_features):
        raise ValueError(
            f"the encoder must map a batch of {x.shape[0]} to ({x.shape[0]}, {out_features}), got "
            f"{tuple(out.shape)}"
        )
    return out


class VQVAE(nn.Module):
    r"""A VQ-VAE (van den Oord et al. 2017): encoder, :class:`VectorQuantizer`, decoder.

    The encoder maps :math:`x` to :math:`M` vectors :math:`z_e^{(m)}(x) \in \mathbb{R}^D`; each is
    replaced by its nearest code :math:`e_{k_m}` of a codebook of :math:`K` codes; the decoder
    :math:`p_\theta(x \mid z_q)` reads the :math:`M` codes. Training minimises, per data point,

    .. math::
        -\log p_\theta(x \mid z_q^{\mathrm{st}})
        + \sum_{m}\bigl\|\mathrm{sg}[z_e^{(m)}] - e_{k_m}\bigr\|^2
        + \beta \sum_{m} \bigl\|z_e^{(m)} - \mathrm{sg}[e_{k_m}]\bigr\|^2,

    averaged over the batch, with the straight-through :math:`z_q^{\mathrm{st}}` of
    :class:`VectorQuantizer`. The two auxiliary terms are **summed** over the :math:`M \cdot D`
    coordinates, like the log-likelihood over pixels (the quantiser's own losses are means; they are
    multiplied by :math:`MD` here), so that :math:`\beta` keeps the paper's meaning whatever the
    image size.

    **The ELBO.** The posterior is the point mass :math:`q(k \mid x) = \delta_{k(x)}` on the
    nearest codes. Against a prior :math:`p(k)` on the :math:`K^M` code tuples,
    :math:`\mathrm{KL}(\delta_{k(x)} \,\|\, p) = -\log p(k(x))`, so

    .. math::
        \log p(x) \;\ge\; \log p_\theta(x \mid e_{k(x)}) + \log p(k(x)),

    which for the uniform prior of the paper's training phase is
    :math:`\log p_\theta(x \mid z_q) - M \log K` (:meth:`elbo`). A prior fitted afterwards (the
    paper's PixelCNN; here :meth:`code_log_prior`, independent per position) tightens it.

    Args:
        input_shape: Shape of one data point, e.g. ``(1, 8, 8)``.
        num_codes: Codebook size :math:`K`.
        code_dim: Code dimension :math:`D`.
        num_latents: Number :math:`M` of quantised vectors per data point.
        likelihood: ``"bernoulli"``, ``"categorical"`` (``levels`` integer levels) or
            ``"gaussian"``, as in :func:`gdmlib.vae.make_vae`.
        levels: Levels of a categorical likelihood.
        hidden, activation: Of the default MLP encoder and decoder.
        beta: Commitment weight :math:`\beta`.
        encoder: A module mapping ``(B, *input_shape)`` to ``(B, num_latents * code_dim)`` to use
            instead of the MLP (e.g. :class:`gdmlib.nets.ConvEncoder8`).
        decoder_net: A network for the decoder (the ``net=`` of :class:`gdmlib.vae.Decoder`).

    Attributes:
        quantizer: The :class:`VectorQuantizer`.
        decoder: The :class:`gdmlib.vae.Decoder`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = (torch.rand(16, 1, 8, 8) < 0.3).float()
        >>> model = VQVAE((1, 8, 8), num_codes=8, code_dim=2, num_latents=3, hidden=(32,))
        >>> model.codes(x).shape, model.loss(x).shape
        (torch.Size([16, 3]), torch.Size([]))
        >>> terms = model.elbo(x)
        >>> round(float(terms.kl), 4) == round(3 * math.log(8), 4)
        True

    References:
        van den Oord, Vinyals, Kavukcuoglu. Neural discrete representation learning. NeurIPS 2017.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_codes: int,
        code_dim: int,
        num_latents: int = 1,
        *,
        likelihood: str = "bernoulli",
        levels: int = 17,
        hidden: Sequence[int] = (256,),
        activation: Activation = "relu",
        beta: float = 0.25,
        encoder: nn.Module | None = None,
        decoder_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self.num_codes = _check_positive_int("num_codes", num_codes)
        self.code_dim = _check_positive_int("code_dim", code_dim)
        self.num_latents = _check_positive_int("num_latents", num_latents)
        self.latent_dim = num_latents * code_dim
        self.encoder = _make_encoder(encoder, self.input_shape, self.latent_dim, hidden, activation)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta)
        self.decoder = make_decoder(
            likelihood,
            self.latent_dim,
            self.input_shape,
            levels=levels,
            hidden=hidden,
            activation=activation,
            net=decoder_net,
        )

    def encode(self, x: Tensor) -> Tensor:
        r"""The encoder outputs :math:`z_e`, shape ``(B, D, M)`` (the quantiser's layout)."""
        x = check_batch("x", x, self.input_shape)
        out = _encode(self.encoder, x, self.latent_dim)
        return out.unflatten(1, (self.num_latents, self.code_dim)).transpose(1, 2)

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor, VQLosses]:
        r"""``(z_q, indices, losses)``: the straight-through codes flattened for the decoder,
        ``(B, M * D)``, the code indices ``(B, M)`` and the quantiser's (mean) losses."""
        z_q, indices, losses = self.quantizer(self.encode(x))
        return z_q.transpose(1, 2).flatten(1), indices, losses

    def embed(self, indices: Tensor) -> Tensor:
        r"""The decoder input of code indices ``(..., M)``: ``(..., M * D)``."""
        if not isinstance(indices, Tensor) or indices.dtype not in (torch.int32, torch.int64):
            raise TypeError("indices must be an integer (int64 or int32) tensor")
        if indices.dim() < 1 or indices.shape[-1] != self.num_latents:
            raise ValueError(
                f"indices must have shape (..., {self.num_latents}), got {tuple(indices.shape)}"
            )
        _check_code_indices(indices, self.quantizer.codebook)
        return F.embedding(indices, self.quantizer.codebook).flatten(-2)

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """The code indices :math:`k(x)` of a batch, shape ``(B, M)``."""
        return self.quantizer.nearest(self.encode(x))

    def loss(self, x: Tensor) -> Tensor:
        r"""The VQ-VAE training loss (see the class docstring), averaged over the batch."""
        z_q, _, losses = self.quantize(x)
        reconstruction = self.decoder.log_prob(x, z_q)
        return -reconstruction.mean() + self.latent_dim * losses.total

    def elbo(self, x: Tensor, *, log_prior: Tensor | None = None, reduction: str = "mean") -> ELBO:
        r"""The ELBO :math:`\log p_\theta(x \mid e_{k(x)}) + \log p(k(x))` of the point-mass
        posterior.

        Args:
            x: A batch, shape ``(B, *input_shape)``.
            log_prior: Log-probabilities ``(M, K)`` of an independent prior per position (rows
                normalised, e.g. :meth:`code_log_prior`); the uniform prior,
                :math:`\mathrm{KL} = M \log K`, when ``None``.
            reduction: ``"mean"`` over the batch or ``"none"``.

        Returns:
            A :class:`gdmlib.vae.ELBO` (value, reconstruction, kl).
        """
        reduction = _check_reduction(reduction)
        z_q, indices, _ = self.quantize(x)
        reconstruction = self.decoder.log_prob(x, z_q)
        if log_prior is None:
            kl = reconstruction.new_full(
                reconstruction.shape, self.num_latents * math.log(self.num_codes)
            )
        else:
            log_prior = self._check_log_prior(log_prior, reconstruction)
            kl = -log_prior.gather(1, indices.T).T.sum(-1)
        value = reconstruction - kl
        if reduction == "mean":
            return ELBO(value.mean(), reconstruction.mean(), kl.mean())
        return ELBO(value, reconstruction, kl)

    def _check_log_prior(self, log_prior: object, like: Tensor) -> Tensor:
        shape = (self.num_latents, self.num_codes)
        if not isinstance(log_prior, Tensor) or tuple(log_prior.shape) != shape:
            raise ValueError(f"log_prior must be a tensor of shape {shape} (positions, codes)")
        if log_prior.device != like.device:
            raise ValueError(f"log_prior is on {log_prior.device} but the model on {like.device}")
        total = torch.logsumexp(log_prior.double(), -1)
        if not torch.allclose(total, torch.zeros_like(total), atol=1e-4):
            raise ValueError(
                "every row of log_prior must be a normalised log-distribution (logsumexp = 0)"
            )
        return log_prior.to(like.dtype)

    @torch.no_grad()
    def code_log_prior(
        self, data: Tensor, *, pseudocount: float = 1.0, chunk_size: int = 512
    ) -> Tensor:
        r"""An independent categorical prior per position fitted to the codes of ``data``.

        .. math::
            \log \hat p_m(k) = \log \frac{n_{mk} + a}{N + K a},

        with :math:`n_{mk}` the number of points of ``data`` whose code at position :math:`m` is
        :math:`k` and the pseudocount :math:`a > 0` (Laplace smoothing) keeping unseen codes
        possible on new data. Fit it on training data and evaluate :meth:`elbo` on held-out data.

        Returns:
            Log-probabilities, shape ``(M, K)``.
        """
        if not (
            isinstance(pseudocount, (int, float))
            and not isinstance(pseudocount, bool)
            and pseudocount > 0
        ):
            raise ValueError(f"pseudocount must be a positive number, got {pseudocount!r}")
        chunk_size = _check_positive_int("chunk_size", chunk_size)
        data = check_batch("data", data, self.input_shape)
        indices = torch.cat(
            [self.codes(data[s : s + chunk_size]) for s in range(0, data.shape[0], chunk_size)]
        )
        counts = F.one_hot(indices, self.num_codes).sum(0).double() + pseudocount  # (M, K)
        return torch.log(counts / counts.sum(-1, keepdim=True)).to(self.quantizer.codebook.dtype)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder's mean at the quantised codes of ``x``."""
        z_q, _, _ = self.quantize(x)
        return self.decoder.mean(z_q)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        log_prior: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Decoder means at codes drawn from the prior (uniform, or ``log_prior`` of shape ``(M,
        K)``)."""
        num_samples = _check_positive_int("num_samples", num_samples)
        codebook = self.quantizer.codebook
        if log_prior is None:
            log_prior = torch.full(
                (self.num_latents, self.num_codes),
                -math.log(self.num_codes),
                device=codebook.device,
            )
        log_prior = self._check_log_prior(log_prior, codebook)
        indices = gumbel_max(log_prior.expand(num_samples, -1, -1), generator=generator)
        return self.decoder.mean(self.embed(indices))


class CategoricalVAE(nn.Module):
    r"""A VAE with :math:`M` categorical latents of :math:`K` classes each, trained with the
    Gumbel-softmax relaxation (Jang et al. 2017; Maddison et al. 2017).

    The encoder gives logits :math:`\ell_m(x) \in \mathbb{R}^K` of independent posteriors
    :math:`q(z_m \mid x) = \mathrm{Categorical}(\mathrm{softmax}\,\ell_m(x))`; the prior is
    uniform on each :math:`z_m`; the decoder reads the :math:`M` one-hot vectors, concatenated.
    The KL term is exact,

    .. math::
        \mathrm{KL}\bigl(q(z \mid x) \,\|\, p(z)\bigr) = \sum_{m=1}^M \bigl(\log K - H(q(z_m \mid
        x))\bigr),

    **summed over the latents** and, like everything in :mod:`gdmlib.vae`, averaged over the batch.

    - :meth:`loss` (training) replaces the one-hot :math:`z_m` by the relaxed sample
      :math:`y_m = \mathrm{softmax}((\ell_m + g_m)/\tau)` in the reconstruction term, which makes
      it differentiable in the encoder; it is not an ELBO (the decoder sees points inside the
      simplex that the discrete model never produces), and its bias grows with :math:`\tau`.
      With ``hard=True`` the decoder sees the one-hot vector and the gradient is the relaxed one's
      (straight-through Gumbel-softmax).
    - :meth:`elbo` (evaluation) draws **exact** one-hot samples (Gumbel-max) and is an unbiased
      estimate of the ELBO of the discrete model, a lower bound on its :math:`\log p(x)`;
      :meth:`iwae_bound` tightens it.

    Args:
        input_shape: Shape of one data point, e.g. ``(1, 8, 8)``.
        num_latents: :math:`M`.
        num_classes: :math:`K \ge 2`.
        likelihood, levels, hidden, activation: As in :func:`gdmlib.vae.make_vae`.
        tau: The temperature :math:`\tau > 0` used by :meth:`loss` (an attribute: change it
            during training to anneal, e.g. with :func:`annealed_loss`).
        hard: Straight-through samples in :meth:`loss`.
        encoder: A module mapping ``(B, *input_shape)`` to ``(B, M * K)`` logits, instead of the
            MLP.
        decoder_net: A network for the decoder (``net=`` of :class:`gdmlib.vae.Decoder`).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = (torch.rand(16, 1, 8, 8) < 0.3).float()
        >>> model = CategoricalVAE((1, 8, 8), num_latents=4, num_classes=3, hidden=(32,))
        >>> terms = model.elbo(x)
        >>> bool(terms.value <= 0), bool(0 <= terms.kl <= 4 * math.log(3))
        (True, True)
        >>> model.iwae_bound(x, num_samples=8).shape
        torch.Size([16])

    References:
        Jang, Gu, Poole. Categorical reparameterization with Gumbel-softmax. ICLR 2017.

        Maddison, Mnih, Teh. The concrete distribution. ICLR 2017.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_latents: int,
        num_classes: int,
        *,
        likelihood: str = "bernoulli",
        levels: int = 17,
        hidden: Sequence[int] = (256,),
        activation: Activation = "relu",
        tau: float = 1.0,
        hard: bool = False,
        encoder: nn.Module | None = None,
        decoder_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self.num_latents = _check_positive_int("num_latents", num_latents)
        self.num_classes = _check_positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool, got {type(hard).__name__}")
        self.latent_dim = num_latents * num_classes
        self.tau = tau
        self.hard = hard
        self.encoder = _make_encoder(encoder, self.input_shape, self.latent_dim, hidden, activation)
        self.decoder = make_decoder(
            likelihood,
            self.latent_dim,
            self.input_shape,
            levels=levels,
            hidden=hidden,
            activation=activation,
            net=decoder_net,
        )

    @property
    def tau(self) -> float:
        """The training temperature :math:`\\tau > 0`."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = _check_tau(value)

    def logits(self, x: Tensor) -> Tensor:
        """The posterior logits :math:`\\ell(x)`, shape ``(B, M, K)``."""
        x = check_batch("x", x, self.input_shape)
        return _encode(self.encoder, x, self.latent_dim).unflatten(
            1, (self.num_latents, self.num_classes)
        )

    def kl(self, x: Tensor) -> Tensor:
        r""":math:`\sum_m (\log K - H(q(z_m \mid x)))`, one value per data point, shape ``(B,)``."""
        return _categorical_kl_uniform(self.logits(x)).sum(-1)

    def relaxed_elbo(
        self,
        x: Tensor,
        *,
        tau: float | None = None,
        beta: float = 1.0,
        reduction: str = "mean",
        generator: torch.Generator | None = None,
    ) -> ELBO:
        r"""The training objective: the reconstruction at one relaxed sample minus :math:`\beta` KL.

        Args:
            x: A batch, shape ``(B, *input_shape)``.
            tau: Temperature; the model's :attr:`tau` when ``None``.
            beta: KL weight :math:`\beta \ge 0`.
            reduction: ``"mean"`` over the batch or ``"none"``.
            generator: For the Gumbel noise.
        """
        reduction = _check_reduction(reduction)
        tau = self.tau if tau is None else _check_tau(tau)
        if (
            isinstance(beta, bool)
            or not isinstance(beta, (int, float))
            or not (math.isfinite(beta) and beta >= 0)
        ):
            raise ValueError(f"beta must be a finite non-negative number, got {beta!r}")
        logits = self.logits(x)
        y = gumbel_softmax(logits, tau, hard=self.hard, generator=generator)
        reconstruction = self.decoder.log_prob(x, y.flatten(1))
        kl = _categorical_kl_uniform(logits).sum(-1)
        value = reconstruction - beta * kl
        if reduction == "mean":
            return ELBO(value.mean(), reconstruction.mean(), kl.mean())
        return ELBO(value, reconstruction, kl)

    def loss(self, x: Tensor, *, tau: float | None = None, beta: float = 1.0) -> Tensor:
        """Minus :meth:`relaxed_elbo`, averaged over the batch (for :func:`gdmlib.vae.fit`)."""
        return -self.relaxed_elbo(x, tau=tau, beta=beta).value

    def _hard_samples(
        self, logits: Tensor, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """Exact one-hot draws, ``(S, B, M, K)``."""
        indices = gumbel_max(logits.expand(num_samples, *logits.shape), generator=generator)
        return F.one_hot(indices, self.num_classes).to(logits.dtype)

    def elbo(
        self,
        x: Tensor,
        *,
        num_samples: int = 1,
        reduction: str = "mean",
        generator: torch.Generator | None = None,
    ) -> ELBO:
        r"""The ELBO of the discrete model, with exact (one-hot) posterior samples,

        .. math::
            \mathcal{L}(x) = \mathbb{E}_{z \sim q(z \mid x)} \log p_\theta(x \mid z)
            - \sum_m \bigl(\log K - H(q(z_m \mid x))\bigr),

        the expectation estimated with ``num_samples`` draws (unbiased), the KL exact.
        """
        reduction = _check_reduction(reduction)
        num_samples = _check_positive_int("num_samples", num_samples)
        logits = self.logits(x)
        z = self._hard_samples(logits, num_samples, generator)
        reconstruction = self.decoder.log_prob(x, z.flatten(-2)).mean(0)
        kl = _categorical_kl_uniform(logits).sum(-1)
        value = reconstruction - kl
        if reduction == "mean":
            return ELBO(value.mean(), reconstruction.mean(), kl.mean())
        return ELBO(value, reconstruction, kl)

    @torch.no_grad()
    def iwae_bound(
        self,
        x: Tensor,
        num_samples: int = 100,
        *,
        chunk_size: int = 100,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""The importance-weighted bound (Burda et al. 2016) with exact categorical proposals,

        .. math::
            \log \frac1S \sum_{s=1}^S \frac{p_\theta(x \mid z_s)\, K^{-M}}{q(z_s \mid x)},
            \qquad z_s \sim q(z \mid x),

        one value per data point, shape ``(B,)``.
        """
        logits = self.logits(x)
        log_q_table = torch.log_softmax(logits, -1)
        log_prior = -self.num_latents * math.log(self.num_classes)

        def log_weights(draws: int) -> Tensor:
            z = self._hard_samples(logits, draws, generator)
            return (
                self.decoder.log_prob(x, z.flatten(-2))
                + log_prior
                - (z * log_q_table).sum((-1, -2))
            )

        return importance_weighted_bound(log_weights, num_samples, chunk_size=chunk_size)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The decoder's mean at one exact posterior draw per data point."""
        z = self._hard_samples(self.logits(x), 1, generator)[0]
        return self.decoder.mean(z.flatten(-2))

    @torch.no_grad()
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Decoder means at latents drawn from the uniform prior."""
        num_samples = _check_positive_int("num_samples", num_samples)
        weight = next(self.decoder.parameters())
        indices = torch.randint(
            self.num_classes,
            (num_samples, self.num_latents),
            generator=generator,
            device=weight.device,
        )
        return self.decoder.mean(F.one_hot(indices, self.num_classes).to(weight.dtype).flatten(-2))


def annealed_loss(
    model: CategoricalVAE, *, start: float, end: float, steps: int
) -> Callable[[Tensor], Tensor]:
    r"""A loss for :func:`gdmlib.vae.fit` that anneals the temperature geometrically.

    Call :math:`t = 0, 1, \dots` sets :math:`\tau_t = \tau_0\,(\tau_1/\tau_0)^{\min(t/(T-1), 1)}`
    (from ``start`` to ``end`` over ``steps`` = :math:`T` calls, then constant), stores it in
    ``model.tau`` and returns ``model.loss(x)``. (Jang et al. 2017 anneal :math:`\tau` from 1 to
    0.5: a high temperature keeps early gradients tame, a low one makes the relaxation tight.)

    The loss keeps its count of calls in ``state_dict()``, which :func:`gdmlib.training.fit` saves
    in its checkpoints: a resumed run goes on with the right temperature (and a finished one
    restores the final ``model.tau``).

    Example:
        >>> model = CategoricalVAE((1, 8, 8), 2, 3, hidden=(8,))
        >>> loss = annealed_loss(model, start=1.0, end=0.25, steps=3)
        >>> x = torch.zeros(4, 1, 8, 8)
        >>> taus = []
        >>> for _ in range(4):
        ...     _ = loss(x)
        ...     taus.append(model.tau)
        >>> taus
        [1.0, 0.5, 0.25, 0.25]
    """
    if not isinstance(model, CategoricalVAE):
        raise TypeError(f"model must be a CategoricalVAE, got {type(model).__name__}")
    start, end = _check_tau(start), _check_tau(end)
    steps = _check_positive_int("steps", steps)
    return _AnnealedLoss(model, start, end, steps)


class _AnnealedLoss:
    """The callable :func:`annealed_loss` returns: the schedule and its count of calls."""

    def __init__(self, model: CategoricalVAE, start: float, end: float, steps: int) -> None:
        self.model, self.start, self.end, self.steps = model, start, end, steps
        self.calls = 0

    def temperature(self, call: int) -> float:
        progress = min(call / (self.steps - 1), 1.0) if self.steps > 1 else 1.0
        return self.start * (self.end / self.start) ** progress

    def __call__(self, x: Tensor) -> Tensor:
        self.model.tau = self.temperature(self.calls)
        self.calls += 1
        return self.model.loss(x)

    def state_dict(self) -> dict[str, int]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.calls = int(state["calls"])
        if self.calls > 0:
            self.model.tau = self.temperature(self.calls - 1)
