r"""Disentanglement metrics: β-VAE and FactorVAE scores, MIG, SAP, DCI and modularity.

Each metric compares a **representation** :math:`r(x) \in \mathbb{R}^J` (``codes``, one row per data
point) with the **ground-truth factors** :math:`v \in \mathbb{N}^K` that generated the data
(``factors``, integer indices). The definitions are those of ``disentanglement_lib`` (Locatello et
al. 2019), the reference implementation of the large study, so that numbers can be compared with it:

- :func:`discretize` puts every code into 20 equal-width bins between its sample minimum and
  maximum (``np.digitize(z, np.histogram(z, 20)[1][:-1])``, labels 1..20);
  :func:`mutual_info_matrix` is then the plug-in mutual information
  :math:`m_{jk} = \hat I(\mathrm{bin}(z_j); v_k)` in nats (the value of
  ``sklearn.metrics.mutual_info_score``), and :math:`H(v_k) = \hat I(v_k; v_k)`;
- :func:`mig` (Chen et al. 2018, dlib's variant): :math:`\frac1K \sum_k
  (m_{(1)k} - m_{(2)k}) / H(v_k)`, the gap between the two codes most informative about each factor;
- :func:`modularity` (Ridgeway & Mozer 2018): :math:`\frac1J \sum_j \bigl(1 - \frac{\sum_k m_{jk}^2
  - \max_k m_{jk}^2}{(K - 1) \max_k m_{jk}^2}\bigr)`;
- :func:`sap` (Kumar et al. 2018): the mean over factors of the gap between the two best codes of a
  score matrix, :math:`R^2` of each (code, factor) pair (``continuous=True``) or the accuracy of a
  linear SVM predicting the factor from one code (``continuous=False``, the study's setting);
- :func:`dci` (Eastwood & Williams 2018): an importance matrix :math:`R_{jk} \ge 0` of code
  :math:`j` for factor :math:`k`, from gradient-boosted trees (``importance="gbt"``, dlib's) or from
  least squares (``importance="linear"``: :math:`R = |B|`, :math:`B` the least-squares coefficients
  of the standardised factors on the standardised codes, deterministic and fast); then
  disentanglement :math:`D = \sum_j \rho_j (1 - H_K(R_{j\cdot}))`, completeness
  :math:`C = \sum_k \tilde\rho_k (1 - H_J(R_{\cdot k}))` (entropies of the normalised rows and
  columns in bases :math:`K` and :math:`J`, weights :math:`\rho_j, \tilde\rho_k` the shares of
  :math:`\sum R`) and informativeness (test accuracy of the trees, or :math:`R^2` of the linear
  fit);
- :func:`beta_vae_score` (Higgins et al. 2017) and :func:`factor_vae_score` (Kim & Mnih 2018) are
  accuracies of classifiers that must guess which factor was held fixed in a batch of 64 points,
  from the mean absolute code differences (a logistic regression) or from the code of least
  normalised variance (a majority vote; codes with standard deviation below 0.05 are pruned first);
- :func:`gaussian_total_correlation` is the unsupervised score
  :math:`\frac12 (\sum_j \log \Sigma_{jj} - \log\det\Sigma)` of the codes' covariance.

The β-VAE and FactorVAE scores need to *generate* data with chosen factors. On a full factorial
grid (the sprites of :func:`gdmlib.data.sprites`) that is an index lookup, so both accept a **code
table**, the codes of every grid point (one encoder pass), as well as a callable mapping a batch of
factors to codes.

Inputs may be NumPy arrays or tensors on any device (they are copied to the CPU in float64);
results are Python floats. Used in chapter 13.

Example:
    >>> import torch
    >>> factors = torch.cartesian_prod(torch.arange(4), torch.arange(5))  # a 4 x 5 grid
    >>> codes = factors.double()  # the oracle code
    >>> round(mig(codes, factors), 6), round(sap(codes, factors), 6), modularity(codes, factors)
    (1.0, 1.0, 1.0)
    >>> result = dci(codes, factors)
    >>> round(result.disentanglement, 6), round(result.completeness, 6)
    (1.0, 1.0)
    >>> beta_vae_score(codes, factors, num_train=500, num_eval=200), factor_vae_score(
    ...     codes, factors, num_train=200, num_eval=100)
    (1.0, 1.0)

References:
    Locatello, Bauer, Lucic, Rätsch, Gelly, Schölkopf & Bachem (2019). Challenging common
    assumptions in the unsupervised learning of disentangled representations. ICML
    (``disentanglement_lib``: ``evaluation/metrics/{beta_vae, factor_vae, mig, sap_score, dci,
    modularity_explicitness, unsupervised_metrics, utils}.py``).

    Higgins et al. (2017). β-VAE: learning basic visual concepts with a constrained variational
    framework. ICLR.

    Kim & Mnih (2018). Disentangling by factorising. ICML.

    Chen, Li, Grosse & Duvenaud (2018). Isolating sources of disentanglement in variational
    autoencoders. NeurIPS.

    Kumar, Sattigeri & Balakrishnan (2018). Variational inference of disentangled latent concepts
    from unlabeled observations. ICLR.

    Eastwood & Williams (2018). A framework for the quantitative evaluation of disentangled
    representations. ICLR.

    Ridgeway & Mozer (2018). Learning deep disentangled embeddings with the F-statistic loss.
    NeurIPS.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from gdmlib._checks import check_positive_int, check_positive_number

__all__ = [
    "DCI",
    "beta_vae_score",
    "dci",
    "discretize",
    "factor_vae_score",
    "gaussian_total_correlation",
    "mig",
    "modularity",
    "mutual_info_matrix",
    "sap",
]

# The study's settings (disentanglement_lib ``unsupervised_study_v1`` gin files).
_NUM_BINS = 20
_PRUNE_THRESHOLD = 0.05
_BATCH_SIZE = 64

Representation = Callable[[Tensor], object]


# --------------------------------------------------------------------------------------------------
# Input checks


def _as_array(name: str, value: object) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a NumPy array or a torch.Tensor, got {type(value).__name__}")


def _check_codes(codes: object, name: str = "codes", min_codes: int = 1) -> np.ndarray:
    array = _as_array(name, codes)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype, got {array.dtype}")
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < min_codes:
        raise ValueError(
            f"{name} must have shape (N, J) with N >= 2 points and J >= {min_codes} codes, got "
            f"{array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return array.astype(np.float64)


def _check_factors(
    factors: object, rows: int | None = None, name: str = "factors", min_factors: int = 1
) -> np.ndarray:
    array = _as_array(name, factors)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must be integer factor indices (an integer dtype), got {array.dtype}; "
            "discretise continuous factors first"
        )
    if array.ndim != 2 or array.shape[1] < min_factors:
        raise ValueError(
            f"{name} must have shape (N, K) with K >= {min_factors} factors, got {array.shape}"
        )
    if rows is not None and array.shape[0] != rows:
        raise ValueError(
            f"codes and {name} must have the same number of rows, got {rows} and {array.shape[0]}"
        )
    if (array < 0).any():
        raise ValueError(f"{name} must be non-negative indices, got a minimum {array.min()}")
    constant = [k for k in range(array.shape[1]) if np.all(array[:, k] == array[0, k])]
    if constant:
        raise ValueError(
            f"every factor must take at least two values; factor(s) {constant} are constant"
        )
    return array.astype(np.int64)


def _check_pair(
    codes: object, factors: object, *, min_codes: int = 1, min_factors: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    z = _check_codes(codes, min_codes=min_codes)
    return z, _check_factors(factors, z.shape[0], min_factors=min_factors)


def _check_num_bins(num_bins: object) -> int:
    return check_positive_int("num_bins", num_bins, minimum=2)


def _check_rng(rng: object) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or a non-negative int, got {rng!r}")


def _optional_test(
    test_codes: object, test_factors: object, codes: np.ndarray, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if (test_codes is None) != (test_factors is None):
        raise ValueError("give both test_codes and test_factors, or neither")
    if test_codes is None:
        return codes, factors
    z = _check_codes(test_codes, "test_codes")
    if z.shape[1] != codes.shape[1]:
        raise ValueError(
            f"test_codes must have {codes.shape[1]} codes like codes, got {z.shape[1]}"
        )
    array = _as_array("test_factors", test_factors)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"test_factors must have an integer dtype, got {array.dtype}")
    if array.shape != (z.shape[0], factors.shape[1]):
        raise ValueError(
            f"test_factors must have shape ({z.shape[0]}, {factors.shape[1]}), got {array.shape}"
        )
    return z, array.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Binned mutual information


def discretize(codes: object, num_bins: int = _NUM_BINS) -> np.ndarray:
    r"""Bin every code into ``num_bins`` equal-width bins between its minimum and maximum.

    dlib's ``_histogram_discretize``: column :math:`j` becomes
    ``np.digitize(z_j, np.histogram(z_j, num_bins)[1][:-1])``, integer labels in
    ``1..num_bins`` (the maximum falls in the last bin).

    Args:
        codes: Shape ``(N, J)``, floating, finite.
        num_bins: At least 2.

    Returns:
        Integer labels, shape ``(N, J)``, dtype ``int64``.

    Raises:
        TypeError: If ``codes`` is not a floating array or tensor.
        ValueError: On a bad shape, non-finite values or ``num_bins < 2``.

    Example:
        >>> discretize(np.array([[0.1], [0.2], [0.3], [0.4], [0.5], [0.6]]), num_bins=3).ravel()
        array([1, 1, 2, 2, 3, 3])
    """
    z = _check_codes(codes)
    num_bins = _check_num_bins(num_bins)
    labels = np.empty(z.shape, dtype=np.int64)
    for j in range(z.shape[1]):
        labels[:, j] = np.digitize(z[:, j], np.histogram(z[:, j], num_bins)[1][:-1])
    return labels


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two integer label vectors (sklearn's value)."""
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    table = np.zeros((a_index.max() + 1, b_index.max() + 1))
    np.add.at(table, (a_index, b_index), 1.0)
    joint = table / a.shape[0]
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    inside = joint > 0
    return max(0.0, float((joint[inside] * np.log(joint[inside] / outer[inside])).sum()))


