"""tljax.sklearn: DomainAdaptationClassifier and selection_scorer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from tljax.data.toys import two_moons_task
from tljax.sklearn import DomainAdaptationClassifier, selection_scorer

# Small and fast: a few steps of DANN with 8-unit layers.
FAST = dict(method="dann", hidden=(8,), steps=15, batch_size=16, lr=1e-2, method_hidden=(8,))


@pytest.fixture(scope="module")
def moons():
    t = two_moons_task(n_train=80, n_test=40)
    return t.source.train.x, t.source.train.y, t.target.train.x, t.target.test.x, t.target.test.y


@pytest.fixture(scope="module")
def fitted(moons):
    xs, ys, xt, _, _ = moons
    labels = np.array(["upper", "lower"])[ys]  # any label values; sorted -> lower, upper
    return DomainAdaptationClassifier(**FAST).fit(xs, labels, X_target=xt)


def test_predict_proba_shapes_and_classes(fitted, moons):
    _, _, _, xtt, ytt = moons
    assert fitted.classes_.tolist() == ["lower", "upper"]
    assert fitted.n_features_in_ == 2 and fitted.method_used_ == "dann"
    proba = fitted.predict_proba(xtt)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    pred = fitted.predict(xtt)
    assert set(pred) <= {"lower", "upper"}
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    acc = fitted.score(xtt, np.array(["upper", "lower"])[ytt])
    assert acc == np.mean(pred == np.array(["upper", "lower"])[ytt])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((3, 5)))


def test_pickle_round_trip(fitted, moons):
    again = pickle.loads(pickle.dumps(fitted))  # compiled functions are rebuilt
    np.testing.assert_allclose(again.predict_proba(moons[3]), fitted.predict_proba(moons[3]))


def test_stacked_target_rows_equal_the_fit_parameter(fitted, moons):
    """fit(X_s, y_s, X_target=X_t) and fit(vstack, y with -1 rows) train the same model."""
    xs, ys, xt, xtt, _ = moons
    labels = np.array(["upper", "lower"], dtype=object)[ys]
    x = np.concatenate([xs, xt])
    y = np.concatenate([labels, np.full(len(xt), -1, dtype=object)])
    stacked = DomainAdaptationClassifier(**FAST).fit(x, y)
    np.testing.assert_allclose(stacked.predict_proba(xtt), fitted.predict_proba(xtt), atol=1e-6)
    np.testing.assert_array_equal(stacked.X_target_, fitted.X_target_)


def test_params_clone_and_method_hparams():
    est = DomainAdaptationClassifier(method="dann", grl_max_iters=250.0, method_hidden=(4,))
    params = est.get_params()
    assert params["grl_max_iters"] == 250.0 and params["method_hidden"] == (4,)
    assert params["hidden"] == (64, 64)  # the backbone's, not DANN's discriminator
    c = clone(est)
    assert c.get_params() == params
    c.set_params(lr=0.5, grl_alpha=2.0)  # a method hparam not given to the constructor
    assert c.lr == 0.5 and c._method_hparams() == {
        "grl_max_iters": 250.0,
        "hidden": (4,),
        "grl_alpha": 2.0,
    }
    assert clone(c).get_params()["grl_alpha"] == 2.0
    with pytest.raises(ValueError, match="no sub-estimators"):
        c.set_params(foo__bar=1)


def test_errors(moons):
    xs, ys, xt, _, _ = moons
    with pytest.raises(ValueError, match="at least 2 classes"):
        DomainAdaptationClassifier(**FAST).fit(xs, np.zeros(len(xs)), X_target=xt)
    with pytest.raises(ValueError, match="no labelled source example"):
        DomainAdaptationClassifier(**FAST).fit(xs, np.full(len(xs), -1))
    with pytest.raises(ValueError, match="Unknown method 'dan_n'"):
        DomainAdaptationClassifier(**{**FAST, "method": "dan_n"}).fit(xs, ys, X_target=xt)
    with pytest.raises(ValueError, match="n_seeds must be an integer >= 1, got 0"):
        DomainAdaptationClassifier(**{**FAST, "n_seeds": 0}).fit(xs, ys, X_target=xt)
    with pytest.raises(ValueError, match="Unknown selection rule 'oracle'"):
        selection_scorer("oracle")


def test_no_target_trains_source_only(moons):
    xs, ys, _, xtt, _ = moons
    est = DomainAdaptationClassifier(**FAST).fit(xs, ys)
    assert est.method_used_ == "source_only" and est.X_target_ is None
    assert est.predict(xtt).shape == (40,)


def test_pipeline_and_grid_search_with_selection_scorer(moons):
    """StandardScaler -> estimator; the target stacked into X with label -1, so the
    scaler transforms it and each CV fold holds out target rows to score on."""
    xs, ys, xt, xtt, _ = moons
    x = np.concatenate([xs, xt])
    y = np.concatenate([ys, np.full(len(xt), -1)])
    pipe = make_pipeline(StandardScaler(), DomainAdaptationClassifier(**FAST))
    # One seeded split (2 candidates + the refit: 3 fits, to keep the test fast).
    cv = StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    search = GridSearchCV(
        pipe,
        {"domainadaptationclassifier__lr": [1e-3, 3e-2]},
        scoring={"entropy": selection_scorer("entropy"), "src": selection_scorer("source_val")},
        refit="entropy",
        cv=cv,
    )
    search.fit(x, y)
    scores = search.cv_results_["mean_test_entropy"]
    assert scores.shape == (2,) and np.isfinite(scores).all() and (scores <= 0).all()
    assert search.best_index_ == int(np.argmax(scores))
    src = search.cv_results_["mean_test_src"]
    assert ((0 <= src) & (src <= 1)).all()
    best = search.best_estimator_
    assert best.predict(xtt).shape == (40,)
    # The final step trained on the scaled target rows (the scaler saw them too).
    final = best[-1]
    np.testing.assert_allclose(final.X_target_, best[0].transform(xt), atol=1e-6)
    # A fold without target rows: the unsupervised rules use the trained-on target.
    for rule in ("snd", "im"):
        assert np.isfinite(selection_scorer(rule)(best, xs[:10], ys[:10]))


def test_n_seeds_vmapped_equals_separate_seeds_averaged(fitted, moons):
    """Members seed and seed+1, vmapped: each is the model n_seeds=1 trains with its seed
    (``fitted`` is seed 0), and predict_proba is their mean."""
    xs, ys, xt, xtt, _ = moons
    labels = np.array(["upper", "lower"])[ys]
    both = DomainAdaptationClassifier(**FAST, n_seeds=2).fit(xs, labels, X_target=xt)
    one = DomainAdaptationClassifier(**FAST, seed=1).fit(xs, labels, X_target=xt)
    sep = [fitted.predict_proba(xtt), one.predict_proba(xtt)]
    assert not np.allclose(sep[0], sep[1], atol=1e-3)  # the members differ
    np.testing.assert_allclose(both.predict_proba(xtt), np.mean(sep, axis=0), atol=1e-4)


def _check_estimator_instance():
    # Default DANN hyperparameters; enough steps for the accuracy check on blobs.
    # unlabeled=None: the checks' label sets include -1, the default target marker.
    return DomainAdaptationClassifier(method="dann", hidden=(8,), steps=30, lr=0.05, unlabeled=None)


@pytest.mark.slow
@parametrize_with_checks([_check_estimator_instance()])
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's estimator checks (no target data: source_only semantics)."""
    check(estimator)
