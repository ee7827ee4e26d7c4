r"""Normalizing flows: invertible layers with log-determinants, and a distribution built from them.

Used in chapters 10 and 11.

A flow writes a density on :math:`\mathbb{R}^D` as a standard normal pushed through an invertible
map. **Direction convention, used everywhere in this module**: a :class:`Transform`'s ``forward``
goes from data to noise (the *normalizing* direction), its ``inverse`` from noise to data,

.. math::
    z = f(x), \qquad x = f^{-1}(z), \qquad
    \log p_X(x) = \log \mathcal{N}(f(x); 0, I) + \log\left|\det
    \frac{\partial f(x)}{\partial x}\right|.

``forward(x) -> (z, ladj)`` returns :math:`\log|\det \partial z / \partial x|` evaluated at ``x``;
``inverse(z) -> (x, ladj)`` returns :math:`\log|\det \partial x / \partial z|` evaluated at ``z``,
so for a pair :math:`x \leftrightarrow z` the two log-determinants are exact negatives of each
other. Vectors live in the last dimension; any leading dimensions are batch dimensions, and ``ladj``
has the batch shape.

The layers:

- :class:`AffineCoupling` (RealNVP, Dinh et al. 2017): a fixed part :math:`x_a` of the features
  passes through and parametrises an affine map of the rest,
  :math:`z_b = x_b \odot e^{s(x_a)} + t(x_a)`. Both directions take one network evaluation.
- :class:`MaskedAutoregressive` (MAF, Papamakarios et al. 2017): the affine map of feature
  :math:`i` depends on the features before it,
  :math:`z_i = x_i\,e^{s_i(x_{<i})} + t_i(x_{<i})`, with all :math:`s_i, t_i` computed in one pass
  of a :class:`MADE` network (Germain et al. 2015). Density evaluation (``forward``) is one pass;
  sampling (``inverse``) takes :math:`D` passes, one per feature.
- :class:`InverseAutoregressive` (IAF, Kingma et al. 2016): the same layer used the other way round,
  so that sampling is one pass, :math:`x_i = z_i\,e^{s_i(z_{<i})} + t_i(z_{<i})`, and density
  evaluation of an arbitrary :math:`x` takes :math:`D` passes. The density of the flow's *own*
  samples is still cheap: see :meth:`Flow.rsample_and_log_prob`.
- :class:`Permutation` and :class:`Reverse`, volume-preserving reorderings placed between layers so
  that every feature gets transformed; :class:`Compose` chains transforms and :class:`Inverse` swaps
  the two directions of any transform.

Papamakarios et al. write MAF as :math:`x_i = u_i e^{\alpha_i} + \mu_i`, the inverse of our
``forward``; the two forms are the same family (:math:`s = -\alpha`, :math:`t = -\mu e^{-\alpha}`).
Log-scales pass through a soft clamp :math:`s = B \tanh(\tilde s / B)` (``log_scale_bound`` B) so
that a single layer can never scale by more than :math:`e^{\pm B}`; near zero it is the identity.

Conditional flows: every layer with a network accepts an optional ``context`` tensor (an encoder's
output :math:`h` for an IAF posterior :math:`q(z \mid x)`, say). The coupling network reads it next
to :math:`x_a`; the MADE adds a linear map of it to its first hidden layer, and keeps hidden units
that see the context only, so that the first feature's parameters depend on the context too.

:class:`Flow` wraps a transform and a standard normal base into a distribution with
:meth:`~Flow.log_prob`, :meth:`~Flow.sample`, :meth:`~Flow.rsample` and
:meth:`~Flow.rsample_and_log_prob`; :func:`realnvp`, :func:`maf` and :func:`iaf` build the usual
stacks.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> flow = Flow(maf(2, num_layers=3, hidden=(16, 16)))
    >>> x = flow.sample(5)
    >>> x.shape, flow.log_prob(x).shape
    (torch.Size([5, 2]), torch.Size([5]))
    >>> z, ladj = flow.transform(x)
    >>> x_back, ladj_back = flow.transform.inverse(z)
    >>> torch.allclose(x_back, x, atol=1e-5), torch.allclose(ladj_back, -ladj, atol=1e-5)
    (True, True)

References:
    Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.

    Germain, Gregor, Murray, Larochelle. MADE: Masked autoencoder for distribution estimation.
    ICML 2015.

    Papamakarios, Pavlakou, Murray. Masked autoregressive flow for density estimation. NeurIPS 2017.

    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved variational inference with
    inverse autoregressive flow. NeurIPS 2016.

    Rozet et al. Zuko: normalizing flows in PyTorch (2022), whose layout this module follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.nets import MLP, Activation, make_activation

__all__ = [
    "AffineCoupling",
    "Compose",
    "Flow",
    "Inverse",
    "InverseAutoregressive",
    "MADE",
    "MaskedAutoregressive",
    "MaskedLinear",
    "Permutation",
    "Reverse",
    "Transform",
    "TransformedInput",
    "TransformedPosterior",
    "iaf",
    "maf",
    "realnvp",
]

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden, int) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of widths such as (64, 64), got {hidden!r}")
    return tuple(_check_positive_int("every hidden width", width) for width in hidden)


def _check_bound(log_scale_bound: float) -> float:
    if isinstance(log_scale_bound, bool) or not isinstance(log_scale_bound, (int, float)):
        raise TypeError(f"log_scale_bound must be a number, got {type(log_scale_bound).__name__}")
    if not log_scale_bound > 0:
        raise ValueError(
            f"log_scale_bound must be positive (math.inf for no clamp), got {log_scale_bound}"
        )
    return float(log_scale_bound)


def _check_vectors(name: str, x: object, features: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != features:
        raise ValueError(f"{name} must have shape (..., {features}), got {tuple(x.shape)}")
    return x


def _check_context(context: Tensor | None, context_features: int) -> Tensor | None:
    if context_features == 0:
        if context is not None:
            raise ValueError(
                "a context was passed to a layer built without one (context_features=0)"
            )
        return None
    if context is None:
        raise ValueError(f"this layer needs a context of shape (..., {context_features}), got None")
    return _check_vectors("context", context, context_features)


def _broadcast(x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Expand ``x`` and ``context`` to a common batch shape (their last dimensions stay)."""
    if context is None:
        return x, None
    batch = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
    return x.expand(*batch, x.shape[-1]), context.expand(*batch, context.shape[-1])


