"""A scikit-learn estimator for domain adaptation on array data.

    clf = DomainAdaptationClassifier(method="dann", steps=2000).fit(X_s, y_s, X_target=X_t)
    clf.predict(X_t)

:class:`DomainAdaptationClassifier` trains tljax's MLP backbone (``"mlp"``) with a
transfer method of :mod:`tljax.methods` using the library's own pieces: the config
schema, :func:`tljax.loop.build` (model, method, optimizer, train step),
:class:`~tljax.data.stream.DomainPairStream` and, for ``n_seeds > 1``,
:func:`tljax.multiseed.build_members`. It trains in-process and writes nothing.

**How the target data reaches fit.** Two ways, the same training:

* ``fit(X_s, y_s, X_target=X_t)``: direct use.
* ``fit(X, y)`` with the target rows stacked under the source ones and labelled
  ``unlabeled`` (default ``-1``), scikit-learn's semi-supervised convention
  (``SelfTrainingClassifier``). **Use this inside a Pipeline or GridSearchCV**: a Pipeline
  transforms ``X`` (target rows included) before the estimator sees it, whereas a fit
  parameter reaches the estimator untransformed; and GridSearchCV slices a fit parameter
  whose length equals ``len(X)`` with the CV indices but passes others whole. With the
  stacked form, each CV split holds out target rows too, on which the unsupervised
  :func:`selection_scorer` rules score a candidate.

Without target data (no ``X_target`` and no unlabelled row) the estimator trains with
``source_only`` semantics whatever ``method`` says (the source inputs stand in for the
target stream, which ``source_only`` never looks at); scikit-learn's estimator checks
exercise that path.

**n_seeds > 1** trains seeds ``seed, seed+1, ...`` vmapped in one compiled program
(:mod:`tljax.multiseed`) and :meth:`~DomainAdaptationClassifier.predict_proba` averages
the members' softmax probabilities (an ensemble; ``predict`` is its arg-max). Each member
is the model ``n_seeds=1`` with that seed would train (up to float reduction order).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.5
    from sklearn.utils.validation import check_is_fitted

    def validate_data(est, X, y="no_validation", reset=True, **kw):
        return est._validate_data(X, y, reset=reset, **kw)


__all__ = ["DomainAdaptationClassifier", "selection_scorer", "SCORER_RULES"]

# Estimator parameters, in __init__'s order (the rest of get_params are method hparams).
_OWN = (
    "method",
    "hidden",
    "steps",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "weight_decay",
    "momentum",
    "weight",
    "seed",
    "n_seeds",
    "unlabeled",
)
_METHOD_PREFIX = "method_"  # method_hidden=... sets the method's own "hidden"
_task_ids = itertools.count()


def _hparam_name(key: str) -> str:
    """The method hyperparameter an extra estimator parameter sets."""
    return key[len(_METHOD_PREFIX) :] if key.startswith(_METHOD_PREFIX) else key


class DomainAdaptationClassifier(ClassifierMixin, BaseEstimator):
    """An MLP trained with a tljax transfer method on a labelled source and an unlabelled
    target.

    Args:
      method: a name of :func:`tljax.methods.names` (``"dann"``, ``"dan"``, ``"coral"``,
        ``"mcc"``, ``"source_only"``, ...).
      hidden: the MLP backbone's hidden widths (its features are the last layer).
      steps: training steps (one source and one target batch each).
      batch_size: examples per domain per step; capped at the smaller domain's size.
      lr: base learning rate.
      optimizer: ``config.optim.optimizer`` (``"adam"``, ``"sgd"``, ...).
      schedule: ``config.optim.schedule`` (``"constant"``, ``"inverse_decay"``,
        ``"cosine"``).
      weight_decay, momentum: ``config.optim`` fields of the same names (``momentum``:
        SGD's, with Nesterov).
      weight: the trade-off λ of the method loss (``config.method.weight``).
      seed: initialisation and data-order seed (``config.seed``).
      n_seeds: members trained vmapped (seeds ``seed .. seed+n_seeds-1``); their
        probabilities are averaged.
      unlabeled: the label value that marks target rows in ``fit(X, y)``; ``None``: no
        marker (every row is labelled; the target only through ``X_target``), for label
        sets that contain ``-1``.
      **method_hparams: the method's hyperparameters (``config.method.hparams``), e.g.
        ``grl_max_iters=250.0``. A name that is also an estimator parameter takes the
        prefix ``method_``: ``method_hidden=(32,)`` is DANN's discriminator width.

    Attributes:
      classes_: the class labels (sorted), mapped to ``0..K-1`` for training.
      n_features_in_: number of input features.
      X_target_: the target inputs trained on (``None`` without target data), for
        :func:`selection_scorer`.
      method_used_: the method actually trained (``"source_only"`` without target data).
    """

    def __init__(
        self,
        method: str = "dann",
        hidden=(64, 64),
        steps: int = 1000,
        batch_size: int = 32,
        lr: float = 1e-3,
        optimizer: str = "adam",
        schedule: str = "constant",
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        weight: float = 1.0,
        seed: int = 0,
        n_seeds: int = 1,
        unlabeled=-1,
        **method_hparams,
    ):
        self.method = method
        self.hidden = hidden
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.schedule = schedule
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.weight = weight
        self.seed = seed
        self.n_seeds = n_seeds
        self.unlabeled = unlabeled
        for k, v in method_hparams.items():
            setattr(self, k, v)
        self._hparam_keys = tuple(method_hparams)

    # -- parameters: the method's hyperparameters are parameters too ------------------

    def get_params(self, deep: bool = True) -> dict:
        out = super().get_params(deep=deep)
        for k in getattr(self, "_hparam_keys", ()):
            out[k] = getattr(self, k)
        return out

    def set_params(self, **params):
        """Sets estimator parameters and method hyperparameters (also ones not given to
        the constructor, so GridSearchCV can search them)."""
        own = set(super().get_params(deep=False))
        for k, v in params.items():
            if k in own:
                setattr(self, k, v)
            elif "__" in k:
                raise ValueError(f"Invalid parameter {k!r}: this estimator has no sub-estimators.")
            else:
                setattr(self, k, v)
                if k not in self._hparam_keys:
                    self._hparam_keys = (*self._hparam_keys, k)
        return self

    def _method_hparams(self) -> dict:
        return {_hparam_name(k): getattr(self, k) for k in self._hparam_keys}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags

    # -- fit ---------------------------------------------------------------------------

    def _split_rows(self, X, y, X_target):
        """Source ``(X_s, y_s)`` and target ``X_t`` (or None) from fit's arguments."""
        mask = _marked(np.asarray(y), self.unlabeled)
        xs, ys = X[~mask], np.asarray(y)[~mask]
        xt = X[mask] if mask.any() else None
        if X_target is not None:
            extra = validate_data(self, X_target, reset=False, dtype=np.float32)
            xt = extra if xt is None else np.concatenate([xt, extra])
        if len(ys) == 0:
            raise ValueError(
                f"fit got no labelled source example: every label is the unlabelled "
                f"marker {self.unlabeled!r} (the 'unlabeled' parameter)."
            )
        return xs, ys, xt

    def fit(self, X, y, X_target=None):
        """Trains on the labelled rows of ``(X, y)`` and the target inputs.

        Args:
          X: ``(n, n_features)`` inputs: the source, optionally followed by target rows
            (labelled ``unlabeled``).
          y: ``(n,)`` labels of any hashable kind; ``unlabeled`` marks target rows.
          X_target: ``(m, n_features)`` more target inputs (a fit parameter; in a Pipeline
            it is not transformed by the earlier steps: stack the target into ``X``).

        Returns:
          self.

        Raises:
          ValueError: bad shapes/values, one class only, or no labelled example.
          FloatingPointError: the loss became NaN/Inf.
        """
        from tljax import methods

        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=False)
        xs, ys, xt = self._split_rows(X, y, X_target)
        check_classification_targets(ys)
        self.classes_, y_idx = np.unique(ys, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"fit needs at least 2 classes in the labelled rows, got {len(self.classes_)} "
                f"class ({self.classes_.tolist()})."
            )
        if not isinstance(self.n_seeds, (int, np.integer)) or self.n_seeds < 1:
            raise ValueError(f"n_seeds must be an integer >= 1, got {self.n_seeds!r}.")
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}.")
        self.method_used_ = self.method if xt is not None else "source_only"
        if self.method_used_ not in methods.names():
            raise ValueError(f"Unknown method {self.method!r}; valid: {methods.names()}.")
        self.X_target_ = xt
        self._fit_arrays(xs, y_idx.astype(np.int32), xt if xt is not None else xs)
        return self

    def _config(self, task_name: str, batch_size: int):
        from tljax.config import base_config

        c = base_config()
        c.seed = int(self.seed)
        c.data.task = task_name
        c.data.batch_size = batch_size
        c.data.prefetch = 0
        c.model.backbone = "mlp"
        c.model.backbone_kwargs.hidden = tuple(int(h) for h in self.hidden)
        c.method.name = self.method_used_
        c.method.weight = float(self.weight)
        if self.method_used_ == self.method:
            for k, v in self._method_hparams().items():
                c.method.hparams[k] = v
        o = c.optim
        o.optimizer = self.optimizer
        o.lr = float(self.lr)
        o.schedule = self.schedule
        o.weight_decay = float(self.weight_decay)
        o.momentum = float(self.momentum)
        c.train.steps = int(self.steps)
        c.train.progress = False
        c.train.tensorboard = False
        return c

    def _fit_arrays(self, xs: np.ndarray, ys: np.ndarray, xt: np.ndarray) -> None:
        from tljax import loop, multiseed
        from tljax.data import tasks
        from tljax.data.arrays import UNLABELED, ArrayTask
        from tljax.data.core import Domain, Split
        from tljax.data.stream import DomainPairStream

        k = len(self.classes_)
        empty = Split(xs[:0], ys[:0])
        task = ArrayTask(
            "sklearn",
            Domain("source", Split(xs, ys), empty),
            Domain("target", Split(xt, np.full(len(xt), UNLABELED, np.int32)), empty),
            k,
        )
        batch_size = int(min(self.batch_size, len(xs), len(xt)))
        name = f"_tljax.sklearn/{next(_task_ids)}"
        configs = []
        for i in range(int(self.n_seeds)):
            c = self._config(name, batch_size)
            c.seed = int(self.seed) + i
            configs.append(c)
        # A registered name for loop.build, removed once built (the task is not cached).
        tasks.register_task(name, lambda _name, *, data_seed: task)
        try:
            if len(configs) == 1:
                parts = loop.build(configs[0])
                state, step = parts["state"], parts["train_step"]
            else:
                parts, state, step = multiseed.build_members(configs)
        finally:
            tasks._REGISTERED.pop(name, None)
        streams = [DomainPairStream(task, batch_size, seed=c.seed) for c in configs]
        train = jax.jit(step, donate_argnums=0)
        for _ in range(int(self.steps)):
            if len(streams) == 1:
                batch = next(streams[0])
            else:
                batch = loop._stack([next(s) for s in streams])
            state, _ = train(state, batch)
        bad = np.asarray(jax.device_get(state.nonfinite_step)).reshape(-1)
        if (bad >= 0).any():
            raise FloatingPointError(
                f"The loss became NaN/Inf at step {int(bad[bad >= 0].min())}; lower lr "
                f"(now {self.lr}) or standardise the inputs (e.g. StandardScaler)."
            )
        params, rest = jax.device_get((state.params, state.rest))
        if len(configs) == 1:
            self._members = [(params, rest)]
        else:
            self._members = [
                jax.tree.map(lambda a, i=i: a[i], (params, rest)) for i in range(len(configs))
            ]
        self._method_obj = parts["method"]
        self._eval_fn = jax.jit(parts["eval_step"])

    # -- predict -----------------------------------------------------------------------

    def __getstate__(self):
        # Compiled functions do not pickle; they are rebuilt on first use.
        state = self.__dict__.copy()
        state.pop("_eval_fn", None)
        state.pop("_method_obj", None)
        return state

    def _rebuild_eval(self) -> None:
        from flax import nnx

        from tljax import methods
        from tljax.models import build_classifier
        from tljax.train import build_net, make_eval_step

        hp = self._method_hparams() if self.method_used_ == self.method else {}
        method = methods.get(self.method_used_, **hp)
        model = build_classifier(
            "mlp",
            (self.n_features_in_,),
            len(self.classes_),
            rngs=nnx.Rngs(0),
            hidden=tuple(int(h) for h in self.hidden),
        )
        graphs, _, _ = build_net(model, method, seed=0, num_classes=len(self.classes_))
        self._method_obj = method
        self._eval_fn = jax.jit(make_eval_step(graphs))

    def _member_logits(self, X) -> list[np.ndarray]:
        from tljax import evaluate

        check_is_fitted(self, "_members")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        if getattr(self, "_eval_fn", None) is None:
            self._rebuild_eval()
        out = []
        for params, rest in self._members:
            if self._method_obj.eval_state is not None:  # e.g. ADDA's target encoder
                params, rest = self._method_obj.eval_state(params, rest, domain="target")
            logits, _ = evaluate.predict(self._eval_fn, params, rest, X, batch_size=512)
            out.append(logits.astype(np.float64))
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))``, columns in ``classes_`` order; the
        mean of the members' softmax for ``n_seeds > 1``."""
        probs = []
        for logits in self._member_logits(X):
            z = np.exp(logits - logits.max(-1, keepdims=True))
            probs.append(z / z.sum(-1, keepdims=True))
        return np.mean(probs, axis=0)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X) -> np.ndarray:
        """The most probable class label of each row."""
        proba = self.predict_proba(X)  # first: NotFittedError before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]


