"""Evaluation: accuracy and per-class accuracy over a whole split, in fixed-size batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tljax.distributed import put_global


def predict(
    eval_fn: Callable, params, rest, x: np.ndarray, *, batch_size: int = 512, sharding=None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of every example of ``x``.

    The last batch is zero-padded to ``batch_size`` so the compiled eval step is reused.

    Args:
      eval_fn: a jitted ``(params, rest, images) -> (logits, features)``.
      params, rest: the model state.
      x: inputs ``(n, ...)``.
      batch_size: examples per call; a multiple of the number of devices when sharded.
      sharding: optional sharding of each input batch.
        With several processes, every process passes all of ``x`` and ``eval_fn`` must
        return replicated outputs (``out_shardings``), so each gets all the logits.
    """
    n = x.shape[0]
    logits, feats = [], []
    # An empty x (a task without that test split) runs one padded batch: (0, ...) outputs.
    for start in range(0, max(n, 1), batch_size):
        xb = x[start : start + batch_size]
        k = xb.shape[0]
        if k < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - k, *xb.shape[1:]), xb.dtype)])
        # put_global, not device_put: with several processes it moves no data between hosts.
        xb = put_global(xb, sharding) if sharding is not None else xb
        lb, fb = eval_fn(params, rest, xb)
        logits.append(np.asarray(lb)[:k])
        feats.append(np.asarray(fb)[:k])
    return np.concatenate(logits), np.concatenate(feats)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose arg-max logit is the label; NaN for no examples (a
    task without that test split, e.g. :func:`tljax.data.arrays.from_arrays` without
    ``target_test``)."""
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} predictions for {labels.shape[0]} labels.")
    if labels.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.argmax(logits, -1) == labels))


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class (NaN for a class absent from ``labels``)."""
    pred = np.argmax(logits, -1)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[c] = np.mean(pred[mask] == c)
    return out


def mean_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean over present classes of the per-class accuracy (VisDA's metric); NaN for no
    examples."""
    if labels.shape[0] == 0:
        return float("nan")
    return float(np.nanmean(per_class_accuracy(logits, labels, num_classes)))


def proxy_a_distance(
    source_features: np.ndarray,
    target_features: np.ndarray,
    *,
    seed: int = 0,
    test_fraction: float = 0.5,
) -> float:
    """Proxy A-distance ``2(1 − 2ε)`` (Ben-David et al., 2007).

    ``ε`` is the held-out error of a linear domain classifier (logistic regression on
    standardised features) trained to tell source from target features. 0 means the
    domains are indistinguishable to a linear classifier, 2 means perfectly separable.

    Args:
      source_features: ``(n_s, d)``.
      target_features: ``(n_t, d)``.
      seed: seed of the train/held-out split.
      test_fraction: fraction of examples held out to measure ``ε``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_features, target_features]).astype(np.float64)
    d = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))])
    xtr, xte, dtr, dte = train_test_split(
        x, d, test_size=test_fraction, random_state=seed, stratify=d
    )
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(xtr), dtr)
    err = 1.0 - clf.score(scaler.transform(xte), dte)
    return float(2.0 * (1.0 - 2.0 * min(err, 0.5)))


def linear_mmd2(source_features: np.ndarray, target_features: np.ndarray) -> float:
    """Squared distance between the domains' mean features, ``‖μ_s − μ_t‖²``."""
    diff = source_features.mean(0) - target_features.mean(0)
    return float(diff @ diff)


# ---------------------------------------------------------------------------------------
# Unsupervised model-selection scores (no target labels). Larger is better for all of
# them as returned here, so that "select the step with the highest score" is one rule.
# ---------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(-1)


def neg_entropy_score(target_logits: np.ndarray) -> float:
    """Minus the mean prediction entropy on the target (entropy selection)."""
    return float(-_entropy(_softmax(target_logits.astype(np.float64))).mean())


def information_maximization_score(target_logits: np.ndarray) -> float:
    """``H(mean prediction) − mean H(prediction)`` on the target (higher: confident and
    diverse predictions)."""
    p = _softmax(target_logits.astype(np.float64))
    return float(_entropy(p.mean(0)) - _entropy(p).mean())


def snd_score(
    target_features: np.ndarray,
    target_logits: np.ndarray,
    *,
    temperature: float = 0.05,
    max_examples: int = 2000,
) -> float:
    """Soft neighborhood density (Saito et al., ICCV 2021).

    Cosine similarities between the target's softmax outputs (as in the paper; the
    features argument is kept for a feature-space variant), scaled by ``1/temperature``,
    softmax over the other examples, and the mean entropy of those distributions.
    """
    del target_features
    p = _softmax(target_logits.astype(np.float64))[:max_examples]
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    sim = p @ p.T / temperature
    np.fill_diagonal(sim, -np.inf)
    return float(_entropy(_softmax(sim)).mean())


def dev_score(
    source_val_features: np.ndarray,
    source_val_logits: np.ndarray,
    source_val_labels: np.ndarray,
    target_features: np.ndarray,
    *,
    seed: int = 0,
) -> float:
    """Minus the Deep Embedded Validation risk (You et al., ICML 2019).

    Importance weights ``w = (n_s/n_t)·p(t|f)/p(s|f)`` from a logistic-regression domain
    classifier on the features, the weighted source-validation loss ``w·CE`` and its
    control variate ``η = −Cov(wL, w)/Var(w)``: ``risk = mean(wL) + η·mean(w) − η``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_val_features, target_features]).astype(np.float64)
    d = np.concatenate([np.zeros(len(source_val_features)), np.ones(len(target_features))])
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
    clf.fit(scaler.transform(x), d)
    p_t = clf.predict_proba(scaler.transform(source_val_features.astype(np.float64)))[:, 1]
    p_t = np.clip(p_t, 1e-6, 1 - 1e-6)
    w = (len(source_val_features) / len(target_features)) * p_t / (1 - p_t)
    p = _softmax(source_val_logits.astype(np.float64))
    ce = -np.log(np.clip(p[np.arange(len(p)), source_val_labels], 1e-12, 1.0))
    wl = w * ce
    var_w = np.var(w, ddof=1)
    eta = -np.cov(wl, w)[0, 1] / var_w if var_w > 0 else 0.0
    return float(-(wl.mean() + eta * w.mean() - eta))


SELECTION_RULES = {
    # rule name -> (metric logged at each evaluation, description)
    "source_val": ("source_val_acc", "source validation accuracy (labelled source data)"),
    "entropy": ("target_neg_entropy", "lowest target prediction entropy"),
    "im": ("target_im", "highest target information maximization"),
    "snd": ("target_snd", "highest soft neighborhood density (Saito et al. 2021)"),
    "dev": ("target_neg_dev", "lowest deep embedded validation risk (You et al. 2019)"),
    # Multi-domain tasks (tljax.domains): DomainBed's training-domain validation, and its
    # test-domain validation (the held-out domain's out split; uses its labels).
    "train_domain_val": (
        "train_domains_val_acc",
        "mean accuracy on the training domains' out splits",
    ),
    "test_domain_val": ("target_out_acc", "held-out domain's out split (uses its labels)"),
    "last": (None, "last evaluation"),
    "oracle": ("target_test_acc", "target test accuracy (uses target labels: an upper bound)"),
}