def _mi_matrix(labels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [_mutual_info(labels[:, j], factors[:, k]) for k in range(factors.shape[1])]
            for j in range(labels.shape[1])
        ]
    )


def _entropies(factors: np.ndarray) -> np.ndarray:
    return np.array([_mutual_info(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def mutual_info_matrix(codes: object, factors: object, num_bins: int = _NUM_BINS) -> np.ndarray:
    r"""The plug-in mutual information :math:`m_{jk} = \hat I(\mathrm{bin}(z_j); v_k)` in nats.

    Codes are binned by :func:`discretize`; the value is that of
    ``sklearn.metrics.mutual_info_score`` on the integer labels (never on floats, which sklearn
    would treat as as many classes as distinct values).

    Args:
        codes: Shape ``(N, J)``, floating.
        factors: Shape ``(N, K)``, integer indices, each factor taking at least two values.
        num_bins: Bins per code (20 in dlib).

    Returns:
        Shape ``(J, K)``, float64.

    Example:
        >>> v = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T
        >>> z = np.array([[1, 2, 1, 2], [1, 1, 2, 2]], dtype=float).T
        >>> np.round(mutual_info_matrix(z, v, num_bins=2) / math.log(2), 6)  # dlib's utils_test
        array([[1., 0.],
               [0., 1.]])
    """
    z, v = _check_pair(codes, factors)
    return _mi_matrix(discretize(z, num_bins), v)


# --------------------------------------------------------------------------------------------------
# MIG, modularity, SAP


def mig(codes: object, factors: object, num_bins: int = _NUM_BINS) -> float:
    r"""Mutual information gap (dlib's ``_compute_mig``).

    .. math::
        \mathrm{MIG} = \frac1K \sum_{k=1}^K \frac{m_{(1)k} - m_{(2)k}}{H(v_k)},

    :math:`m_{(1)k} \ge m_{(2)k}` the two largest entries of column :math:`k` of
    :func:`mutual_info_matrix`. 1 when each factor is read by exactly one code with no loss; 0 when
    two codes carry the same information (a duplicated code).

    Args:
        codes: Shape ``(N, J)``, floating, :math:`J \ge 2`.
        factors: Shape ``(N, K)``, integer indices.
        num_bins: Bins per code.

    Returns:
        MIG, in :math:`[0, 1]`.

    Raises:
        TypeError, ValueError: On bad inputs (see :func:`mutual_info_matrix`), or fewer than two
            codes.

    Example:
        >>> v = np.repeat(np.arange(4), 3)[:, None]
        >>> z = np.stack([v[:, 0], np.tile(np.arange(3), 4)], 1).astype(float)  # code 2 is noise
        >>> round(mig(z, v), 6)
        1.0
    """
    z, v = _check_pair(codes, factors, min_codes=2)
    m = _mi_matrix(discretize(z, _check_num_bins(num_bins)), v)
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / _entropies(v)))


def modularity(codes: object, factors: object, num_bins: int = _NUM_BINS) -> float:
    r"""Modularity (Ridgeway & Mozer 2018, dlib's ``modularity``): does each code depend on one
    factor only?

    With :math:`m` the binned mutual information (:func:`mutual_info_matrix`) and
    :math:`\theta_j = \max_k m_{jk}`,

    .. math::
        \mathrm{modularity} = \frac1J \sum_j \Bigl(1 - \frac{\sum_k m_{jk}^2 - \theta_j^2}
        {\theta_j^2 (K - 1)}\Bigr),

    a code with :math:`\theta_j = 0` (informative about nothing) counting 0.

    Args:
        codes: Shape ``(N, J)``, floating.
        factors: Shape ``(N, K)``, integer indices, :math:`K \ge 2`.
        num_bins: Bins per code.

    Returns:
        Modularity, in :math:`[0, 1]`.

    Example:
        >>> v = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
        >>> round(modularity(v.astype(float), v), 6)
        1.0
    """
    z, v = _check_pair(codes, factors, min_factors=2)
    squared = _mi_matrix(discretize(z, _check_num_bins(num_bins)), v) ** 2
    largest = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - largest) / (largest * (v.shape[1] - 1))
    score = np.where(largest == 0, 0.0, 1.0 - delta)
    return float(score.mean())


