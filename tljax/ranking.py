"""Transferability estimation: score pre-trained models on a target task without fine-tuning.

Pure functions on NumPy (or JAX) arrays, computed in float64 on the host:

* :func:`logme` -- LogME (You et al., "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning", ICML 2021): the maximum log evidence of a Bayesian linear
  regression from the features to each one-hot label column, per example, averaged over
  classes.
* :func:`leep` -- LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations", ICML 2020): from the source head's softmax.
* :func:`nce` -- NCE (Tran et al., "Transferability and Hardness of Supervised
  Classification Tasks", ICCV 2019): the negative conditional entropy -H(Y|Z) of target
  labels given the source model's arg-max labels.
* :func:`h_score` -- H-score (Bao et al., "An Information-Theoretic Approach to Transfer
  Learning", ICIP 2019), optionally with the shrinkage of Ibrahim et al. (2021).
* :func:`kendall_tau`, :func:`weighted_kendall_tau` -- rank correlation of scores with
  fine-tuned accuracies, the LogME paper's evaluation protocol.

Higher is better for every score. ``experiments/rank.py`` ranks trained runs with them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "h_score",
    "kendall_tau",
    "leep",
    "log_evidence",
    "logme",
    "logme_details",
    "nce",
    "weighted_kendall_tau",
]


def _as_features(features) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must have shape (n, d); got shape {f.shape}.")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or Inf.")
    return f


def _as_labels(labels, n: int, num_classes: int | None, name: str = "labels") -> tuple:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the inputs; got {y.shape}.")
    if n == 0:
        raise ValueError(f"{name} is empty: the estimators need labelled examples.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name} must be integer class ids; got dtype {y.dtype}.")
        y = y.astype(np.int64)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(
            f"{name} must lie in [0, {k}) (num_classes={k}); got range [{y.min()}, {y.max()}]."
        )
    return y.astype(np.int64), k


# --------------------------------------------------------------------------- LogME


def _spectral(f: np.ndarray):
    """``U`` (n, k), ``sigma = s**2`` (k,) of the thin SVD of ``f`` restricted to its rank."""
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(f.shape) * np.finfo(np.float64).eps
    return u[:, keep], s[keep] ** 2


def _evidence_terms(x2, res_x2, sigma, alpha, beta):
    """``gamma, |m|^2, |y - F m|^2`` at ``(alpha, beta)`` in the eigenbasis of ``F^T F``."""
    t = alpha / beta
    gamma = float(np.sum(sigma / (sigma + t)))
    m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
    res2 = float(np.sum((t / (sigma + t)) ** 2 * x2) + res_x2)
    return gamma, m2, res2


def _log_evidence(n, d, sigma, alpha, beta, m2, res2):
    # log|A| of A = alpha I + beta F^T F: k non-zero eigenvalues of F^T F, d - k zeros.
    logdet = np.sum(np.log(alpha + beta * sigma)) + (d - sigma.size) * np.log(alpha)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - logdet / 2
    )


def log_evidence(features, y, alpha: float, beta: float) -> float:
    """Log evidence per example, ``log p(y | F, alpha, beta) / n``, of Bayesian linear
    regression ``y = F w + N(0, 1/beta)``, ``w ~ N(0, I/alpha)`` (You et al., Eq. 2).

    Args:
      features: ``F``, shape ``(n, d)``.
      y: real targets, shape ``(n,)``.
      alpha, beta: prior and noise precisions, ``> 0``.
    """
    f = _as_features(features)
    y = np.asarray(y, dtype=np.float64)
    u, sigma = _spectral(f)
    x = u.T @ y
    x2 = x**2
    gamma, m2, res2 = _evidence_terms(x2, float(y @ y - x2.sum()), sigma, alpha, beta)
    del gamma
    n, d = f.shape
    return float(_log_evidence(n, d, sigma, alpha, beta, m2, res2) / n)


def logme_details(
    features, labels, num_classes: int | None = None, *, tol: float = 1e-3, max_iter: int = 11
) -> dict:
    """LogME with its per-class maximisers; see :func:`logme`.

    Returns:
      ``{"score", "evidence" (C,), "alpha" (C,), "beta" (C,), "iterations" (C,)}``.
    """
    f = _as_features(features)
    n, d = f.shape
    y, c = _as_labels(labels, n, num_classes)
    if n < 2:
        raise ValueError(f"LogME needs at least 2 examples; got {n}.")
    u, sigma = _spectral(f)
    evidence, alphas, betas, iters = [], [], [], []
    for k in range(c):
        yk = (y == k).astype(np.float64)
        x = u.T @ yk
        x2 = x**2
        res_x2 = max(float(yk @ yk - x2.sum()), 0.0)  # the part of y outside span(F)
        alpha, beta = 1.0, 1.0  # You et al.'s initialisation (and their code's)
        it = 0
        while it < max_iter:
            it += 1
            gamma, m2, res2 = _evidence_terms(x2, res_x2, sigma, alpha, beta)
            # MacKay's fixed point; the floors only matter for a degenerate class
            # (all-zero column or y in span(F) exactly).
            alpha_new = gamma / max(m2, 1e-12)
            beta_new = (n - gamma) / max(res2, 1e-12)
            t_old, alpha, beta = alpha / beta, alpha_new, beta_new
            if abs(alpha / beta - t_old) / t_old <= tol:
                break
        _, m2, res2 = _evidence_terms(x2, res_x2, sigma, alpha, beta)
        evidence.append(_log_evidence(n, d, sigma, alpha, beta, m2, res2) / n)
        alphas.append(alpha)
        betas.append(beta)
        iters.append(it)
    evidence = np.array(evidence)
    return dict(
        score=float(evidence.mean()),
        evidence=evidence,
        alpha=np.array(alphas),
        beta=np.array(betas),
        iterations=np.array(iters),
    )


def logme(
    features, labels, num_classes: int | None = None, *, tol: float = 1e-3, max_iter: int = 11
) -> float:
    """LogME: the log of maximum evidence of the labels given the features.

    For each class ``k`` the one-hot column ``y_k`` is modelled by Bayesian linear
    regression on the features ``F`` (used as they are: no centering, no bias column, as in
    the authors' code), ``w ~ N(0, I/alpha)``, ``y_k | F, w ~ N(F w, I/beta)``. The log
    evidence (You et al., ICML 2021, Eq. 2)::

      L(alpha, beta) = d/2 log alpha + n/2 log beta - n/2 log 2pi
                       - beta/2 |y - F m|^2 - alpha/2 |m|^2 - 1/2 log|A|,
      A = alpha I + beta F^T F,   m = beta A^-1 F^T y,

    is maximised by the fixed-point iteration of Algorithm 1 (MacKay's), with the SVD of
    ``F`` making each step O(d)::

      gamma = sum_i beta sigma_i / (alpha + beta sigma_i),
      alpha <- gamma / |m|^2,   beta <- (n - gamma) / |y - F m|^2,

    from ``alpha = beta = 1`` until ``alpha/beta`` changes by at most ``tol`` (relative),
    at most ``max_iter`` steps (the authors' code: 1e-3 and 11). LogME is the mean over
    classes of ``L / n``.

    Differences from the authors' ``LogME._fit_fixed_point`` (thuml/LogME), both below
    the precision that matters for ranking: the evidence is evaluated with ``m`` and the
    residual at the final ``(alpha, beta)`` (theirs uses those of the previous step), no
    1e-5 is added to the denominators, and ``log|A|`` counts the ``d - rank(F)`` zero
    eigenvalues of ``F^T F`` as ``log alpha`` (their truncated SVD drops them when
    ``rank(F) < d``).

    Args:
      features: ``(n, d)`` features of the target training examples.
      labels: ``(n,)`` integer target labels.
      num_classes: number of target classes (default ``labels.max() + 1``).
      tol: relative tolerance on ``alpha/beta``.
      max_iter: iteration cap per class.

    Returns:
      The LogME score (higher: more transferable).

    Raises:
      ValueError: for a bad shape, non-finite features, or labels out of range.
    """
    return logme_details(features, labels, num_classes, tol=tol, max_iter=max_iter)["score"]


# --------------------------------------------------------------------------- LEEP, NCE


def leep(source_probs, labels, num_target_classes: int | None = None) -> float:
    """LEEP: log expected empirical prediction (Nguyen et al., ICML 2020).

    With ``theta(x)`` the source model's predicted distribution over its ``C_s`` labels::

      P(y, z) = 1/n sum_i theta(x_i)_z [y_i = y],   P(y | z) = P(y, z) / P(z),
      LEEP    = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z    (<= 0).

    A source label ``z`` that no example puts mass on gets ``P(y|z) = 0``; it contributes
    nothing since ``theta(x_i)_z = 0`` for every ``i``.

    Args:
      source_probs: ``(n, C_s)`` source-head probabilities (softmax), rows summing to 1.
      labels: ``(n,)`` integer target labels.
      num_target_classes: ``C_t`` (default ``labels.max() + 1``).

    Raises:
      ValueError: for a bad shape, negative probabilities, or rows not summing to 1.
    """
    p = np.asarray(source_probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"source_probs must have shape (n, C_s); got {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError(
            "source_probs must be probabilities (non-negative rows summing to 1); pass the "
            "softmax of the source logits."
        )
    n = p.shape[0]
    y, c = _as_labels(labels, n, num_target_classes)
    joint = np.zeros((c, p.shape[1]))
    np.add.at(joint, y, p / n)  # P(y, z)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = np.einsum("nz,nz->n", p, cond[y])  # sum_z P(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(eep)))


def nce(source_labels, target_labels, num_source_classes=None, num_target_classes=None) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` (Tran et al., ICCV 2019).

    ``Z`` is the source model's label (the arg-max of its predictions), ``Y`` the target
    label; ``H(Y|Z) = -sum_{y,z} P(y, z) log P(y|z)`` of the empirical joint. ``NCE <= 0``,
    with 0 exactly when ``Z`` determines ``Y``.

    Args:
      source_labels: ``(n,)`` integer source labels.
      target_labels: ``(n,)`` integer target labels.
      num_source_classes, num_target_classes: optional sizes (default max + 1).
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise ValueError(f"source_labels must have shape (n,); got {z.shape}.")
    n = z.shape[0]
    z, cs = _as_labels(z, n, num_source_classes, "source_labels")
    y, ct = _as_labels(target_labels, n, num_target_classes, "target_labels")
    joint = np.zeros((ct, cs))
    np.add.at(joint, (y, z), 1.0 / n)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    # 0 log 0 = 0: only observed (y, z) pairs contribute.
    return float(np.sum(joint[nz] * np.log((joint / np.where(pz > 0, pz, 1.0))[nz])))


# --------------------------------------------------------------------------- H-score


def h_score(features, labels, *, shrinkage: str | float | None = None) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^+ cov(E[f | y]))``.

    ``cov(f)`` is the covariance of the features, ``E[f|y]`` replaces each example's
    features by its class mean, and ``^+`` is the pseudo-inverse (the features of a trained
    network are often rank-deficient). Both covariances are the biased (1/n) ones, as
    ``E[...]`` in the paper; the 1/n vs 1/(n-1) choice cancels in the ratio.

    ``shrinkage`` gives the regularised H-score of Ibrahim, Ponomareva and Mazumder
    ("Newer is not always better: Rethinking transferability metrics, their peculiarities,
    stability and performance", arXiv:2110.06893): ``cov(f)`` is shrunk towards
    ``mu I`` (``mu`` its mean eigenvalue), ``(1 - a) cov(f) + a mu I``, and the between-class
    covariance is scaled by ``(1 - a)``, with ``a`` the Ledoit-Wolf coefficient
    (``"ledoit_wolf"``, from scikit-learn) or a given float in ``[0, 1]``.

    Args:
      features: ``(n, d)``.
      labels: ``(n,)`` integer labels.
      shrinkage: ``None`` (Bao et al.), ``"ledoit_wolf"`` or a float in ``[0, 1]``.

    Raises:
      ValueError: for a bad shape or shrinkage value.
    """
    f = _as_features(features)
    n, d = f.shape
    y, c = _as_labels(labels, n, None)
    f = f - f.mean(0)
    cov_f = f.T @ f / n
    means = np.zeros((c, d))
    np.add.at(means, y, f)
    counts = np.bincount(y, minlength=c)
    means /= np.maximum(counts, 1)[:, None]
    g = means[y]
    cov_g = g.T @ g / n
    if shrinkage is not None:
        if shrinkage == "ledoit_wolf":
            from sklearn.covariance import ledoit_wolf_shrinkage

            a = float(ledoit_wolf_shrinkage(f, assume_centered=True))
        elif isinstance(shrinkage, (int, float)) and 0.0 <= float(shrinkage) <= 1.0:
            a = float(shrinkage)
        else:
            raise ValueError(
                f"shrinkage must be None, 'ledoit_wolf' or a float in [0, 1]; got {shrinkage!r}."
            )
        mu = np.trace(cov_f) / d
        cov_f = (1 - a) * cov_f + a * mu * np.eye(d)
        cov_g = (1 - a) * cov_g
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


# --------------------------------------------------------------------------- rank correlation


def _pair(scores, accuracies):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    a = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    if s.shape != a.shape or s.size < 2:
        raise ValueError(
            f"need two equally long sequences of at least 2 values; got {s.size} scores "
            f"and {a.size} accuracies."
        )
    return s, a


def kendall_tau(scores, accuracies) -> float:
    """Kendall's tau (tau-b, ties counted as in :func:`scipy.stats.kendalltau`) between
    estimator scores and fine-tuned accuracies: +1 same order, -1 reversed."""
    from scipy import stats

    return float(stats.kendalltau(*_pair(scores, accuracies)).statistic)


def weighted_kendall_tau(scores, accuracies) -> float:
    """Weighted Kendall's tau (Vigna, 2015) as in the LogME paper: :func:`scipy.stats.weightedtau`
    with its defaults (hyperbolic weight ``1/(r+1)`` of the rank ``r``, the ranking by
    decreasing value, both orders averaged), so swaps among the top models cost more."""
    from scipy import stats

    return float(stats.weightedtau(*_pair(scores, accuracies)).statistic)
