r"""Metrics: sample quality (mode coverage) and disentanglement.

A package of one concept per module, re-exported here (``gdmlib.metrics.X`` works for every public
name): :mod:`~gdmlib.metrics.coverage` (mode coverage of mixtures of Gaussians, chapters 4 and 8)
and :mod:`~gdmlib.metrics.disentanglement` (β-VAE and FactorVAE scores, MIG, SAP, DCI, modularity,
chapter 13).
"""

from __future__ import annotations

from gdmlib.metrics.coverage import ModeCoverage, mode_coverage
from gdmlib.metrics.disentanglement import (
    DCI,
    beta_vae_score,
    dci,
    discretize,
    factor_vae_score,
    gaussian_total_correlation,
    mig,
    modularity,
    mutual_info_matrix,
    sap,
)

__all__ = [
    "DCI",
    "ModeCoverage",
    "beta_vae_score",
    "dci",
    "discretize",
    "factor_vae_score",
    "gaussian_total_correlation",
    "mig",
    "mode_coverage",
    "modularity",
    "mutual_info_matrix",
    "sap",
]
