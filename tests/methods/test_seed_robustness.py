"""No seed of DANN, DAN, MDD or CDAN collapses far below source only on a 2-D shift.

Issue 14 item 7 (``docs/seeds.md``, "Seeds that collapse on 2-D shifts"): the covariate
shift of :mod:`tljax.data.shift2d` (pinwheel labels, target moved by ``offset = 2``), an
MLP 2→64→64, Adam 1e-3, 32 + 32 points per step (``configs/seeds_shift2d.py``), five
training seeds vmapped in one program (:mod:`tljax.multiseed`). The adversarial heads are
the config's small ones (32 units), fast, with each method's default schedule (GRL warm
start over N = 1000 steps); DAN has the config's ramp of the MMD term. The worst seed of each
method must stay within ``MAX_DROP[method]`` of source only's mean target accuracy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import seeds_shift2d
from tljax import multiseed
from tljax.losses.mmd import mk_mmd
from tljax.methods import dan
from tljax.methods.base import Outputs

SEEDS = range(5)
STEPS = 1000
# How far (in accuracy) the worst seed may fall below source only's mean. Measured with
# this test (5 seeds, 1000 steps, 2 CPU cores): DANN 0.011, MDD 0.006, CDAN 0.006 below;
# DAN 0.115, and 0.227 without the ramp (TLlib's default), every seed: DAN's alignment
# bias under a covariate shift, not seed instability (see tljax/methods/dan.py). Bounds:
# about 4x the adversarial methods' drop; DAN's drop plus a margin that still fails the
# unramped DAN.
MAX_DROP = {"dann": 0.04, "mdd": 0.04, "cdan": 0.04, "dan": 0.17}


def _target_accs(method):
    c = seeds_shift2d.get_config(f"{method},covariate")
    c.train.steps = STEPS
    c.train.eval_every = STEPS
    c.train.checkpoint_every = STEPS
    c.train.log_every = STEPS
    return np.array([r["target_test_acc"] for r in multiseed.train_seeds(c, SEEDS)])


@pytest.fixture(scope="module")
def source_only():
    return _target_accs("source_only")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dann", "dan", "mdd", "cdan"])
def test_worst_seed_stays_near_source_only(method, source_only):
    accs = _target_accs(method)
    drop = source_only.mean() - accs.min()
    assert drop <= MAX_DROP[method], (
        f"{method}: worst of {len(accs)} seeds {accs.min():.3f} is {drop:.3f} below source "
        f"only's mean {source_only.mean():.3f} (per seed: {np.round(accs, 3).tolist()}; "
        f"source only: {np.round(source_only, 3).tolist()})"
    )


def test_dan_ramps_its_mmd_term_like_the_grl():
    fs, ft = jax.random.normal(jax.random.key(0), (2, 8, 4))
    src, tgt = Outputs(None, fs, {}), Outputs(None, ft + 1.0, {})
    mmd = float(mk_mmd(fs, ft + 1.0, linear=True))
    loss = lambda m, step: float(m.loss(None, src=src, tgt=tgt, rng=None, step=step)[0])
    ramped, tllib = dan.make(ramp_max_iters=1000.0), dan.make()
    assert loss(ramped, 0) == 0.0
    assert loss(ramped, 1000) == pytest.approx(float(jnp.tanh(0.5)) * mmd, rel=1e-5)
    assert loss(tllib, 0) == pytest.approx(mmd, rel=1e-6)
    assert tllib.hparams["ramp_max_iters"] == 0.0  # off by default, as TLlib
