"""No seed of an adversarial or kernel method collapses far below source only on a 2-D shift.

Issue 14 item 7 (``docs/seeds.md``, "Seeds that collapse on 2-D shifts"): the covariate
shift of :mod:`tljax.data.shift2d` (pinwheel labels, target moved by ``offset = 2``), an
MLP 2→64→64, Adam 1e-3, 32 + 32 points per step (``configs/seeds_shift2d.py``), five
training seeds vmapped in one program (:mod:`tljax.multiseed`). The adversarial heads are
the config's small ones (32 units), fast, with each method's default schedule (GRL warm
start over N = 1000 steps); DAN and JAN have the config's ramp of their MMD term (JAN
also its weight 0.1), BSP the config's ``bsp_weight = 2e-6``, ADDA 1000 source steps then
1000 adversarial ones with the config's source anchor (``source_anchor = 100``). The worst
seed of each method must stay within ``MAX_DROP[method]`` of source only's mean target
accuracy. The paper's ADDA (``adda_paper``: no anchor) falls far below on every seed (its
adversarial stage drifts; see ``docs/seeds.md``): a strict expected failure, so a fix of
the unanchored mechanism shows up as XPASS.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import seeds_shift2d
from tljax import multiseed
from tljax.losses.mmd import jmmd, mk_mmd
from tljax.methods import dan, jan
from tljax.methods.base import Outputs

SEEDS = range(5)
# How far (in accuracy) the worst seed may fall below source only's mean. Measured with
# this test (5 seeds, 1000 steps, 2 CPU cores): DANN 0.011, MDD 0.006, CDAN 0.006, BSP
# 0.007, JAN 0.013, MCD 0.028 below; DAN 0.115, and 0.227 without the ramp (TLlib's default), every
# seed: DAN's alignment bias under a covariate shift, not seed instability (see
# tljax/methods/dan.py). BSP at TLlib's bsp_weight = 2e-4: 0.374 (2e-5: 0.128), which
# fails; JAN at weight 1: 0.257 with its ramp, 0.284 without, which fail. Bounds: about 4x
# the adversarial methods' drop (MCD's 3x); DAN's drop plus a margin that still fails the
# unramped DAN. ADDA with the source anchor: 0.002 below at λ = 100 (0.017 at 30, 0.085 at
# 10, 0.46 at 1); the paper's ADDA (0.90 below) is expected to fail.
MAX_DROP = {"dann": 0.04, "mdd": 0.04, "cdan": 0.04, "dan": 0.17, "bsp": 0.04, "mcd": 0.08}
MAX_DROP.update(jan=0.04, adda=0.04, adda_paper=0.04)  # adda_paper: what a fix must reach
BIASED = {
    "adda_paper": "ADDA's target encoder drifts with no anchor to the classifier (every seed)",
}


def _target_accs(method):
    paper = method == "adda_paper"
    c = seeds_shift2d.get_config(f"{'adda' if paper else method},covariate")
    if paper:
        c.method.hparams.source_anchor = 0.0
    c.train.eval_every = c.train.checkpoint_every = c.train.log_every = c.train.steps
    return np.array([r["target_test_acc"] for r in multiseed.train_seeds(c, SEEDS)])


@pytest.fixture(scope="module")
def source_only():
    return _target_accs("source_only")


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=BIASED[m]))
        if m in BIASED
        else m
        for m in ("dann", "dan", "mdd", "cdan", "bsp", "mcd", "jan", "adda", "adda_paper")
    ],
)
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


def test_jan_ramps_its_jmmd_term_like_the_grl():
    k = jax.random.split(jax.random.key(1), 4)
    fs, ft = jax.random.normal(k[0], (8, 4)), jax.random.normal(k[1], (8, 4)) + 1.0
    zs, zt = jax.random.normal(k[2], (8, 3)), jax.random.normal(k[3], (8, 3))
    src, tgt = Outputs(zs, fs, {}), Outputs(zt, ft, {})
    ps, pt = jax.nn.softmax(zs), jax.nn.softmax(zt)
    value = float(jmmd([fs, ps], [ft, pt], sigmas=(None, 0.92)))
    loss = lambda m, step: float(m.loss(None, src=src, tgt=tgt, rng=None, step=step)[0])
    ramped, tllib = jan.make(ramp_max_iters=1000.0), jan.make()
    assert loss(ramped, 0) == 0.0
    assert loss(ramped, 1000) == pytest.approx(float(np.tanh(0.5)) * value, rel=1e-5)
    assert loss(ramped, 4000) == pytest.approx(float(np.tanh(2.0)) * value, rel=1e-5)
    assert loss(tllib, 0) == pytest.approx(value, rel=1e-6)
    assert tllib.hparams["ramp_max_iters"] == 0.0  # off by default, as TLlib
    with pytest.raises(ValueError, match="ramp_max_iters"):
        jan.make(ramp_max_iters=-1.0)
