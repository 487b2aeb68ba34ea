"""Multi-domain tasks (domain generalization, multi-source DA): task construction, the
domain-major batches, the DG methods' objectives against independent NumPy computations
from the model's own outputs, and end-to-end runs with DomainBed's selection scores."""

import json

import jax
import numpy as np
import pytest

from tljax import loop
from tljax.config import base_config
from tljax.data import domain_sets
from tljax.data.core import Domain, Split
from tljax.data.multi_domain import MultiDomainStream, MultiDomainTask
from tljax.data.tasks import get_task

K, C, DIM = 3, 3, 4


def _blobs(*, data_seed, image_size=None, shift: float = 1.0):
    """Three domains of Gaussian class blobs, each domain moved by ``shift·k``."""
    del image_size
    rng = np.random.default_rng(data_seed)
    centres = rng.normal(size=(C, DIM)) * 3
    domains = []
    for k in range(K):

        def split(n, k=k):
            y = rng.integers(0, C, n).astype(np.int32)
            x = (centres[y] + rng.normal(size=(n, DIM)) + shift * k).astype(np.float32)
            return Split(x, y)

        domains.append(Domain(f"d{k}", split(96), split(24)))
    return domain_sets.DomainSet("blobs", tuple(domains), C)


domain_sets.register_domain_set("test_blobs", _blobs, "Gaussian blobs for tests")


def _config(method: str, setting: str = "dg", **task_kwargs):
    c = base_config()
    c.data.task = f"{setting}/test_blobs"
    c.data.task_kwargs = task_kwargs
    c.data.batch_size = 8
    c.data.source_val_fraction = 0.0
    c.model.backbone = "mlp"
    c.model.backbone_kwargs.hidden = (16,)
    c.method.name = method
    c.optim.optimizer = "adam"
    c.optim.schedule = "constant"
    c.optim.lr = 1e-2
    c.optim.weight_decay = 0.0
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 10
    c.train.checkpoint_every = 20
    c.train.eval_batch_size = 64
    c.train.progress = False
    c.train.tensorboard = False
    return c


def test_dg_task_holds_out_the_test_domain_and_swaps_its_splits():
    task = get_task("dg/test_blobs", test="d1")
    assert isinstance(task, MultiDomainTask)
    raw = _blobs(data_seed=0)
    assert [d.name for d in task.sources] == ["d0", "d2"]
    # DomainBed: reported on the held-out in split (80%), the oracle reads its out split.
    np.testing.assert_array_equal(task.target.test.x, raw.domains[1].train.x)
    np.testing.assert_array_equal(task.target.train.x, raw.domains[1].test.x)
    np.testing.assert_array_equal(
        task.source.train.x, np.concatenate([raw.domains[0].train.x, raw.domains[2].train.x])
    )
    loo = get_task("dg/test_blobs", test="d1", val="d0")
    assert [d.name for d in loo.sources] == ["d2"] and loo.val_domain.name == "d0"
    msda = get_task("msda/test_blobs", target="d0")
    assert msda.setting == "msda" and msda.target.name == "d0"
    np.testing.assert_array_equal(msda.target.train.x, raw.domains[0].train.x)


