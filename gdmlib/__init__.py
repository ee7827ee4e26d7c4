"""gdmlib: the tested helper library behind *Deep Generative Models: executable lecture notes*.

One module per concept (see the README's module table). Submodules are imported here so that
``import gdmlib`` is enough in a chapter's setup cell.
"""

from importlib.metadata import PackageNotFoundError, version

from gdmlib import (
    critics,
    data,
    dequantization,
    discrete,
    disentangle,
    divergences,
    estimate,
    flows,
    gan,
    likelihood,
    lipschitz,
    metrics,
    nets,
    ot,
    plot,
    runtime,
    toy,
    training,
    two_sample,
    vae,
)

try:
    __version__ = version("gdmlib")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "critics",
    "data",
    "dequantization",
    "discrete",
    "disentangle",
    "divergences",
    "estimate",
    "flows",
    "gan",
    "likelihood",
    "lipschitz",
    "metrics",
    "nets",
    "ot",
    "plot",
    "runtime",
    "toy",
    "training",
    "two_sample",
    "vae",
    "__version__",
]
