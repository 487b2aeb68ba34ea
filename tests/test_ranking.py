"""Transferability estimators (tljax.ranking) against independent computations, and the
``experiments.rank`` command end to end on three tiny runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tljax import ranking

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=120, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    return rng, rng.normal(size=(n, d)), y


# --------------------------------------------------------------------------- LogME


def _direct_log_evidence(f, y, alpha, beta):
    """log N(y; 0, I/beta + F F^T / alpha) / n: the marginal likelihood with w integrated
    out, computed with a dense covariance (no SVD, no closed-form evidence terms)."""
    n = f.shape[0]
    cov = np.eye(n) / beta + f @ f.T / alpha
    return multivariate_normal.logpdf(y, mean=np.zeros(n), cov=cov) / n


@pytest.mark.parametrize("shape", [(60, 5), (30, 50)])  # n > d and n < d (rank-deficient)
def test_logme_is_the_maximised_evidence(shape):
    rng, _, y = _data(n=shape[0], c=3, seed=1)
    f = rng.normal(size=shape)
    # Every class linearly (noisily) encoded: for a class the features do not explain at
    # all, the maximum is at alpha -> infinity (w = 0) and the evidence is flat in alpha.
    f[:, :3] += 1.5 * np.eye(3)[y]
    out = ranking.logme_details(f, y, 3, tol=1e-10, max_iter=500)
    direct = [
        _direct_log_evidence(f, (y == k) * 1.0, a, b)
        for k, (a, b) in enumerate(zip(out["alpha"], out["beta"]))
    ]
    np.testing.assert_allclose(out["evidence"], direct, rtol=1e-9, atol=1e-9)
    assert out["score"] == pytest.approx(np.mean(direct), rel=1e-9)
    for k, (a, b) in enumerate(zip(out["alpha"], out["beta"])):
        yk = (y == k) * 1.0
        np.testing.assert_allclose(ranking.log_evidence(f, yk, a, b), direct[k], rtol=1e-9)
        for fa, fb in [(1.3, 1), (0.7, 1), (1, 1.3), (1, 0.7), (1.2, 1.2), (0.8, 1.25)]:
            assert _direct_log_evidence(f, yk, a * fa, b * fb) < direct[k]


def test_logme_default_tolerance_close_to_converged():
    rng, f, y = _data(seed=2)
    f[:, :3] += 2 * np.eye(3)[y]
    loose = ranking.logme(f, y, 3)
    assert loose == pytest.approx(ranking.logme(f, y, 3, tol=1e-12, max_iter=1000), abs=1e-5)


def test_logme_properties():
    rng, f, y = _data(n=150, d=6, c=3, seed=3)
    informative = f.copy()
    informative[:, :3] += 3 * np.eye(3)[y]
    assert ranking.logme(informative, y, 3) > ranking.logme(f, y, 3)
    perm = rng.permutation(len(y))
    assert ranking.logme(f[perm], y[perm], 3) == pytest.approx(ranking.logme(f, y, 3), rel=1e-10)
    # JAX arrays are accepted.
    import jax.numpy as jnp

    assert ranking.logme(jnp.asarray(informative), jnp.asarray(y), 3) == pytest.approx(
        ranking.logme(informative.astype(np.float32), y, 3), rel=1e-6
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ranking.logme(f, y, 2)
    with pytest.raises(ValueError, match="shape"):
        ranking.logme(f[:, 0], y, 3)


# --------------------------------------------------------------------------- LEEP, NCE


def _leep_loops(p, y, ct):
    n, cs = p.shape
    joint = [[0.0] * cs for _ in range(ct)]
    for i in range(n):
        for z in range(cs):
            joint[y[i]][z] += p[i, z] / n
    total = 0.0
    for i in range(n):
        s = 0.0
        for z in range(cs):
            pz = sum(joint[yy][z] for yy in range(ct))
            s += (joint[y[i]][z] / pz) * p[i, z]
        total += np.log(s)
    return total / n


def _nce_loops(z, y):
    n = len(z)
    counts = {}
    for a, b in zip(z, y):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    h = 0.0
    for (a, _), k in counts.items():
        nz = sum(v for (a2, _), v in counts.items() if a2 == a)
        h -= k / n * np.log(k / nz)
    return -h


def test_leep_and_nce_against_loops():
    rng = np.random.default_rng(4)
    n, cs, ct = 40, 5, 3
    logits = rng.normal(size=(n, cs)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, ct, n)
    assert ranking.leep(p, y, ct) == pytest.approx(_leep_loops(p, y, ct), rel=1e-12)
    z = rng.integers(0, cs, n)
    assert ranking.nce(z, y) == pytest.approx(_nce_loops(z, y), rel=1e-12)
    assert ranking.leep(p, y, ct) <= 0 and ranking.nce(z, y) <= 0


def test_leep_nce_properties():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 50)
    z = np.array([0, 2, 4])[y]  # Z determines Y (an injective relabelling)
    assert ranking.nce(z, y) == 0.0
    assert ranking.nce(z % 2, y) < 0  # labels 0 and 2 merged
    assert ranking.leep(np.eye(5)[z], y, 3) == pytest.approx(0.0, abs=1e-12)
    # An unused source class (3) gets P(y|z)=0 without a NaN.
    p = np.full((50, 5), 0.25)
    p[:, 3] = 0.0
    assert np.isfinite(ranking.leep(p, y, 3))
    with pytest.raises(ValueError, match="softmax"):
        ranking.leep(p * 2, y, 3)
    with pytest.raises(ValueError, match="empty"):
        ranking.nce(np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(ValueError, match=r"target_labels must have shape \(50,\)"):
        ranking.nce(z, y[:10])


# --------------------------------------------------------------------------- H-score


def test_h_score_against_direct_formula():
    rng, f, y = _data(n=80, d=6, c=4, seed=6)
    f[:, 0] += y
    f[:, 5] = f[:, 4]  # rank-deficient: the pseudo-inverse matters
    cov_f = np.cov(f, rowvar=False, bias=True)
    g = np.stack([f[y == k].mean(0) for k in range(4)])[y]
    cov_g = np.cov(g, rowvar=False, bias=True)
    expected = np.trace(np.linalg.pinv(cov_f) @ cov_g)
    assert ranking.h_score(f, y) == pytest.approx(expected, rel=1e-8)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert ranking.h_score(f @ q, y) == pytest.approx(expected, rel=1e-8)
    assert ranking.h_score(f, y, shrinkage=0.0) == pytest.approx(expected, rel=1e-8)
    lw = ranking.h_score(f, y, shrinkage="ledoit_wolf")
    assert np.isfinite(lw) and 0 < lw
    with pytest.raises(ValueError, match="shrinkage"):
        ranking.h_score(f, y, shrinkage="oas")


def test_h_score_ranks_informative_features_higher():
    _, f, y = _data(n=150, d=5, c=3, seed=7)
    good = f + 2 * np.eye(5)[y]
    assert ranking.h_score(good, y) > ranking.h_score(f, y)


# --------------------------------------------------------------------------- rank correlation


def test_kendall_tau():
    acc = [0.5, 0.7, 0.6, 0.9]
    assert ranking.kendall_tau([1, 3, 2, 4], acc) == pytest.approx(1.0)
    assert ranking.kendall_tau([4, 2, 3, 1], acc) == pytest.approx(-1.0)
    assert ranking.weighted_kendall_tau([1, 3, 2, 4], acc) == pytest.approx(1.0)
    assert ranking.weighted_kendall_tau([4, 2, 3, 1], acc) == pytest.approx(-1.0)
    # A swap at the top costs the weighted tau more than one at the bottom.
    top = ranking.weighted_kendall_tau([1, 2, 4, 3], [1, 2, 3, 4])
    bottom = ranking.weighted_kendall_tau([2, 1, 3, 4], [1, 2, 3, 4])
    assert top < bottom < 1.0
    with pytest.raises(ValueError, match="at least 2"):
        ranking.kendall_tau([1], [1])


# --------------------------------------------------------------------------- the command


def test_rank_command_end_to_end(tmp_path, capsys):
    from experiments import rank
    from tests.configs import tiny
    from tljax.train import train_and_evaluate

    dirs = []
    for i, steps in enumerate([2, 10, 40]):
        c = tiny.get_config("source_only,moons")
        c.train.steps = steps
        c.train.eval_every = steps
        c.train.checkpoint_every = steps
        c.train.log_every = steps
        c.seed = i
        train_and_evaluate(c, str(tmp_path / f"r{i}"))
        dirs.append(str(tmp_path / f"r{i}"))
    out = rank.rank(dirs, "moons", max_examples=300)
    assert set(out["estimators"]) == {"logme", "leep", "nce", "h_score"}
    for name, est in out["estimators"].items():
        assert len(est["scores"]) == 3 and all(np.isfinite(est["scores"])), name
        assert -1.0 <= est["kendall_tau"] <= 1.0
    accs = [json.load(open(f"{d}/results.json"))["target_test_acc"] for d in dirs]
    assert out["accuracies"] == pytest.approx(accs)
    # Given accuracies replace results.json's, and the table is written.
    out2 = rank.rank(
        dirs, "moons", accuracies=[0.1, 0.2, 0.3], max_examples=300, out=str(tmp_path / "rank.json")
    )
    assert out2["accuracies"] == [0.1, 0.2, 0.3]
    assert json.load(open(tmp_path / "rank.json"))["task"] == "moons"
    assert "weighted" in rank.format_table(out2)
    with pytest.raises(ValueError, match="3 workdirs but 2 accuracies"):
        rank.rank(dirs, "moons", accuracies=[0.1, 0.2])
    # The command line: same scores, the table on stdout.
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.rank", "--workdirs=" + ",".join(dirs)]
        + ["--task=moons", "--max_examples=300", "--accuracies=0.1,0.2,0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| estimator | Kendall tau | weighted tau |" in proc.stdout
    logme_row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| logme |"))
    tau = float(logme_row.split("|")[2])
    assert tau == pytest.approx(out2["estimators"]["logme"]["kendall_tau"], abs=1e-3)