# ---------------------------------------------------------------------------------------
# Model selection without target labels
# ---------------------------------------------------------------------------------------

SCORER_RULES = {
    "source_val": "accuracy on the labelled (source) rows of the validation fold",
    "entropy": "minus the mean prediction entropy on target rows (tljax.evaluate)",
    "im": "information maximization on target rows",
    "snd": "soft neighborhood density on target rows (Saito et al. 2021)",
}


def _final(estimator):
    """The last step of a Pipeline, or the estimator itself."""
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def selection_scorer(rule: str = "source_val", *, unlabeled=-1):
    """A GridSearchCV ``scoring`` callable that ranks candidates without target labels.

    ``scorer(estimator, X, y)`` reads the validation fold's rows: labelled ones (source)
    for ``"source_val"``; rows labelled ``unlabeled`` (held-out target, when the target is
    stacked into ``X``, see :mod:`tljax.sklearn`) for the unsupervised rules, which are
    :mod:`tljax.evaluate`'s model-selection scores on the predicted probabilities
    (larger is better). A fold without target rows (target given as ``X_target``) falls
    back to the target inputs the final estimator trained on (``X_target_``), passed to
    the final estimator directly (it is already in its input space).

    Args:
      rule: one of :data:`SCORER_RULES`.
      unlabeled: the marker of target rows (the estimator's ``unlabeled``).

    Returns:
      ``scorer(estimator, X, y) -> float``.

    Raises:
      ValueError: for an unknown rule; when called, if the fold (and estimator) give no
        rows to score.
    """
    from tljax import evaluate

    if rule not in SCORER_RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; valid: {sorted(SCORER_RULES)}.")

    def scorer(estimator, X, y=None) -> float:
        y = np.asarray(y) if y is not None else None
        mask = np.zeros(len(X), bool) if y is None else _marked(y, unlabeled)
        if rule == "source_val":
            if y is None or (~mask).sum() == 0:
                raise ValueError("selection_scorer('source_val') needs labelled rows in the fold.")
            idx = np.flatnonzero(~mask)
            return float(np.mean(estimator.predict(_take(X, idx)) == y[idx]))
        if mask.any():
            proba = estimator.predict_proba(_take(X, np.flatnonzero(mask)))
        else:
            final = _final(estimator)
            xt = getattr(final, "X_target_", None)
            if xt is None:
                raise ValueError(
                    f"selection_scorer({rule!r}) found no target rows (label "
                    f"{unlabeled!r}) in the fold and the estimator kept no X_target_."
                )
            proba = final.predict_proba(xt)
        logits = np.log(np.clip(proba, 1e-12, None))
        if rule == "entropy":
            return evaluate.neg_entropy_score(logits)
        if rule == "im":
            return evaluate.information_maximization_score(logits)
        return evaluate.snd_score(None, logits)

    scorer.__name__ = f"selection_scorer_{rule}"
    return scorer


def _marked(y: np.ndarray, unlabeled) -> np.ndarray:
    """Boolean mask of the rows of ``y`` labelled ``unlabeled`` (none if it is None)."""
    if unlabeled is None:
        return np.zeros(len(y), bool)
    if y.dtype.kind in "iufb":
        return np.asarray(y == unlabeled, bool).reshape(-1)
    return np.asarray(y.astype(object) == unlabeled, bool).reshape(-1)


def _take(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]
