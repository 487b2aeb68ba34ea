"""Training with a method has its intended effect on a shifted toy task.

Alignment methods shrink the measured source/target feature gap relative to source-only
training (same model, data, optimizer and steps); the others show their own effect: MCC
lowers target class confusion, entropy minimisation lowers target entropy, AFN enlarges
feature norms, BSP lowers the top singular value of the features (relative to DANN).
The task (``helpers.shifted_blobs_task``) shifts four nuisance input dimensions; features
are the eval-mode model's on the train splits. The gap is measured twice: the proxy
A-distance (scale-free, linear domain classifier) and ``linear_mmd2`` divided by the total
feature variance (so shrinking all features does not count as alignment).
"""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from tests.methods.helpers import train_on_toy
from tljax import evaluate
from tljax.losses.entropy import entropy
from tljax.losses.mcc import mcc

ADV = dict(hidden=(32,), grl_max_iters=100.0)  # GRL warm start over 100 of the 300 steps
ALIGNMENT = {
    "dann": (ADV, 1.0),
    "cdan": (ADV, 1.0),
    # IWAN's importance-weighted adversarial loss aligns on this closed-set toy too.
    "iwan": (ADV, 1.0),
    # So does ETN's (the label-aware auxiliary weights).
    "etn": (ADV, 1.0),
    # Margin γ=1, not the default 4: with γ=4 this adversarial game on the toy ends on
    # either side of the thresholds by chance (seeds 0..4 on a CPU: 2 of 5 pass; seed 0
    # failed on an H200, whose TF32 matmuls perturb the run like another seed would).
    # With γ=1 seeds 0..9 all pass on a CPU, the nearest by 0.03 in A-distance and 0.11
    # in the MMD ratio (seed 0, the one tested: by 0.18 and 0.42).
    "mdd": (dict(width=32, grl_max_iters=100.0, grl_hi=1.0, margin=1.0), 1.0),
    "dan": (None, 1.0),
    "jan": (None, 1.0),
    # The paper's normalisation 1/(4 d²) needs a large trade-off at d = 16.
    "coral": (None, 100.0),
    "mcd": (None, 1.0),
}


@functools.cache
def trained(name, weight=1.0, hparams_key=None):
    hparams = dict(hparams_key) if hparams_key else None
    return train_on_toy(name, hparams=hparams, weight=weight)


def _key(hparams):
    return tuple(sorted(hparams.items())) if hparams else None


def gap(fs, ft):
    pad = np.mean([evaluate.proxy_a_distance(fs, ft, seed=s) for s in range(2)])
    mmd = evaluate.linear_mmd2(fs, ft) / (fs.var(0).sum() + ft.var(0).sum())
    return pad, mmd


@pytest.mark.parametrize("name", sorted(ALIGNMENT))
def test_alignment_shrinks_the_domain_gap(name):
    hparams, weight = ALIGNMENT[name]
    pad0, mmd0 = gap(*trained("source_only")[:2])
    pad, mmd = gap(*trained(name, weight, _key(hparams))[:2])
    assert pad < pad0 - 0.05, (name, pad, pad0)
    assert mmd < 0.5 * mmd0, (name, mmd, mmd0)


def test_mcc_lowers_target_class_confusion():
    confusion = lambda logits: float(mcc(jnp.asarray(logits)))
    assert confusion(trained("mcc")[2]) < 0.7 * confusion(trained("source_only")[2])


def test_entropy_minimisation_lowers_target_entropy():
    ent = lambda logits: float(entropy(jnp.asarray(logits)))
    assert ent(trained("entropy")[2]) < 0.7 * ent(trained("source_only")[2])


def test_afn_enlarges_feature_norms():
    norm = lambda f: float(np.linalg.norm(f, axis=1).mean())
    assert norm(trained("afn", 0.05)[1]) > 2 * norm(trained("source_only")[1])


def test_bsp_lowers_the_top_singular_value_relative_to_dann():
    top = lambda f: float(np.linalg.svd(f[:256], compute_uv=False)[0])
    bsp = trained("bsp", 1.0, _key(dict(ADV, bsp_weight=1e-2)))[1]
    dann = trained("dann", 1.0, _key(ADV))[1]
    assert top(bsp) < 0.5 * top(dann)
