r"""Small network building blocks shared by every model of the book.

Used by every chapter that trains a network (03, 04, 05, 07, 08, 10–12), mostly through the
model modules.

Two families:

- :class:`MLP`, a fully connected network
  :math:`x \mapsto W_L\,\sigma(\cdots\sigma(W_1 x + b_1)\cdots) + b_L` with a linear last layer,
  used for 1-D and 2-D toys, critics, encoders and decoders of low-dimensional data;
- :class:`ConvEncoder8` and :class:`ConvDecoder8`, a small convolutional pair for 8×8 single-channel
  images (scikit-learn's digits): the encoder maps ``(N, 1, 8, 8)`` to ``(N, out_features)`` and the
  decoder maps ``(N, in_features)`` to logits of shape ``(N, 1, 8, 8)``.

None of them uses batch normalisation: it couples the samples of a batch, which breaks per-sample
gradient penalties (:func:`gdmlib.gan.gradient_penalty`) and makes a critic's score of one sample
depend on the others. Every block can wrap its weights in spectral normalisation
(Miyato et al. 2018), which divides each weight matrix by an estimate of its largest singular value.

Activations are named by a string (``"relu"``, ``"leaky_relu"`` with slope 0.2 as in DCGAN,
``"elu"``, ``"tanh"``), by an ``nn.Module`` class such as ``nn.ReLU``, or by any callable that
returns a fresh module.

References:
    Radford, Metz, Chintala. Unsupervised representation learning with deep convolutional generative
    adversarial networks (DCGAN). ICLR 2016.

    Miyato, Kataoka, Koyama, Yoshida. Spectral normalization for generative adversarial networks.
    ICLR 2018.

Example:
    >>> import torch
    >>> from gdmlib.nets import MLP, ConvDecoder8, ConvEncoder8
    >>> _ = torch.manual_seed(0)
    >>> MLP(2, 1, hidden=(32, 32), activation="leaky_relu")(torch.randn(5, 2)).shape
    torch.Size([5, 1])
    >>> encoder, decoder = ConvEncoder8(16), ConvDecoder8(16)
    >>> decoder(encoder(torch.rand(3, 1, 8, 8))).shape
    torch.Size([3, 1, 8, 8])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from gdmlib._checks import check_positive_int as _check_positive_int

__all__ = ["Activation", "BatchedMLP", "ConvDecoder8", "ConvEncoder8", "MLP", "make_activation"]

Activation = str | type | Callable[[], nn.Module] | nn.Module

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def make_activation(activation: Activation) -> nn.Module:
    """A fresh activation module.

    Args:
        activation: ``"relu"``, ``"leaky_relu"`` (negative slope 0.2), ``"elu"``, ``"tanh"``; an
            ``nn.Module`` class (``nn.SiLU``); a callable returning a module; or a module instance,
            which is deep-copied so that layers never share state.

    Raises:
        ValueError: If the name is unknown.
        TypeError: If ``activation`` is none of the above or does not produce an ``nn.Module``.
    """
    if isinstance(activation, str):
        key = activation.strip().lower()
        if key not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}: expected one of {sorted(_ACTIVATIONS)}"
            )
        return _ACTIVATIONS[key]()
    if isinstance(activation, nn.Module):
        return copy.deepcopy(activation)
    if callable(activation):
        module = activation()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"activation factory must return an nn.Module, got {type(module).__name__}"
            )
        return module
    raise TypeError(
        "activation must be a name, an nn.Module class or a callable returning an nn.Module, "
        f"got {type(activation).__name__}"
    )


def _check_input(module: nn.Module, name: str, x: object) -> torch.Tensor:
    """``x`` if it is a tensor whose dtype and device are those of ``module``'s first parameter.

    Autocast is left alone: it casts the inputs of every layer itself.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{type(module).__name__} expects a torch.Tensor for {name}, got {type(x).__name__}"
        )
    parameter = next(module.parameters())
    if x.device != parameter.device:
        raise ValueError(
            f"{name} is on {x.device} but the {type(module).__name__} on {parameter.device}; "
            f"move one of them (x.to({str(parameter.device)!r}) or module.to({str(x.device)!r}))"
        )
    if x.dtype != parameter.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{name} has dtype {x.dtype} but the {type(module).__name__}'s parameters "
            f"{parameter.dtype}; "
            f"convert one of them (x.to({parameter.dtype}) or module.to({x.dtype}))"
        )
    return x