def test_loo_validation_run_evaluates_its_val_domain_and_never_the_test_domain():
    """A run holding out test d1 and val d0 scores d0 (``val_domain_acc``, and the target
    keys) and never evaluates d1: its accuracy comes from the run holding out d1 alone."""
    from tljax.domains import evaluate_domains, evaluated_on

    raw = _blobs(data_seed=0)
    w = np.random.default_rng(0).normal(size=(raw.domains[0].train.x.shape[1], 3))
    seen = []

    def run(x, role):  # a fixed linear classifier; records every array it is asked about
        seen.append(x)
        return x @ w, x

    def acc(split):
        return float(np.mean(np.argmax(split.x @ w, -1) == split.y))

    loo = evaluate_domains(get_task("dg/test_blobs", test="d1", val="d0"), run)
    assert (
        loo["val_domain_acc"] == loo["target_test_acc"] == pytest.approx(acc(raw.domains[0].train))
    )
    assert loo["target_out_acc"] == pytest.approx(acc(raw.domains[0].test))
    assert loo["val_acc/d2"] == pytest.approx(acc(raw.domains[2].test))
    held_out = {raw.domains[1].train.x.tobytes(), raw.domains[1].test.x.tobytes()}
    assert not any(x.tobytes() in held_out for x in seen)
    assert (
        "d0/in (leave-one-domain-out validation; d1 held out"
        in evaluated_on(get_task("dg/test_blobs", test="d1", val="d0"))["target"]
    )
    # Without val: the held-out domain's in split is the test, its out split the oracle's.
    dg = evaluate_domains(get_task("dg/test_blobs", test="d1"), run)
    assert dg["target_test_acc"] == pytest.approx(acc(raw.domains[1].train))
    assert dg["target_out_acc"] == pytest.approx(acc(raw.domains[1].test))
    assert "val_domain_acc" not in dg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(test="d9"), "not a domain of 'test_blobs'"),
        (dict(test="d1", val="d1"), "must differ"),
        (dict(bogus=1), "unexpected option"),
    ],
)
def test_bad_task_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_task("dg/test_blobs", **kwargs)


def test_stream_is_domain_major_and_reproducible():
    task = get_task("msda/test_blobs")
    stream = MultiDomainStream(task, 8, seed=3)
    batch = next(stream)
    x, d = batch["source"]["image"], batch["source"]["domain"]
    assert x.shape == (16, DIM) and batch["target"]["image"].shape == (8, DIM)
    np.testing.assert_array_equal(d, np.repeat([0, 1], 8))
    for k, dom in enumerate(task.sources):  # each block's rows come from its own domain
        rows = {r.tobytes() for r in dom.train.x}
        assert all(r.tobytes() in rows for r in x[8 * k : 8 * (k + 1)])
    again = MultiDomainStream(task, 8, seed=3, position=0)
    np.testing.assert_array_equal(next(again)["source"]["image"], x)
    stream.set_state({"position": 5})
    ref = MultiDomainStream(task, 8, seed=3)
    for _ in range(5):
        next(ref)
    np.testing.assert_array_equal(next(stream)["source"]["label"], next(ref)["source"]["label"])


def _first_step(method: str, **hparams):
    """The step-0 metrics, and the model's logits/features on that batch computed apart."""
    c = _config(method)
    c.method.hparams = hparams
    parts = loop.build(c)
    batch = next(loop.make_stream(c, parts, seed=c.seed))
    from flax import nnx

    net = nnx.merge(parts["graphs"].train_graph, parts["state"].params, parts["state"].rest)
    logits, out = net.model(batch["source"]["image"])
    _, metrics = jax.jit(parts["train_step"])(parts["state"], batch)
    return (
        {k: float(v) for k, v in metrics.items()},
        np.asarray(logits, np.float64),
        np.asarray(out["features"], np.float64),
        batch["source"]["label"],
    )


def _risks(logits, labels, k):
    z = logits - logits.max(1, keepdims=True)
    ce = np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]
    return ce.reshape(k, -1).mean(1)


def test_irm_objective_matches_numpy(highest_precision):
    m, logits, _, y = _first_step("irm", penalty_weight=50.0, anneal_iters=0)
    k = K - 1

    def dw(z, t):  # d/dw CE(w z, t) at w = 1
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return np.mean((p * z).sum(1) - z[np.arange(len(t)), t])

    zk, yk = logits.reshape(k, -1, C), y.reshape(k, -1)
    pen = np.mean([dw(zk[i][0::2], yk[i][0::2]) * dw(zk[i][1::2], yk[i][1::2]) for i in range(k)])
    nll = _risks(logits, y, k).mean()
    # anneal_iters=0: the full weight from step 0 and the loss divided by it (DomainBed).
    np.testing.assert_allclose(m["loss"], (nll + 50.0 * pen) / 50.0, rtol=1e-5)
    np.testing.assert_allclose(m["irm/penalty"], pen, rtol=1e-4, atol=1e-7)


