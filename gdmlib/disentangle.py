r"""The entangling bijection of the impossibility theorem of unsupervised disentanglement.

Locatello et al. (2019, Theorem 1): for :math:`d > 1` and a factorised density
:math:`p(z) = \prod_i p_i(z_i)`, there are infinitely many bijections :math:`f` of the support with
:math:`f(z) \sim p(z)` and :math:`\partial f_i / \partial z_j \ne 0` for all :math:`i, j` almost
everywhere. A model :math:`(p(z), p(x \mid z))` and the model :math:`(p(z), p(x \mid f^{-1}(z)))`
then have the same :math:`p(x)`, so no unsupervised method can prefer the disentangled one. The
construction, with :math:`F_i` the CDF of :math:`p_i`, :math:`\Phi` the standard normal CDF and
:math:`A` an orthogonal matrix with no zero entry, is

.. math::
    f = F^{-1} \circ \Phi \circ A \circ \Phi^{-1} \circ F, \qquad
    \frac{\partial f_i}{\partial z_j}(z)
    = \frac{p_j(z_j)}{\varphi(x_j)}\, A_{ij}\, \frac{\varphi(y_i)}{p_i(f_i(z))},
    \quad x = \Phi^{-1}(F(z)),\ y = A x,

applied coordinate-wise: :math:`F(z)` is uniform on :math:`[0, 1]^d`, :math:`\Phi^{-1}` makes it
:math:`\mathcal N(0, I)`, which the rotation :math:`A` leaves invariant, and the last two maps undo
the first two. For a uniform prior :math:`|\det J_f| = \prod_i \varphi(y_i) / \prod_j
\varphi(x_j) = 1` (:math:`\lVert Ax \rVert = \lVert x \rVert`); for a Gaussian prior :math:`f(z) =
Az`.

- :func:`hadamard_rotation` gives :math:`H_d / \sqrt d` (Sylvester's construction, :math:`d` a power
  of 2): every entry is :math:`\pm 1/\sqrt d`, the most entangling rotation;
- :func:`random_dense_rotation` draws a Haar-random orthogonal matrix (no zero entry almost
  surely);
- :func:`entangling_bijection` builds :math:`f` (:class:`EntanglingBijection`, with its inverse and
  closed-form Jacobian) for any univariate ``torch.distributions`` marginal with ``cdf`` and
  ``icdf``.

Tensors keep their device and dtype; use float64 for exact checks (the CDFs saturate in float32).
Used in chapter 13.

Example:
    >>> import torch
    >>> f = entangling_bijection(hadamard_rotation(2), torch.distributions.Uniform(0.0, 1.0))
    >>> u = torch.rand(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(f.inverse(f(u)), u, atol=1e-12))
    True
    >>> round(float(f.jacobian(u).det().abs().max()), 10)  # volume preserving for a uniform prior
    1.0

References:
    Locatello, Bauer, Lucic, Rätsch, Gelly, Schölkopf & Bachem (2019). Challenging common
    assumptions in the unsupervised learning of disentangled representations. ICML, Theorem 1.

    Hyvärinen & Pajunen (1999). Nonlinear independent component analysis: existence and uniqueness
    results. Neural Networks 12(3).

    Mezzadri (2007). How to generate random matrices from the classical compact groups. Notices of
    the AMS 54(5).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from gdmlib._checks import check_positive_int

__all__ = [
    "EntanglingBijection",
    "entangling_bijection",
    "hadamard_rotation",
    "random_dense_rotation",
]


def hadamard_rotation(
    d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    r"""The normalised Hadamard matrix :math:`H_d / \sqrt d`, orthogonal with all entries
    :math:`\pm 1 / \sqrt d`.

    Sylvester's construction :math:`H_{2m} = \begin{pmatrix} H_m & H_m \\ H_m & -H_m
    \end{pmatrix}`, :math:`H_1 = (1)`.

    Args:
        d: A power of 2, at least 2.
        dtype: A floating dtype.
        device: Where the matrix lives.

    Returns:
        Shape ``(d, d)``.

    Raises:
        TypeError: If ``d`` is not an int or ``dtype`` not floating.
        ValueError: If ``d`` is not a power of 2 of at least 2.

    Example:
        >>> hadamard_rotation(2) * 2**0.5
        tensor([[ 1.,  1.],
                [ 1., -1.]], dtype=torch.float64)
    """
    d = check_positive_int("d", d, minimum=2)
    if d & (d - 1):
        raise ValueError(f"d must be a power of 2 for a Hadamard matrix, got {d}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    matrix = torch.ones(1, 1, dtype=torch.float64)
    while matrix.shape[0] < d:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return (matrix / d**0.5).to(dtype=dtype, device=device)


def random_dense_rotation(
    d: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""A Haar-random orthogonal matrix (QR of a Gaussian matrix with the signs fixed).

    :math:`G = QR` with :math:`G` standard Gaussian;
    :math:`Q \operatorname{diag}(\operatorname{sign} R_{ii})` is Haar distributed on
    :math:`O(d)` (Mezzadri 2007). Its entries have a density, so
    none is zero almost surely: it entangles every coordinate.

    Args:
        d: Dimension, at least 2.
        generator: A CPU generator for reproducibility.
        dtype: A floating dtype.
        device: Where the matrix lives (drawn on the CPU, then moved).

    Returns:
        Shape ``(d, d)``, orthogonal.

    Example:
        >>> a = random_dense_rotation(4, torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(a @ a.T, torch.eye(4, dtype=torch.float64), atol=1e-12))
        True
        >>> bool((a.abs() > 0).all())
        True
    """
    d = check_positive_int("d", d, minimum=2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype=dtype, device=device)


def _check_rotation(rotation: object) -> Tensor:
    if not isinstance(rotation, Tensor) or not rotation.is_floating_point():
        got = getattr(rotation, "dtype", type(rotation).__name__)
        raise TypeError(f"rotation must be a floating torch.Tensor, got {got}")
    if rotation.dim() != 2 or rotation.shape[0] != rotation.shape[1] or rotation.shape[0] < 2:
        raise ValueError(
            f"rotation must be a square (d, d) matrix with d >= 2, got {tuple(rotation.shape)}"
        )
    if not torch.isfinite(rotation).all():
        raise ValueError("rotation must be finite")
    eye = torch.eye(rotation.shape[0], dtype=rotation.dtype, device=rotation.device)
    error = float((rotation @ rotation.T - eye).abs().max())
    tolerance = 1e-10 if rotation.dtype == torch.float64 else 1e-5
    if error > tolerance:
        raise ValueError(
            f"rotation must be orthogonal (A A^T = I): max |A A^T - I| = {error:.3g} > "
            f"{tolerance:g}; use hadamard_rotation or random_dense_rotation"
        )
    return rotation


def _check_marginal(marginal: object, d: int, rotation: Tensor) -> Distribution:
    if not isinstance(marginal, Distribution):
        raise TypeError(
            f"marginal must be a torch.distributions.Distribution, got {type(marginal).__name__}"
        )
    if tuple(marginal.event_shape) != () or tuple(marginal.batch_shape) not in ((), (d,)):
        raise ValueError(
            "marginal must be univariate (event_shape ()) with batch_shape () or "
            f"({d},), got event_shape {tuple(marginal.event_shape)} and batch_shape "
            f"{tuple(marginal.batch_shape)}"
        )
    probe = torch.full((d,), 0.5, dtype=rotation.dtype)
    for method in ("icdf", "cdf"):
        try:
            getattr(marginal, method)(
                marginal.icdf(probe) if method == "cdf" else probe  # a point of the support
            )
        except NotImplementedError as error:
            raise ValueError(
                f"marginal {type(marginal).__name__} has no {method}: the bijection needs both "
                "cdf and icdf (e.g. Normal, Uniform, Laplace, Exponential)"
            ) from error
    return marginal


class EntanglingBijection:
    r"""The map :math:`f = F^{-1} \circ \Phi \circ A \circ \Phi^{-1} \circ F` of
    :func:`entangling_bijection` (see the module docstring), on ``(N, d)`` tensors.

    Attributes:
        rotation: The orthogonal :math:`A`, shape ``(d, d)``.
        marginal: The univariate prior of every coordinate (or of each, with ``batch_shape (d,)``).
    """

    def __init__(self, rotation: Tensor, marginal: Distribution) -> None:
        self.rotation = _check_rotation(rotation)
        self.marginal = _check_marginal(marginal, rotation.shape[0], rotation)
        self._normal = Normal(
            torch.zeros((), dtype=rotation.dtype, device=rotation.device),
            torch.ones((), dtype=rotation.dtype, device=rotation.device),
        )

    @property
    def dim(self) -> int:
        """The dimension :math:`d`."""
        return self.rotation.shape[0]

    def _check(self, z: object) -> Tensor:
        if not isinstance(z, Tensor) or not z.is_floating_point():
            got = getattr(z, "dtype", type(z).__name__)
            raise TypeError(f"z must be a floating torch.Tensor, got {got}")
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (N, {self.dim}), got {tuple(z.shape)}")
        if z.device != self.rotation.device:
            raise ValueError(
                f"z and the rotation must be on the same device, got {z.device} and "
                f"{self.rotation.device}"
            )
        return z

    def _gaussianise(self, z: Tensor) -> Tensor:
        u = self.marginal.cdf(z.to(self.rotation.dtype))
        tiny = torch.finfo(u.dtype).tiny
        return self._normal.icdf(u.clamp(tiny, 1 - torch.finfo(u.dtype).eps / 2))

    def _degaussianise(self, y: Tensor) -> Tensor:
        return self.marginal.icdf(self._normal.cdf(y))

    def __call__(self, z: Tensor) -> Tensor:
        """:math:`f(z)` row by row, shape ``(N, d)``."""
        z = self._check(z)
        return self._degaussianise(self._gaussianise(z) @ self.rotation.T).to(z.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        r""":math:`f^{-1}(z) = F^{-1} \circ \Phi \circ A^\top \circ \Phi^{-1} \circ F`."""
        z = self._check(z)
        return self._degaussianise(self._gaussianise(z) @ self.rotation).to(z.dtype)

    def jacobian(self, z: Tensor) -> Tensor:
        r"""The closed-form Jacobians :math:`J_{ij} = \frac{p_j(z_j)}{\varphi(x_j)} A_{ij}
        \frac{\varphi(y_i)}{p_i(f_i)}`, shape ``(N, d, d)``."""
        z = self._check(z).to(self.rotation.dtype)
        x = self._gaussianise(z)
        y = x @ self.rotation.T
        f = self._degaussianise(y)
        column = (self.marginal.log_prob(z) - self._normal.log_prob(x)).exp()  # (N, d) over j
        row = (self._normal.log_prob(y) - self.marginal.log_prob(f)).exp()  # (N, d) over i
        return row.unsqueeze(2) * self.rotation.unsqueeze(0) * column.unsqueeze(1)

    def __repr__(self) -> str:
        return f"EntanglingBijection(d={self.dim}, marginal={self.marginal!r})"


def entangling_bijection(rotation: Tensor, marginal: Distribution) -> EntanglingBijection:
    r"""The measure-preserving, completely entangling bijection of Locatello et al.'s Theorem 1.

    Args:
        rotation: An orthogonal matrix :math:`A`, shape ``(d, d)``, :math:`d \ge 2` (with no zero
            entry for complete entanglement: :func:`hadamard_rotation`,
            :func:`random_dense_rotation`).
        marginal: The prior of each coordinate: a univariate ``torch.distributions`` object with
            ``cdf``, ``icdf`` and ``log_prob`` (batch shape ``()`` or ``(d,)``), in the rotation's
            dtype and on its device.

    Returns:
        An :class:`EntanglingBijection`: ``f(z)``, ``f.inverse(z)``, ``f.jacobian(z)``.

    Raises:
        TypeError: If ``rotation`` is not a floating tensor or ``marginal`` not a distribution.
        ValueError: If ``rotation`` is not square and orthogonal (to 1e-10 in float64), or the
            marginal is not univariate or lacks ``cdf``/``icdf`` (e.g. ``Gamma``).

    Example:
        >>> a = hadamard_rotation(2)
        >>> f = entangling_bijection(a, torch.distributions.Normal(0.0, 1.0))
        >>> z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        >>> f(z)  # for a Gaussian prior, f(z) = A z
        tensor([[0.7071, 0.7071]], dtype=torch.float64)
    """
    return EntanglingBijection(rotation, marginal)