def sap(
    codes: object,
    factors: object,
    continuous: bool = True,
    *,
    test_codes: object = None,
    test_factors: object = None,
) -> float:
    r"""Separated attribute predictability (Kumar et al. 2018; dlib's ``sap_score``).

    A score matrix :math:`S` (codes × factors) and the mean gap between the two best codes of each
    factor, :math:`\frac1K \sum_k (S_{(1)k} - S_{(2)k})`, where

    - ``continuous=True``: :math:`S_{jk} = \mathrm{Cov}(z_j, v_k)^2 / (\mathrm{Var}\,z_j\,
      \mathrm{Var}\,v_k)`, the :math:`R^2` of a linear fit (0 for a code of variance
      :math:`\le 10^{-12}`); invariant to affine maps of single codes;
    - ``continuous=False`` (the study's setting): :math:`S_{jk}` is the accuracy, on the test set,
      of ``LinearSVC(C=0.01, class_weight="balanced")`` predicting :math:`v_k` from :math:`z_j`
      alone, trained on ``(codes, factors)``.

    Args:
        codes: Shape ``(N, J)``, floating, :math:`J \ge 2`.
        factors: Shape ``(N, K)``, integer indices.
        continuous: Which score matrix.
        test_codes, test_factors: Held-out points for ``continuous=False`` (the training points
            when not given); the continuous score uses them too when given.

    Returns:
        SAP, in :math:`[0, 1]`.

    Example:
        >>> v = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
        >>> c, s = math.cos(0.3), math.sin(0.3)
        >>> z = (v - v.mean(0)) / v.std(0) @ np.array([[c, s], [-s, c]])  # a rotation by 0.3
        >>> round(sap(z, v), 6) == round(abs(math.cos(0.6)), 6)  # SAP = |cos 2 theta|
        True
    """
    z, v = _check_pair(codes, factors, min_codes=2)
    if not isinstance(continuous, bool):
        raise TypeError(f"continuous must be True or False, got {type(continuous).__name__}")
    z_test, v_test = _optional_test(test_codes, test_factors, z, v)
    num_codes, num_factors = z.shape[1], v.shape[1]
    score = np.zeros((num_codes, num_factors))
    if continuous:
        for j in range(num_codes):
            for k in range(num_factors):
                cov = np.cov(z_test[:, j], v_test[:, k], ddof=1)
                if cov[0, 0] > 1e-12 and cov[1, 1] > 0:
                    score[j, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    else:
        from sklearn.svm import LinearSVC  # lazy: scikit-learn is slow to import

        for j in range(num_codes):
            for k in range(num_factors):
                classifier = LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(z[:, j : j + 1], v[:, k])
                score[j, k] = np.mean(classifier.predict(z_test[:, j : j + 1]) == v_test[:, k])
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


# --------------------------------------------------------------------------------------------------
# DCI


class DCI(NamedTuple):
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018)."""

    disentanglement: float
    completeness: float
    informativeness: float


def _entropy_normalised(weights: np.ndarray, base: int) -> np.ndarray:
    """scipy.stats.entropy(weights + 1e-11, base=base) along axis 0 (dlib's convention)."""
    p = weights + 1e-11
    p = p / p.sum(axis=0, keepdims=True)
    return -(p * np.log(p)).sum(axis=0) / math.log(base)


def _dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    num_codes, num_factors = importance.shape
    per_code = 1.0 - _entropy_normalised(importance.T, num_factors)
    per_factor = 1.0 - _entropy_normalised(importance, num_codes)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    d = float(np.sum(per_code * weights.sum(axis=1) / weights.sum()))
    c = float(np.sum(per_factor * weights.sum(axis=0) / weights.sum()))
    return d, c


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return np.where(std > 0, (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)


def dci(
    codes: object,
    factors: object,
    importance: Literal["linear", "gbt"] = "linear",
    *,
    test_codes: object = None,
    test_factors: object = None,
    rng: np.random.Generator | int = 0,
) -> DCI:
    r"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018).

    From an importance matrix :math:`R \in \mathbb{R}_{\ge 0}^{J \times K}` (code :math:`j` for
    factor :math:`k`), with :math:`P_{jk} = R_{jk} / \sum_{k'} R_{jk'}`,
    :math:`\tilde P_{jk} = R_{jk} / \sum_{j'} R_{j'k}` (after adding :math:`10^{-11}`),

    .. math::
        D = \sum_j \frac{\sum_k R_{jk}}{\sum R}\bigl(1 - H_K(P_{j\cdot})\bigr), \qquad
        C = \sum_k \frac{\sum_j R_{jk}}{\sum R}\bigl(1 - H_J(\tilde P_{\cdot k})\bigr),

    entropies in bases :math:`K` and :math:`J` (dlib's ``dci.py``; uniform weights when
    :math:`R = 0`). The importances:

    - ``"gbt"`` (dlib): ``GradientBoostingClassifier()`` per factor (100 trees of depth 3) on the
      training codes, :math:`R_{\cdot k}` its feature importances; informativeness is the mean test
      accuracy. Invariant to any strictly monotone map of single codes (trees).
    - ``"linear"`` (deterministic, fast): :math:`R = |B|` with :math:`B` the minimum-norm
      least-squares solution of :math:`\tilde V \approx \tilde Z B`, :math:`\tilde Z, \tilde V`
      the standardised codes and factors; informativeness is the mean :math:`R^2` of these fits on
      the test set. Invariant to affine maps of single codes; for two equal-variance factors
      rotated by :math:`\theta`, :math:`D = C = 1 - h_2(|\cos\theta| / (|\cos\theta| +
      |\sin\theta|))` (binary entropy in bits).

    Args:
        codes: Shape ``(N, J)``, floating, :math:`J \ge 2`.
        factors: Shape ``(N, K)``, integer indices, :math:`K \ge 2`.
        importance: ``"linear"`` or ``"gbt"``.
        test_codes, test_factors: Held-out points for the informativeness (the training points
            when not given).
        rng: Seed or generator of the trees' ``random_state`` (unused by ``"linear"``).

    Returns:
        A :class:`DCI` named tuple of floats.

    Example:
        >>> v = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
        >>> z = np.concatenate([v, v], axis=1).astype(float)  # every code duplicated
        >>> result = dci(z, v)
        >>> round(result.disentanglement, 6), round(result.completeness, 6)  # 1 - log 2 / log 4
        (1.0, 0.5)
    """
    z, v = _check_pair(codes, factors, min_codes=2, min_factors=2)
    z_test, v_test = _optional_test(test_codes, test_factors, z, v)
    if importance == "linear":
        zs, vs = _standardise(z), _standardise(v.astype(np.float64))
        coefficients = np.linalg.lstsq(zs, vs, rcond=None)[0]
        matrix = np.abs(coefficients)
        mean, std = z.mean(axis=0), z.std(axis=0)
        zt = np.where(std > 0, (z_test - mean) / np.where(std > 0, std, 1.0), 0.0)
        vt = (v_test - v.mean(axis=0)) / v.std(axis=0)
        residual = ((vt - zt @ coefficients) ** 2).sum(axis=0)
        total = ((vt - vt.mean(axis=0)) ** 2).sum(axis=0)
        informativeness = float(np.mean(1.0 - residual / np.where(total > 0, total, 1.0)))
    elif importance == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier  # lazy: slow to import

        seed = int(_check_rng(rng).integers(2**31 - 1))
        matrix = np.zeros((z.shape[1], v.shape[1]))
        accuracies = []
        for k in range(v.shape[1]):
            model = GradientBoostingClassifier(random_state=seed)
            model.fit(z, v[:, k])
            matrix[:, k] = np.abs(model.feature_importances_)
            accuracies.append(np.mean(model.predict(z_test) == v_test[:, k]))
        informativeness = float(np.mean(accuracies))
    else:
        raise ValueError(f'importance must be "linear" or "gbt", got {importance!r}')
    d, c = _dci_from_importance(matrix)
    return DCI(d, c, informativeness)


# --------------------------------------------------------------------------------------------------
# Scores that generate batches with a fixed factor: beta-VAE and FactorVAE


class _Grid:
    """Codes of a full factorial grid, looked up by factor values (or computed by a callable)."""

    def __init__(self, codes: object, factors: object, sizes: object) -> None:
        if callable(codes) and not isinstance(codes, (np.ndarray, Tensor)):
            if factors is not None:
                raise ValueError("with a callable representation, give sizes=..., not factors")
            if not isinstance(sizes, (tuple, list)) or not sizes:
                raise TypeError(
                    f"a callable representation needs sizes, a tuple of factor sizes, got {sizes!r}"
                )
            self.sizes = tuple(check_positive_int("every entry of sizes", s, 2) for s in sizes)
            self.function: Callable[[Tensor], object] | None = codes
            self.table: np.ndarray | None = None
            return
        if sizes is not None:
            raise ValueError("sizes is only for a callable representation; give factors instead")
        if factors is None:
            raise ValueError("a code table needs its factors, shape (N, K)")
        z, v = _check_pair(codes, factors)
        self.sizes = tuple(int(s) for s in v.max(axis=0) + 1)
        if math.prod(self.sizes) != z.shape[0]:
            raise ValueError(
                f"factors must be a full factorial grid: sizes {self.sizes} have "
                f"{math.prod(self.sizes)} combinations, got {z.shape[0]} rows"
            )
        index = np.ravel_multi_index(tuple(v.T), self.sizes)
        if np.unique(index).shape[0] != z.shape[0]:
            raise ValueError("factors must be a full factorial grid: some rows repeat")
        self.table = np.empty_like(z)
        self.table[index] = z
        self.function = None

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, self.sizes, size=(*shape, len(self.sizes)))

    def codes(self, factors: np.ndarray) -> np.ndarray:
        flat = factors.reshape(-1, factors.shape[-1])
        if self.table is not None:
            out = self.table[np.ravel_multi_index(tuple(flat.T), self.sizes)]
        else:
            out = _check_codes(
                _as_array("representation(...)", self.function(torch.from_numpy(flat))),
                "representation(...)",
            )
            if out.shape[0] != flat.shape[0]:
                raise ValueError(
                    f"representation returned {out.shape[0]} rows for {flat.shape[0]} points"
                )
        return out.reshape(*factors.shape[:-1], -1)


def _fixed_factor_batches(
    grid: _Grid, rng: np.random.Generator, count: int, batch_size: int, chunk: int = 500
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``count`` factor indices k and batches of ``batch_size`` points sharing factor k."""
    num_factors = len(grid.sizes)
    labels = rng.integers(num_factors, size=count)
    batches = []
    for start in range(0, count, chunk):
        k = labels[start : start + chunk]
        factors = grid.sample(rng, (k.shape[0], batch_size))
        rows = np.arange(k.shape[0])
        factors[rows, :, k] = factors[rows, :1, k]
        batches.append(factors)
    return labels, batches


def beta_vae_score(
    codes: object,
    factors: object = None,
    *,
    sizes: tuple[int, ...] | None = None,
    batch_size: int = _BATCH_SIZE,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    rng: np.random.Generator | int = 0,
) -> float:
    r"""The β-VAE disentanglement score (Higgins et al. 2017; dlib's ``beta_vae.py``).

    Each example: draw a factor :math:`k` uniformly, two batches of ``batch_size`` factor vectors
    that agree on factor :math:`k` (pairwise), and take the feature
    :math:`\frac1B \sum_b |r(x^{1}_b) - r(x^{2}_b)|`; its label is :math:`k`. The score is the
    accuracy on ``num_eval`` fresh examples of ``LogisticRegression`` (scikit-learn's defaults, as
    in dlib) trained on ``num_train`` examples. Chance is :math:`1/K`.

    Args:
        codes: A code table ``(N, J)`` on a full factorial grid with ``factors`` ``(N, K)``, or a
            callable mapping an ``int64`` tensor of factors ``(B, K)`` to codes ``(B, J)`` (then
            give ``sizes``).
        factors: The table's factors (integer indices).
        sizes: The factor sizes, for a callable.
        batch_size: Points per example (64 in dlib).
        num_train, num_eval: Examples to train and to score the classifier.
        rng: Seed or NumPy generator.

    Returns:
        The evaluation accuracy.

    Raises:
        TypeError, ValueError: On bad inputs, or factors that are not a full factorial grid.

    Example:
        >>> v = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
        >>> beta_vae_score(v.astype(float), v, num_train=300, num_eval=100)
        1.0
    """
    grid = _Grid(codes, factors, sizes)
    batch_size = check_positive_int("batch_size", batch_size, 2)
    num_train = check_positive_int("num_train", num_train, 2)
    num_eval = check_positive_int("num_eval", num_eval)
    rng = _check_rng(rng)

    def examples(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels, batches = _fixed_factor_batches(grid, rng, count, batch_size)
        features, offset = [], 0
        for first in batches:
            # The second batch is fresh except for factor k, copied from the first, pair by pair.
            k = labels[offset : offset + first.shape[0]]
            rows = np.arange(first.shape[0])
            second = grid.sample(rng, first.shape[:2])
            second[rows, :, k] = first[rows, :, k]
            features.append(np.abs(grid.codes(first) - grid.codes(second)).mean(axis=1))
            offset += first.shape[0]
        return np.concatenate(features), labels

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = examples(num_train)
    eval_x, eval_y = examples(num_eval)
    if np.unique(train_y).shape[0] < 2:
        raise ValueError(f"num_train = {num_train} examples drew a single factor: draw more")
    classifier = LogisticRegression(random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train_x, train_y)
    return float(np.mean(classifier.predict(eval_x) == eval_y))


def factor_vae_score(
    codes: object,
    factors: object = None,
    *,
    sizes: tuple[int, ...] | None = None,
    batch_size: int = _BATCH_SIZE,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance: int = 10_000,
    prune_threshold: float = _PRUNE_THRESHOLD,
    rng: np.random.Generator | int = 0,
) -> float:
    r"""The FactorVAE disentanglement score (Kim & Mnih 2018; dlib's ``factor_vae.py``).

    Global variances :math:`s_j^2` of the codes from ``num_variance`` random points (``ddof=1``);
    codes with :math:`s_j <` ``prune_threshold`` are pruned (collapsed dimensions: 0.05 in the
    study; without pruning a constant code, of variance ratio 0/0, can win every vote). Each vote:
    a factor :math:`k`, a batch with factor :math:`k` fixed, and the active code
    :math:`j^\star = \arg\min_j \widehat{\mathrm{Var}}_{\text{batch}}(z_j) / s_j^2`, added to a vote
    matrix :math:`V_{kj}`. The classifier maps each code to its majority factor,
    :math:`j \mapsto \arg\max_k V^{\text{train}}_{kj}`, and the score is its accuracy on the
    evaluation votes, :math:`\sum_j V^{\text{eval}}_{c(j) j} / \sum V^{\text{eval}}`. Chance is
    :math:`1/K` at best; 0 when every code is collapsed.

    Args:
        codes, factors, sizes: As :func:`beta_vae_score`.
        batch_size: Points per vote (64 in dlib).
        num_train, num_eval: Votes to build and to score the classifier.
        num_variance: Points for the global variances.
        prune_threshold: Minimal standard deviation of an active code (non-negative).
        rng: Seed or NumPy generator.

    Returns:
        The evaluation accuracy.

    Example:
        >>> v = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
        >>> z = np.concatenate([v, np.zeros((16, 1))], axis=1)  # a collapsed third code
        >>> factor_vae_score(z, v, num_train=200, num_eval=100)
        1.0
    """
    grid = _Grid(codes, factors, sizes)
    batch_size = check_positive_int("batch_size", batch_size, 2)
    num_train = check_positive_int("num_train", num_train)
    num_eval = check_positive_int("num_eval", num_eval)
    num_variance = check_positive_int("num_variance", num_variance, 2)
    threshold = check_positive_number("prune_threshold", prune_threshold, allow_zero=True)
    rng = _check_rng(rng)

    variances = np.var(grid.codes(grid.sample(rng, (num_variance,))), axis=0, ddof=1)
    active = np.sqrt(variances) >= threshold
    if not active.any():
        return 0.0

    def votes(count: int) -> np.ndarray:
        labels, batches = _fixed_factor_batches(grid, rng, count, batch_size)
        matrix = np.zeros((len(grid.sizes), variances.shape[0]), dtype=np.int64)
        offset = 0
        for batch in batches:
            local = np.var(grid.codes(batch), axis=1, ddof=1)[:, active]
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 without pruning: NaN wins
                winners = np.argmin(local / variances[active], axis=1)
            np.add.at(matrix, (labels[offset : offset + batch.shape[0]], winners), 1)
            offset += batch.shape[0]
        return matrix

    train, evaluation = votes(num_train), votes(num_eval)
    classifier = np.argmax(train, axis=0)
    columns = np.arange(train.shape[1])
    return float(evaluation[classifier, columns].sum() / evaluation.sum())


# --------------------------------------------------------------------------------------------------
# Unsupervised


def gaussian_total_correlation(codes: object) -> float:
    r"""Total correlation of a Gaussian with the codes' covariance :math:`\Sigma` (``ddof=1``).

    .. math::
        \mathrm{TC} = \mathrm{KL}\Bigl(\mathcal N(0, \Sigma) \,\Big\|\,
        \prod_j \mathcal N(0, \Sigma_{jj})\Bigr)
        = \frac12 \Bigl(\sum_j \log \Sigma_{jj} - \log\det\Sigma\Bigr) \ge 0,

    dlib's unsupervised ``gaussian_total_correlation``: 0 for uncorrelated codes, whatever their
    dependence beyond the second moments.

    Args:
        codes: Shape ``(N, J)``, floating, with a positive definite sample covariance.

    Returns:
        The total correlation in nats.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.standard_normal((200_000, 2)) @ np.linalg.cholesky([[1, 0.9], [0.9, 1]]).T
        >>> round(gaussian_total_correlation(z), 2)  # -log(1 - 0.81) / 2 = 0.830366
        0.83
    """
    z = _check_codes(codes)
    covariance = np.atleast_2d(np.cov(z, rowvar=False))
    sign, logdet = np.linalg.slogdet(covariance)
    if sign <= 0 or not np.all(np.diag(covariance) > 0):
        raise ValueError("the codes' covariance must be positive definite (no constant code)")
    return float(0.5 * (np.log(np.diag(covariance)).sum() - logdet))