def _soft_clamp(raw: Tensor, bound: float) -> Tensor:
    return raw if math.isinf(bound) else bound * torch.tanh(raw / bound)


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


class Transform(nn.Module):
    r"""An invertible map of :math:`\mathbb{R}^D` with its log-absolute-determinant.

    Subclasses implement both directions:

    - ``forward(x, context=None) -> (z, ladj)`` with
      :math:`\mathrm{ladj} = \log|\det \partial z / \partial x|` at ``x`` (data to noise);
    - ``inverse(z, context=None) -> (x, ladj)`` with
      :math:`\mathrm{ladj} = \log|\det \partial x / \partial z|` at ``z`` (noise to data).

    Inputs have shape ``(..., features)``; ``ladj`` has the batch shape ``(...)``.

    Attributes:
        features: The dimension :math:`D`.
    """

    features: int

    def forward(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(
        self, z: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class Inverse(Transform):
    r"""The inverse :math:`f^{-1}` of a transform: its ``forward`` is ``transform.inverse`` and
    back.

    Args:
        transform: The transform :math:`f` to invert; it is kept, not copied.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(
                f"transform must be a gdmlib.flows.Transform, got {type(transform).__name__}"
            )
        self.transform = transform
        self.features = transform.features

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.forward(z, context)


class Compose(Transform):
    r"""Transforms applied one after the other: :math:`f = f_K \circ \cdots \circ f_1`.

    ``forward`` applies ``transforms[0]`` first and sums the log-determinants (chain rule);
    ``inverse`` applies them in reverse order. The context, if any, goes to every layer.

    Args:
        *transforms: At least one transform, all with the same ``features``.

    Raises:
        ValueError: If no transform is given or the dimensions disagree.
    """

    def __init__(self, *transforms: Transform) -> None:
        super().__init__()
        if not transforms:
            raise ValueError("Compose needs at least one transform")
        for transform in transforms:
            if not isinstance(transform, Transform):
                raise TypeError(
                    f"every layer must be a gdmlib.flows.Transform, got {type(transform).__name__}"
                )
        dims = {transform.features for transform in transforms}
        if len(dims) != 1:
            raise ValueError(
                f"all transforms must have the same number of features, got {sorted(dims)}"
            )
        self.transforms = nn.ModuleList(transforms)
        self.features = dims.pop()

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[:-1])
        for transform in self.transforms:
            x, ladj = transform(x, context)
            total = total + ladj
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[:-1])
        for transform in reversed(self.transforms):
            z, ladj = transform.inverse(z, context)
            total = total + ladj
        return z, total


class Permutation(Transform):
    r"""Reorder the features: :math:`z_i = x_{\pi(i)}`, a volume-preserving map (ladj = 0).

    Args:
        permutation: A permutation of ``0, ..., D - 1`` (list or integer tensor).

    Raises:
        ValueError: If ``permutation`` is not a permutation of ``range(D)``.
    """

    def __init__(self, permutation: Sequence[int] | Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(permutation).flatten()
        if perm.numel() == 0 or perm.dtype.is_floating_point or perm.dtype == torch.bool:
            raise ValueError(
                f"permutation must be a non-empty sequence of ints, got {permutation!r}"
            )
        if not torch.equal(perm.sort().values, torch.arange(perm.numel())):
            raise ValueError(
                f"permutation must hold each of 0..{perm.numel() - 1} once, got {perm.tolist()}"
            )
        self.features = perm.numel()
        self.register_buffer("permutation", perm.long())
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_vectors("x", x, self.features)
        return x[..., self.permutation], x.new_zeros(x.shape[:-1])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_vectors("z", z, self.features)
        return z[..., self.inverse_permutation], z.new_zeros(z.shape[:-1])


class Reverse(Permutation):
    r"""Reverse the order of the features, :math:`z_i = x_{D-1-i}` (ladj = 0).

    Args:
        features: The dimension :math:`D`.
    """

    def __init__(self, features: int) -> None:
        super().__init__(torch.arange(_check_positive_int("features", features) - 1, -1, -1))


class AffineCoupling(Transform):
    r"""RealNVP's affine coupling layer (Dinh et al. 2017).

    With a fixed split of the features into a conditioning part :math:`a` (``mask`` true) and a
    transformed part :math:`b`,

    .. math::
        z_a = x_a, \qquad z_b = x_b \odot e^{s(x_a, h)} + t(x_a, h), \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_{i \in b} s_i(x_a, h),

    where :math:`(s, t)` is an :class:`~gdmlib.nets.MLP` of :math:`x_a` and of the context
    :math:`h` if there is one, and :math:`s` is soft-clamped to :math:`(-B, B)`. The Jacobian is
    block triangular, and the inverse :math:`x_b = (z_b - t(z_a, h)) \odot e^{-s(z_a, h)}` costs one
    network evaluation too. Alternate the mask (or put a :class:`Reverse` in between) so that every
    feature gets transformed.

    Args:
        features: The dimension :math:`D \ge 2`.
        mask: Boolean tensor of shape ``(D,)``, true for the features that pass through unchanged
            and condition the others; at least one true and one false. Default: the first
            :math:`\lfloor D/2 \rfloor` features.
        hidden: Hidden widths of the conditioner network.
        activation: Its nonlinearity (see :func:`gdmlib.nets.make_activation`).
        context_features: Size of the context vector :math:`h`; 0 for an unconditional layer.
        log_scale_bound: The soft-clamp bound :math:`B` on :math:`s`; ``math.inf`` for none.

    Raises:
        TypeError, ValueError: On bad sizes, a mask of the wrong shape or one that leaves a side
            empty, or a non-positive bound.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = AffineCoupling(4, hidden=(8,))
        >>> x = torch.randn(3, 4)
        >>> z, ladj = layer(x)
        >>> torch.equal(z[:, :2], x[:, :2]), ladj.shape
        (True, torch.Size([3]))
    """

    def __init__(
        self,
        features: int,
        mask: Tensor | None = None,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        context_features: int = 0,
        log_scale_bound: float = 5.0,
    ) -> None:
        super().__init__()
        self.features = _check_positive_int("features", features, minimum=2)
        self.context_features = _check_positive_int("context_features", context_features, minimum=0)
        self.log_scale_bound = _check_bound(log_scale_bound)
        if mask is None:
            mask = torch.arange(features) < features // 2
        mask = torch.as_tensor(mask)
        if mask.shape != (features,) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape ({features},), got {mask.dtype} "
                f"{tuple(mask.shape)}"
            )
        num_kept = int(mask.sum())
        if num_kept in (0, features):
            raise ValueError("mask must keep at least one feature and transform at least one")
        self.register_buffer("mask", mask)
        self.conditioner = MLP(
            num_kept + self.context_features,
            2 * (features - num_kept),
            hidden=_check_hidden(hidden),
            activation=activation,
        )

    def _shift_log_scale(self, kept: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        inputs = kept if context is None else torch.cat([kept, context], dim=-1)
        shift, raw_log_scale = self.conditioner(inputs).chunk(2, dim=-1)
        return shift, _soft_clamp(raw_log_scale, self.log_scale_bound)

    def _couple(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        _check_vectors("z" if inverse else "x", x, self.features)
        x, context = _broadcast(x, _check_context(context, self.context_features))
        kept, changed = x[..., self.mask], x[..., ~self.mask]
        shift, log_scale = self._shift_log_scale(kept, context)
        if inverse:
            changed, log_scale = (changed - shift) * torch.exp(-log_scale), -log_scale
        else:
            changed = changed * torch.exp(log_scale) + shift
        out = torch.empty_like(x)
        out[..., self.mask] = kept
        out[..., ~self.mask] = changed
        return out, log_scale.sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, inverse=True)


# ---------------------------------------------------------------------------------------------
# MADE and the autoregressive layers
# ---------------------------------------------------------------------------------------------


class MaskedLinear(nn.Linear):
    r"""A linear layer whose weight is multiplied by a fixed 0/1 mask:
    :math:`y = (W \odot M) x + b`.

    Args:
        mask: Tensor of shape ``(out_features, in_features)``; nonzero entries are connections.
    """

    def __init__(self, mask: Tensor) -> None:
        if mask.dim() != 2:
            raise ValueError(
                f"mask must be 2-D (out_features, in_features), got shape {tuple(mask.shape)}"
            )
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", (mask != 0).to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation (Germain et al. 2015), optionally
    conditional.

    Maps :math:`x \in \mathbb{R}^D` (and a context :math:`h`) to ``params_per_feature`` numbers per
    feature, output of shape ``(..., params_per_feature, D)``, such that the outputs of feature
    :math:`i` depend only on the features that come before it in the autoregressive order:

    .. math::
        \frac{\partial\, \mathrm{out}_{p, i}}{\partial x_j} = 0 \quad
        \text{whenever } \mathrm{order}_j \ge \mathrm{order}_i.

    Every unit gets a degree: input :math:`j` has degree :math:`\mathrm{order}_j`, hidden units get
    degrees in :math:`\{0, \dots, D-2\}` (cycled), and a connection exists from degree :math:`d` to
    a hidden unit of degree :math:`d'` iff :math:`d' \ge d`, and to an output of degree :math:`d'`
    iff :math:`d' > d`. The context is added through a dense linear map to the first layer, together
    with extra hidden units of degree :math:`-1` that see the context only; they are what lets the
    first feature's outputs depend on :math:`h` (and, for :math:`D = 1`, on anything at all). Hidden
    widths of at least :math:`D` give every allowed connection a path.

    Args:
        features: The dimension :math:`D`.
        params_per_feature: Outputs per feature (2 for a shift and a log-scale).
        hidden: Hidden widths; ``()`` gives a linear autoregressive map.
        activation: The nonlinearity (see :func:`gdmlib.nets.make_activation`).
        context_features: Size of the context :math:`h`; 0 for none.
        order: The position of each feature in the autoregressive order, a permutation of
            ``0..D-1``; default ``0, 1, ..., D-1`` (feature :math:`i` depends on features
            :math:`j < i`).

    Raises:
        TypeError, ValueError: On bad sizes or an ``order`` that is not a permutation.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> made = MADE(3, params_per_feature=2, hidden=(8,))
        >>> made(torch.randn(5, 3)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(
        self,
        features: int,
        params_per_feature: int = 2,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.features = _check_positive_int("features", features)
        self.params_per_feature = _check_positive_int("params_per_feature", params_per_feature)
        self.context_features = _check_positive_int("context_features", context_features, minimum=0)
        hidden = _check_hidden(hidden)
        order = torch.arange(features) if order is None else torch.as_tensor(order).flatten()
        if order.dtype.is_floating_point or not torch.equal(
            order.sort().values, torch.arange(features)
        ):
            raise ValueError(
                f"order must be a permutation of 0..{features - 1}, got {order.tolist()}"
            )
        self.register_buffer("order", order.long())

        # Degree -1 units (context only) exist when there is a context, or when D = 1 leaves no
        # admissible degree in 0..D-2.
        lowest = -1 if (self.context_features > 0 or features == 1) else 0
        span = features - 1 - lowest  # number of admissible hidden degrees lowest..D-2
        degrees = [self.order]
        for width in hidden:
            degrees.append(lowest + torch.arange(width) % span)
        out_degrees = self.order.repeat(self.params_per_feature)  # output index p * D + i

        layers: list[nn.Module] = []
        for degree_in, degree_out in zip(degrees[:-1], degrees[1:]):
            layers.append(MaskedLinear(degree_out[:, None] >= degree_in[None, :]))
            layers.append(make_activation(activation))
        layers.append(MaskedLinear(out_degrees[:, None] > degrees[-1][None, :]))
        self.layers = nn.ModuleList(layers)
        first_width = hidden[0] if hidden else features * self.params_per_feature
        self.context_layer = (
            nn.Linear(self.context_features, first_width) if self.context_features else None
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The outputs, of shape ``(..., params_per_feature, D)``."""
        _check_vectors("x", x, self.features)
        context = _check_context(context, self.context_features)
        h = self.layers[0](x)
        if self.context_layer is not None:
            h = h + self.context_layer(context)
        for layer in self.layers[1:]:
            h = layer(h)
        return h.unflatten(-1, (self.params_per_feature, self.features))


class MaskedAutoregressive(Transform):
    r"""A masked autoregressive flow layer (MAF, Papamakarios et al. 2017).

    .. math::
        z_i = x_i\, e^{s_i(x_{<i}, h)} + t_i(x_{<i}, h), \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i s_i(x_{<i}, h),

    with :math:`(t, s)` from one pass of a :class:`MADE` (":math:`<i`" in its ``order``) and
    :math:`s` soft-clamped to :math:`(-B, B)`. The Jacobian :math:`\partial z / \partial x` is
    triangular in that order. ``forward`` (density) is one pass; ``inverse`` (sampling) solves
    :math:`x_i = (z_i - t_i) e^{-s_i}` feature by feature in :math:`D` passes. Use it inside
    :class:`InverseAutoregressive` for the opposite trade-off (IAF).

    Args:
        features: The dimension :math:`D`.
        hidden: Hidden widths of the MADE.
        activation: Its nonlinearity.
        context_features: Size of the context :math:`h`; 0 for an unconditional layer.
        order: Autoregressive order of the features (see :class:`MADE`).
        log_scale_bound: The soft-clamp bound :math:`B`; ``math.inf`` for none.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = MaskedAutoregressive(3, hidden=(16,))
        >>> x = torch.randn(4, 3)
        >>> z, ladj = layer(x)
        >>> x_back, _ = layer.inverse(z)
        >>> torch.allclose(x_back, x, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        log_scale_bound: float = 5.0,
    ) -> None:
        super().__init__()
        self.made = MADE(
            features,
            2,
            hidden=hidden,
            activation=activation,
            context_features=context_features,
            order=order,
        )
        self.features = self.made.features
        self.context_features = self.made.context_features
        self.log_scale_bound = _check_bound(log_scale_bound)

    def _shift_log_scale(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        shift, raw_log_scale = self.made(x, context).unbind(-2)
        return shift, _soft_clamp(raw_log_scale, self.log_scale_bound)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_vectors("x", x, self.features)
        x, context = _broadcast(x, _check_context(context, self.context_features))
        shift, log_scale = self._shift_log_scale(x, context)
        return x * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_vectors("z", z, self.features)
        z, context = _broadcast(z, _check_context(context, self.context_features))
        # After pass k the first k features in the order are exact; the k-th pass fixes one more.
        x = torch.zeros_like(z)
        for _ in range(self.features):
            shift, log_scale = self._shift_log_scale(x, context)
            x = (z - shift) * torch.exp(-log_scale)
        return x, -log_scale.sum(-1)


class InverseAutoregressive(Inverse):
    r"""An inverse autoregressive flow layer (IAF, Kingma et al. 2016): a MAF layer run backwards.

    Sampling (``inverse``, noise to data) is one pass of a :class:`MADE` **on the noise**,

    .. math::
        x_i = z_i\, e^{s_i(z_{<i}, h)} + t_i(z_{<i}, h), \qquad
        \log\left|\det \frac{\partial x}{\partial z}\right| = \sum_i s_i(z_{<i}, h),

    which is how Kingma et al. build a flexible posterior :math:`q(z \mid x)` with context
    :math:`h` from the encoder. ``forward`` (density of an arbitrary point) takes :math:`D`
    passes. Arguments are those of :class:`MaskedAutoregressive`; the wrapped layer is
    ``self.transform``.
    """

    def __init__(
        self,
        features: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        log_scale_bound: float = 5.0,
    ) -> None:
        super().__init__(
            MaskedAutoregressive(
                features,
                hidden=hidden,
                activation=activation,
                context_features=context_features,
                order=order,
                log_scale_bound=log_scale_bound,
            )
        )
        self.context_features = self.transform.context_features


# ---------------------------------------------------------------------------------------------
# Stacks and the distribution
# ---------------------------------------------------------------------------------------------


def _stack(layer: type, features: int, num_layers: int, **kwargs) -> Compose:
    _check_positive_int("num_layers", num_layers)
    layers: list[Transform] = []
    for index in range(num_layers):
        if index > 0:
            layers.append(Reverse(features))
        layers.append(layer(features, **kwargs))
    return Compose(*layers)


def realnvp(
    features: int,
    num_layers: int = 4,
    *,
    hidden: Sequence[int] = (64, 64),
    activation: Activation = "relu",
    context_features: int = 0,
    log_scale_bound: float = 5.0,
) -> Compose:
    r"""A RealNVP stack: ``num_layers`` :class:`AffineCoupling` layers with a :class:`Reverse`
    between consecutive ones, so that the halves swap roles. Arguments are those of the layer."""
    return _stack(
        AffineCoupling,
        features,
        num_layers,
        hidden=hidden,
        activation=activation,
        context_features=context_features,
        log_scale_bound=log_scale_bound,
    )


def maf(
    features: int,
    num_layers: int = 4,
    *,
    hidden: Sequence[int] = (64, 64),
    activation: Activation = "relu",
    context_features: int = 0,
    log_scale_bound: float = 5.0,
) -> Compose:
    r"""A MAF stack: ``num_layers`` :class:`MaskedAutoregressive` layers with a :class:`Reverse`
    between consecutive ones (Papamakarios et al. 2017). Fast ``forward`` / log-density."""
    return _stack(
        MaskedAutoregressive,
        features,
        num_layers,
        hidden=hidden,
        activation=activation,
        context_features=context_features,
        log_scale_bound=log_scale_bound,
    )


def iaf(
    features: int,
    num_layers: int = 4,
    *,
    hidden: Sequence[int] = (64, 64),
    activation: Activation = "relu",
    context_features: int = 0,
    log_scale_bound: float = 5.0,
) -> Compose:
    r"""An IAF stack: ``num_layers`` :class:`InverseAutoregressive` layers with a :class:`Reverse`
    between consecutive ones (Kingma et al. 2016). Fast ``inverse`` / sampling."""
    return _stack(
        InverseAutoregressive,
        features,
        num_layers,
        hidden=hidden,
        activation=activation,
        context_features=context_features,
        log_scale_bound=log_scale_bound,
    )


class Flow(nn.Module):
    r"""A normalizing flow distribution: a standard normal base pushed through ``transform``'s
    inverse.

    .. math::
        x = f^{-1}(u), \quad u \sim \mathcal{N}(0, I_D), \qquad
        \log p(x \mid h) = \log \mathcal{N}(f(x; h); 0, I) + \log\left|\det
        \frac{\partial f(x; h)}{\partial x}\right|.

    Sample shapes follow ``torch.distributions``: without a context a sample has shape
    ``sample_shape + (D,)``; with a context of shape ``batch + (C,)`` it has shape
    ``sample_shape + batch + (D,)``, one draw per context vector and per sample index (so a
    conditional flow is a batch of distributions, one per context).

    Args:
        transform: The map :math:`f` from data to noise.

    Attributes:
        transform: The transform.
        features: The dimension :math:`D`.
        base_loc: Buffer of the base normal's mean (zeros); with ``base_scale`` it follows
            ``.to(device, dtype)`` and fixes the device and dtype of the samples.
        base_scale: Buffer of the base normal's standard deviation (ones).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> posterior = Flow(iaf(2, num_layers=2, hidden=(8,), context_features=3))
        >>> h = torch.randn(4, 3)  # e.g. an encoder's output for 4 data points
        >>> z, log_q = posterior.rsample_and_log_prob(10, context=h)
        >>> z.shape, log_q.shape
        (torch.Size([10, 4, 2]), torch.Size([10, 4]))
        >>> torch.allclose(log_q, posterior.log_prob(z, context=h), atol=1e-4)
        True
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(
                f"transform must be a gdmlib.flows.Transform, got {type(transform).__name__}"
            )
        self.transform = transform
        self.features = transform.features
        self.register_buffer("base_loc", torch.zeros(self.features))
        self.register_buffer("base_scale", torch.ones(self.features))

    @property
    def base(self) -> torch.distributions.Distribution:
        """The base distribution :math:`\\mathcal{N}(0, I_D)` as a ``torch.distributions``
        object."""
        return torch.distributions.Independent(
            torch.distributions.Normal(self.base_loc, self.base_scale), 1
        )

    def _base_log_prob(self, u: Tensor) -> Tensor:
        return -0.5 * (u.square().sum(-1) + self.features * _LOG_2PI)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`\\log p(x \\mid h)`, of the batch shape of ``x`` (broadcast with the
        context's)."""
        _check_vectors("x", x, self.features)
        if x.device != self.base_loc.device:
            raise ValueError(
                f"x is on {x.device} but the flow on {self.base_loc.device}; move one of them with "
                ".to()"
            )
        u, ladj = self.transform(x, context)
        return self._base_log_prob(u) + ladj

    def _noise(
        self,
        sample_shape: int | Sequence[int],
        context: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        if isinstance(sample_shape, bool) or not isinstance(
            sample_shape, (int, Sequence, torch.Size)
        ):
            raise TypeError(
                f"sample_shape must be an int or a sequence of ints, got {sample_shape!r}"
            )
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
            raise ValueError(f"sample_shape must hold non-negative ints, got {sample_shape!r}")
        if context is not None:
            if not isinstance(context, Tensor) or context.dim() < 1:
                raise ValueError("context must be a tensor of shape (..., context_features)")
            shape = shape + tuple(context.shape[:-1])
        return torch.randn(
            *shape,
            self.features,
            generator=generator,
            device=self.base_loc.device,
            dtype=self.base_loc.dtype,
        )

    @staticmethod
    def _expand(context: Tensor | None, noise: Tensor) -> Tensor | None:
        return None if context is None else context.expand(*noise.shape[:-1], context.shape[-1])

    def rsample_and_log_prob(
        self,
        sample_shape: int | Sequence[int] = (),
        context: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Reparametrised samples and their log-density, from the sampling direction only.

        :math:`\log p(x) = \log \mathcal{N}(u) - \log|\det \partial x / \partial u|` uses the
        log-determinant of ``transform.inverse``, so for an IAF this costs one pass per layer where
        :meth:`log_prob` of the same points would cost :math:`D`.
        """
        noise = self._noise(sample_shape, context, generator)
        x, ladj = self.transform.inverse(noise, self._expand(context, noise))
        return x, self._base_log_prob(noise) - ladj

    def rsample(
        self,
        sample_shape: int | Sequence[int] = (),
        context: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Reparametrised samples :math:`x = f^{-1}(u)`: gradients flow to the parameters."""
        noise = self._noise(sample_shape, context, generator)
        return self.transform.inverse(noise, self._expand(context, noise))[0]

    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        context: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples without a graph (:meth:`rsample` under ``torch.no_grad``)."""
        with torch.no_grad():
            return self.rsample(sample_shape, context, generator=generator)


# ---------------------------------------------------------------------------------------------
# Flows inside a VAE: a posterior pushed through a shared transform, a network on transformed inputs
# ---------------------------------------------------------------------------------------------


def _needs_context(transform: Transform) -> bool:
    """Whether any layer of ``transform`` was built with a context."""
    return any(getattr(module, "context_features", 0) for module in transform.modules())


class TransformedPosterior(nn.Module):
    r"""A posterior pushed through a shared (unconditional) transform,
    :math:`q(z \mid x) = T_\# q_0(z_0 \mid x)`.

    With :math:`T` the *sampling* direction of ``transform`` (its ``inverse``, noise to data),

    .. math::
        z_0 \sim q_0(z_0 \mid x), \quad z = T(z_0), \qquad
        \log q(z \mid x) = \log q_0(z_0 \mid x) - \log\left|\det
        \frac{\partial T(z_0)}{\partial z_0}\right| .

    Unlike :class:`gdmlib.vae.IAFPosterior`, :math:`T` does not depend on :math:`x`. Such a VAE,
    with prior :math:`\mathcal{N}(0, I)` and decoder :math:`p(x \mid z)`, has exactly the ELBO of
    the VAE with posterior :math:`q_0`, flow prior :math:`(T^{-1})_\# \mathcal{N}(0, I)` (a
    ``FlowPrior`` whose density direction is :math:`T`, i.e. ``Inverse(transform)``) and decoder
    :math:`p(x \mid T(z_0))` (a decoder on :class:`TransformedInput`) — Chen et al. 2017.

    Args:
        base: The posterior :math:`q_0`: a module with ``latent_dim``, ``input_shape`` and
            ``rsample_and_log_prob(x, num_samples, generator=None) -> (z0 (S, B, D), log_q0 (S,
            B))``, e.g. a :class:`gdmlib.vae.GaussianPosterior`.
        transform: An unconditional :class:`Transform` with ``features == base.latent_dim``; it is
            kept, not copied, so that it can be shared with a prior or a decoder.

    Raises:
        TypeError: If ``base`` lacks that interface or ``transform`` is not a Transform.
        ValueError: If the dimensions disagree or the transform needs a context.

    Example:
        >>> from gdmlib.vae import GaussianPosterior
        >>> _ = torch.manual_seed(0)
        >>> posterior = TransformedPosterior(
        ...     GaussianPosterior((3,), 2, hidden=(8,)), iaf(2, 2, hidden=(8,))
        ... )
        >>> z, log_q = posterior.rsample_and_log_prob(torch.rand(5, 3), num_samples=4)
        >>> z.shape, log_q.shape
        (torch.Size([4, 5, 2]), torch.Size([4, 5]))

    References:
        Chen, Kingma, Salimans, Duan, Dhariwal, Schulman, Sutskever, Abbeel. Variational lossy
        autoencoder. ICLR 2017.
    """

    def __init__(self, base: nn.Module, transform: Transform) -> None:
        super().__init__()
        missing = [
            name
            for name in ("latent_dim", "input_shape", "rsample_and_log_prob")
            if not hasattr(base, name)
        ]
        if missing or not isinstance(base, nn.Module):
            raise TypeError(
                "base must be a posterior module with latent_dim, input_shape and "
                f"rsample_and_log_prob (e.g. gdmlib.vae.GaussianPosterior); {type(base).__name__} "
                f"lacks {missing or 'nn.Module'}"
            )
        if not isinstance(transform, Transform):
            raise TypeError(
                f"transform must be a gdmlib.flows.Transform, got {type(transform).__name__}"
            )
        if transform.features != base.latent_dim:
            raise ValueError(
                f"the transform has {transform.features} features, the posterior {base.latent_dim}"
            )
        if _needs_context(transform):
            raise ValueError(
                "the transform must be unconditional (context_features=0): T is shared by all x"
            )
        self.base, self.transform = base, transform
        self.latent_dim, self.input_shape = base.latent_dim, tuple(base.input_shape)

    def rsample_and_log_prob(
        self, x: Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reparametrised draws ``z = T(z0)``, shape ``(S, B, D)``, and :math:`\\log q(z \\mid x)`,
        ``(S, B)``."""
        z0, log_q0 = self.base.rsample_and_log_prob(x, num_samples, generator=generator)
        z, ladj = self.transform.inverse(z0)
        return z, log_q0 - ladj


class TransformedInput(nn.Module):
    r"""A network applied after the sampling direction of a transform,
    :math:`z_0 \mapsto \mathrm{net}(T(z_0))`.

    :math:`T` is ``transform.inverse`` (noise to data, as in :class:`TransformedPosterior`), so a
    VAE decoder built on ``TransformedInput(transform, decoder_net)`` is :math:`p(x \mid T(z_0))`:
    it reads the base variable :math:`z_0` of a flow prior. The transform and the network are
    kept, not copied.

    Args:
        transform: An unconditional :class:`Transform`.
        net: A module mapping ``(..., transform.features)`` to anything.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> transform, net = iaf(2, 2, hidden=(8,)), nn.Linear(2, 3)
        >>> z0 = torch.randn(4, 2)
        >>> torch.equal(TransformedInput(transform, net)(z0), net(transform.inverse(z0)[0]))
        True
    """

    def __init__(self, transform: Transform, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(
                f"transform must be a gdmlib.flows.Transform, got {type(transform).__name__}"
            )
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if _needs_context(transform):
            raise ValueError("the transform must be unconditional (context_features=0)")
        self.transform, self.net = transform, net

    def forward(self, z0: Tensor) -> Tensor:
        z, _ = self.transform.inverse(_check_vectors("z0", z0, self.transform.features))
        return self.net(z)