def test_vrex_and_group_dro_match_numpy(highest_precision):
    m, logits, _, y = _first_step("vrex", penalty_weight=7.0, anneal_iters=0)
    r = _risks(logits, y, K - 1)
    np.testing.assert_allclose(m["loss"], r.mean() + 7.0 * r.var(), rtol=1e-5)
    m, logits, _, y = _first_step("group_dro", eta=0.5)
    r = _risks(logits, y, K - 1)
    q = np.exp(0.5 * r) / np.exp(0.5 * r).sum()  # uniform start, one ascent step
    np.testing.assert_allclose(m["loss"], q @ r, rtol=1e-5)
    np.testing.assert_allclose(m["group_dro/q_max"], q.max(), rtol=1e-5)


def test_dg_coral_matches_domainbed_formula(highest_precision):
    m, logits, f, y = _first_step("dg_coral")
    a, b = f.reshape(K - 1, -1, f.shape[-1])

    def cov(x):
        xc = x - x.mean(0)
        return xc.T @ xc / (len(x) - 1)

    pen = np.mean((a.mean(0) - b.mean(0)) ** 2) + np.mean((cov(a) - cov(b)) ** 2)
    np.testing.assert_allclose(m["method_loss"], pen, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(m["task_loss"], _risks(logits, y, K - 1).mean(), rtol=1e-5)


def test_m3sda_step_matches_numpy_and_logs_the_feature_spread(highest_precision):
    """M³SDA's first step on an msda task: the method loss is the moment distance of
    NumPy's reference (sources against the target and each other), and the logged
    ``m3sda/feature_std`` (the collapse diagnostic: 0 for constant features) is the mean
    per-feature standard deviation over all domains' features."""
    from flax import nnx

    from tests.losses.test_dg_alignment import ref_m3sda

    c = _config("m3sda", "msda")
    parts = loop.build(c)
    batch = next(loop.make_stream(c, parts, seed=c.seed))
    net = nnx.merge(parts["graphs"].train_graph, parts["state"].params, parts["state"].rest)
    xs, xt = batch["source"]["image"], batch["target"]["image"]
    _, out = net.model(np.concatenate([xs, xt]))
    f = np.asarray(out["features"], np.float64)
    fs, ft = f[: len(xs)], f[len(xs) :]
    _, m = jax.jit(parts["train_step"])(parts["state"], batch)
    want = ref_m3sda(list(fs.reshape(K - 1, -1, f.shape[-1])), ft, 2, "code")
    np.testing.assert_allclose(m["method_loss"], want, rtol=1e-4)
    np.testing.assert_allclose(m["m3sda/feature_std"], f.std(0).mean(), rtol=1e-4)
    assert want > 0 and float(m["m3sda/feature_std"]) > 0


@pytest.mark.parametrize("method", ["dg_mmd", "dg_dann", "cdann", "mixup", "m3sda", "ms_dann"])
def test_dg_method_term_reaches_the_features(method):
    """One step with the method's weight 1 and 0 moves the backbone differently: the
    alignment/adversarial term's gradient reaches the features (Mixup: its objective
    differs from ERM's). M³SDA and multi-source DANN on an msda task."""

    def backbone_after(weight, name):
        c = _config(name, "msda" if name in ("m3sda", "ms_dann") else "dg")
        c.method.weight = weight
        c.optim.optimizer = "sgd"  # Adam's first update is lr·sign(g): it could hide a change
        if name in ("dg_dann", "cdann", "ms_dann"):  # the warm start is 0 at step 0
            c.method.hparams = dict(grl_schedule="constant")
        parts = loop.build(c)
        batch = next(loop.make_stream(c, parts, seed=c.seed))
        state, _ = jax.jit(parts["train_step"])(parts["state"], batch)
        return jax.tree.leaves(state.params["model"]["backbone"])

    other = backbone_after(0.0, method) if method != "mixup" else backbone_after(1.0, "erm")
    moved = backbone_after(1.0, method)
    assert any(not np.allclose(a, b) for a, b in zip(moved, other))


def test_dg_refuses_a_method_that_needs_target_data():
    with pytest.raises(ValueError, match="domain generalization"):
        loop.build(_config("dann"))


def test_a_dg_method_on_a_single_source_task_is_refused():
    c = _config("irm")
    c.data.task = "moons"
    c.data.task_kwargs = {}
    with pytest.raises(ValueError, match="needs several labelled training domains"):
        loop.build(c)


@pytest.mark.parametrize(
    "method", ["erm", "irm", "vrex", "group_dro", "mixup", "dg_coral", "dg_mmd", "dg_dann", "cdann"]
)
def test_one_training_domain_as_in_a_leave_one_domain_out_run(method, highest_precision):
    """Held out: test and val, so one domain trains (DomainBed's LOO runs of a 3-domain
    set). The methods run; their extra terms are what one domain makes of them: VREx's
    variance, the CORAL/MMD pair mean and the 1-way domain classifier's loss are 0, IRM's
    penalty is the one domain's, GroupDRO's weight is 1."""
    c = _config(method, test="d2", val="d1")
    if method in ("dg_dann", "cdann"):
        c.method.hparams = dict(grl_schedule="constant")
    parts = loop.build(c)
    assert len(parts["task"].sources) == 1
    batch = next(loop.make_stream(c, parts, seed=c.seed))
    assert set(np.asarray(batch["source"]["domain"]).tolist()) == {0}
    state, metrics = jax.jit(parts["train_step"])(parts["state"], batch)
    m = {k: float(v) for k, v in metrics.items()}
    assert all(np.isfinite(v) for v in m.values()), m
    if method in ("vrex", "dg_coral", "dg_mmd", "dg_dann", "cdann"):
        assert m["method_loss"] == 0.0, m
    if method == "irm":
        assert m["irm/penalty"] > 0.0
    moved = jax.tree.leaves(state.params["model"]["backbone"])
    before = jax.tree.leaves(parts["state"].params["model"]["backbone"])
    assert any(not np.allclose(a, b) for a, b in zip(moved, before))


def test_irm_resets_the_optimizer_at_the_end_of_annealing():
    c = _config("irm", test="d2")
    c.method.hparams = dict(penalty_weight=10.0, anneal_iters=2)
    parts = loop.build(c)
    step = jax.jit(parts["train_step"])
    stream = loop.make_stream(c, parts, seed=0)
    state = parts["state"]
    counts = []
    for _ in range(4):
        state, _ = step(state, next(stream))
        counts.append(
            int(max(np.max(x) for x in jax.tree.leaves(state.opt_state) if np.ndim(x) == 0))
        )
    assert counts == [1, 2, 1, 2]  # Adam's count restarts at step 2, as a new torch Adam


@pytest.mark.slow
@pytest.mark.parametrize("method, setting", [("irm", "dg"), ("m3sda", "msda"), ("ms_dann", "msda")])
def test_end_to_end_results_and_selection(tmp_path, method, setting):
    c = _config(method, setting)
    res = loop.train_and_evaluate(c, str(tmp_path))
    assert res["steps"] == 20
    for key in ("train_domains_val_acc", "val_acc/d0", "target_test_acc"):
        assert 0.0 <= res[key] <= 1.0
    rules = json.load(open(tmp_path / "results.json"))["by_selection_rule"]
    assert "train_domain_val" in rules
    assert ("test_domain_val" in rules) == (setting == "dg")
