r"""Discrete latent variables: the Gumbel-max trick, the Gumbel-softmax relaxation, vector quantisation.

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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VQLosses",
    "VectorQuantizer",
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
        raise ValueError(f"logits must have shape (..., K) with K >= 1 categories, got {tuple(logits.shape)}")
    return logits


def sample_gumbel(
    shape: tuple[int, ...] | torch.Size,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""I.i.d. standard Gumbel noise :math:`g = -\log(-\log U)`, :math:`U \sim \mathcal{U}(0, 1)`.

    Its CDF is :math:`\exp(-e^{-g})`, mean the Euler–Mascheroni constant :math:`\gamma \approx 0.5772`.

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
    noise = sample_gumbel(logits.shape, dtype=logits.dtype, device=logits.device, generator=generator)
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
    if isinstance(tau, Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a single number, got a tensor of shape {tuple(tau.shape)}")
        tau = float(tau)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a number, got {type(tau).__name__}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"the temperature tau must be a finite positive number, got {tau}")
    noise = sample_gumbel(logits.shape, dtype=logits.dtype, device=logits.device, generator=generator)
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    r"""KL divergence from a categorical :math:`q = \mathrm{softmax}(\ell)` to the uniform on K values.

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

    Example:
        >>> round(float(categorical_kl_uniform(torch.zeros(10))), 6)
        0.0
        >>> round(float(categorical_kl_uniform(torch.tensor([0.0, -float("inf")]))), 6)  # log 2
        0.693147
    """
    logits = _check_logits(logits)
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
    r"""Nearest-neighbour vector quantisation with straight-through gradients (van den Oord et al. 2017).

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
    :math:`\mathrm{sg}[e_k] + (z_e - \mathrm{sg}[z_e])`: the same gradient, and a forward value equal
    to :math:`e_k` bit for bit. Both losses are means over all elements of :math:`z_e` (as in the
    reference implementation), i.e. the paper's squared norms divided by the number of elements.

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
        for name, value in (("num_codes", num_codes), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError(f"beta must be a number, got {type(beta).__name__}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite non-negative number, got {beta}")
        self.num_codes = num_codes
        self.dim = dim
        self.beta = float(beta)
        self.codebook = nn.Parameter(torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes))

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
                f"z_e must have shape (N, {self.dim}) or (N, {self.dim}, H, W) (channels = dim), got {tuple(z_e.shape)}"
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
        r"""The codes of ``indices``, in the input layout: ``(N,) -> (N, D)``, ``(N, H, W) -> (N, D, H, W)``.

        Gradients flow to the codebook (this is a plain lookup, without straight-through).
        """
        if not isinstance(indices, Tensor) or indices.dtype not in (torch.int32, torch.int64):
            raise TypeError("indices must be an integer (int64 or int32) tensor")
        if indices.dim() < 1:
            raise ValueError("indices must have shape (N,) or (N, *spatial)")
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
        return z_q, indices, VQLosses(codebook_loss, commitment_loss, codebook_loss + commitment_loss)


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