def _normed(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer


class MLP(nn.Module):
    r"""A fully connected network with a linear output layer.

    .. math::
        f(x) = W_L\,\sigma\bigl(W_{L-1}\cdots\sigma(W_1 x + b_1)\cdots + b_{L-1}\bigr) + b_L,

    with one hidden layer per entry of ``hidden``. The input may have any leading batch dimensions;
    only the last one must equal ``in_features``.

    Args:
        in_features: Size of the input's last dimension.
        out_features: Size of the output's last dimension.
        hidden: Widths of the hidden layers; ``()`` gives an affine map.
        activation: The nonlinearity :math:`\sigma` (see :func:`make_activation`).
        spectral_norm: Wrap every linear layer in spectral normalisation (Miyato et al. 2018), a
            common way to keep a critic close to 1-Lipschitz.

    Raises:
        TypeError, ValueError: On non-integer or non-positive sizes, or an unknown activation.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> net = MLP(3, 2, hidden=(8,))
        >>> net(torch.randn(4, 3)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([4, 2]), 50)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.out_features = _check_positive_int("out_features", out_features)
        if isinstance(hidden, int) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of widths such as (64, 64), got {hidden!r}")
        self.hidden = tuple(_check_positive_int("every hidden width", width) for width in hidden)
        widths = (self.in_features, *self.hidden, self.out_features)
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(_normed(nn.Linear(width_in, width_out), spectral_norm))
            if index < len(widths) - 2:
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to ``x`` of shape ``(..., in_features)``, in the network's dtype and
        device."""
        _check_input(self, "x", x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"MLP expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        return self.net(x)


class ConvEncoder8(nn.Module):
    r"""A small convolutional encoder for 8×8 single-channel images.

    ``(N, 1, 8, 8)`` → 3×3 conv to ``channels`` maps at 8×8 → 4×4 stride-2 conv to ``2·channels``
    at 4×4 → 4×4 stride-2 conv to ``2·channels`` at 2×2 → linear to ``out_features``, with the
    activation after every convolution. Flattened inputs ``(N, 64)`` are accepted as well. Used as
    a VAE encoder (``out_features = 2·latent``) or as a critic (``out_features = 1``).

    Args:
        out_features: Size of the output.
        channels: Width of the first convolution (the later ones use twice as many).
        activation: Nonlinearity; LeakyReLU(0.2) by default, as in DCGAN's discriminator.
        spectral_norm: Spectrally normalise every layer. For convolutions this normalises the
            reshaped ``(out, in·k·k)`` weight matrix, which bounds the layer's Lipschitz constant
            only up to a factor that depends on the kernel size.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> ConvEncoder8(1, channels=8)(torch.rand(2, 64)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        out_features: int,
        channels: int = 32,
        activation: Activation = "leaky_relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.out_features = _check_positive_int("out_features", out_features)
        self.channels = _check_positive_int("channels", channels)
        c = self.channels
        self.net = nn.Sequential(
            _normed(nn.Conv2d(1, c, 3, padding=1), spectral_norm),
            make_activation(activation),
            _normed(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), spectral_norm),
            make_activation(activation),
            _normed(nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1), spectral_norm),
            make_activation(activation),
            nn.Flatten(),
            _normed(nn.Linear(2 * c * 2 * 2, self.out_features), spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images of shape ``(N, 1, 8, 8)`` (or ``(N, 64)``) to ``(N, out_features)``."""
        _check_input(self, "x", x)
        if x.ndim == 2 and x.shape[1] == 64:
            x = x.reshape(-1, 1, 8, 8)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(
                "ConvEncoder8 expects images of shape (N, 1, 8, 8) or (N, 64), "
                f"got {tuple(x.shape)}"
            )
        return self.net(x)


class ConvDecoder8(nn.Module):
    r"""A small convolutional decoder to 8×8 single-channel images, returning logits.

    ``(N, in_features)`` → linear to ``2·channels`` maps at 2×2 → 4×4 stride-2 transposed conv
    (2·channels, 4×4) → 4×4 stride-2 transposed conv (channels, 8×8) → 3×3 conv to one channel.
    The output is unconstrained: pixel probabilities are ``torch.sigmoid(logits)``, and a Bernoulli
    likelihood is ``-F.binary_cross_entropy_with_logits(logits, x, reduction="none")``.

    Args:
        in_features: Size of the input (the latent dimension).
        channels: Width of the last hidden layer (the earlier ones use twice as many).
        activation: Nonlinearity; ReLU by default, as in DCGAN's generator.
        spectral_norm: Spectrally normalise every layer (rarely wanted in a decoder).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> ConvDecoder8(4, channels=8)(torch.randn(2, 4)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        in_features: int,
        channels: int = 32,
        activation: Activation = "relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = _check_positive_int("in_features", in_features)
        self.channels = _check_positive_int("channels", channels)
        c = self.channels
        self.net = nn.Sequential(
            _normed(nn.Linear(self.in_features, 2 * c * 2 * 2), spectral_norm),
            make_activation(activation),
            nn.Unflatten(1, (2 * c, 2, 2)),
            _normed(nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, padding=1), spectral_norm),
            make_activation(activation),
            _normed(nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), spectral_norm),
            make_activation(activation),
            _normed(nn.Conv2d(c, 1, 3, padding=1), spectral_norm),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode ``z`` of shape ``(N, in_features)`` to logits of shape ``(N, 1, 8, 8)``."""
        _check_input(self, "z", z)
        if z.ndim != 2 or z.shape[1] != self.in_features:
            raise ValueError(
                f"ConvDecoder8 expects inputs of shape (N, {self.in_features}), "
                f"got {tuple(z.shape)}"
            )
        return self.net(z)


class BatchedMLP(nn.Module):
    r"""Several independent MLPs ("members") evaluated together by batched matrix products.

    Member :math:`k` computes
    :math:`f_k(x) = W_{k,L}\,\sigma(\cdots\sigma(W_{k,1} x + b_{k,1})\cdots) + b_{k,L}` and the
    input of shape ``(members, N, in_features)`` gives ``(members, N, out_features)``: row :math:`k`
    goes through member :math:`k` only. Each member is initialised like ``nn.Linear`` (weights and
    biases uniform on :math:`\pm 1/\sqrt{\text{fan-in}}`), independently of the others.

    Its use is to train several seeds of a small model at the cost of about one on a CPU, where
    small layers are dominated by per-call overheads: the members share no parameter, the book's
    losses average over all of them, which scales member :math:`k`'s gradient by
    :math:`1/\text{members}`, and Adam is invariant to that scale up to its
    :math:`\varepsilon`, so training a ``BatchedMLP`` with Adam trains each member on its own.
    Each member sees its own slice of every batch, so the runs are independent.

    Args:
        members: The number of independent networks.
        in_features: Size of the input's last dimension.
        out_features: Size of the output's last dimension.
        hidden: Widths of the hidden layers (the same for every member).
        activation: The nonlinearity (see :func:`gdmlib.nets.make_activation`).

    Raises:
        TypeError, ValueError: On non-integer or non-positive sizes, or an unknown activation.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> batched = BatchedMLP(3, 2, 1, hidden=(16,))
        >>> x = torch.randn(3, 5, 2)
        >>> batched(x).shape
        torch.Size([3, 5, 1])
        >>> # row k goes through member k alone
        >>> torch.allclose(batched(x)[1], batched.member(1)(x[1]))
        True
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.members = _check_positive_int("members", members)
        self.in_features = _check_positive_int("in_features", in_features)
        self.out_features = _check_positive_int("out_features", out_features)
        if isinstance(hidden, int) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of widths such as (64, 64), got {hidden!r}")
        self.hidden = tuple(_check_positive_int("every hidden width", width) for width in hidden)
        self.activation = activation
        widths = (self.in_features, *self.hidden, self.out_features)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(width_in)
            self.weights.append(
                nn.Parameter(torch.empty(members, width_in, width_out).uniform_(-bound, bound))
            )
            self.biases.append(
                nn.Parameter(torch.empty(members, 1, width_out).uniform_(-bound, bound))
            )
        self.activations = nn.ModuleList(make_activation(activation) for _ in self.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply member :math:`k` to ``x[k]``, for ``x`` of shape ``(members, N, in_features)``."""
        _check_input(self, "x", x)
        if x.ndim != 3 or x.shape[0] != self.members or x.shape[-1] != self.in_features:
            raise ValueError(
                f"BatchedMLP expects inputs of shape ({self.members}, N, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.activations):
                x = self.activations[index](x)
        return x

    @torch.no_grad()
    def member(self, index: int) -> MLP:
        """A standalone :class:`gdmlib.nets.MLP` holding a copy of member ``index``'s weights."""
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not -self.members <= index < self.members
        ):
            raise IndexError(f"member index must be an int in [0, {self.members}), got {index!r}")
        single = MLP(
            self.in_features, self.out_features, hidden=self.hidden, activation=self.activation
        )
        linears = [layer for layer in single.net if isinstance(layer, nn.Linear)]
        for linear, weight, bias in zip(linears, self.weights, self.biases, strict=True):
            linear.weight.copy_(weight[index].T)
            linear.bias.copy_(bias[index, 0])
        return single.to(self.weights[0].device, self.weights[0].dtype)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, in_features={self.in_features}, "
            f"out_features={self.out_features}, hidden={self.hidden}"
        )
