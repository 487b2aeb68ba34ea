r"""MCD: maximum classifier discrepancy (Saito et al., CVPR 2018).

Two classifiers on one feature extractor ``F``: ``C1`` is the model's head, ``C2`` the
method's own head (``Linear(feature_dim, num_classes)``, the same shape as ``C1``). With
``d(p1, p2) = mean |p1 − p2|`` the discrepancy of their softmax outputs on target data,
every iteration makes three kinds of update (the paper's steps, TLlib's code):

* (A) ``F, C1, C2`` minimise ``CE(C1) + CE(C2)`` on source;
* (B) ``C1, C2`` minimise ``CE(C1) + CE(C2) − λ·d`` (``F`` fixed): the classifiers
  disagree as much as possible on target while staying right on source;
* (C) ``F`` minimises ``λ·d`` (``C1``, ``C2`` fixed), repeated ``num_k`` times (4).

``λ`` is the config's ``method.weight`` (TLlib's ``--trade-off``, 1). As TLlib, steps A and
B also add ``entropy_weight · (H(C1(x_t)) + H(C2(x_t)))`` (``--trade-off-entropy 0.01``; the
paper has no entropy term: set 0). By default (``entropy="class_balance"``) ``H`` is TLlib's
MCD ``entropy`` (``tllib/alignment/mcd.py``:
``-torch.mean(torch.log(torch.mean(predictions, 0) + 1e-6))``), a term on the *batch-mean*
prediction ``p̄``: ``H = −1/C Σ_c log(p̄_c + 1e-6)``, which favours predicting all classes
equally often (:func:`tljax.losses.discrepancy.class_balance_entropy`).
``entropy="per_sample"`` uses the mean per-sample Shannon entropy ``1/B Σ_i H(p_i)``
instead (:func:`tljax.losses.entropy.entropy`; tljax's default before, which pushes each
prediction to be confident rather than the batch to be balanced). Each update is a forward
pass in training mode on source and target concatenated (BatchNorm statistics are updated
each time, as in TLlib).

The state has one optimizer state; each stage updates only its own leaves (parameters and
optimizer moments) and leaves the others bitwise unchanged, with one learning rate
``lr(i)`` for all stages of iteration ``i`` (see :mod:`tljax.methods._steps`). TLlib uses
two SGD optimizers (``G`` without momentum) and a constant lr of 0.001; configure
``optim`` accordingly. The model is evaluated with ``C1``. Loss:
:func:`tljax.losses.discrepancy.classifier_discrepancy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.losses.discrepancy import class_balance_entropy, classifier_discrepancy
from tljax.losses.entropy import entropy as per_sample_entropy
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo
from tljax.train import forward_domains

# ``make(entropy=...)``: the target term of steps A and B.
ENTROPY_TERMS = {"class_balance": class_balance_entropy, "per_sample": per_sample_entropy}


def is_classifier(path: str) -> bool:
    """``C1`` (the model's head) or ``C2`` (the method's head)."""
    return path.startswith("model/head/") or path.startswith("method/")


def make_stages(
    *,
    model,
    tx,
    frozen,
    weight: float,
    compute_dtype=None,
    num_k: int = 4,
    entropy_weight: float = 0.01,
    entropy: str = "class_balance",
):
    """The three stages as pure functions ``(params, rest, opt_state, batch) ->
    (params, rest, opt_state, stepped_opt_state, metrics)`` (exposed for tests).

    Returns:
      ``(stage_a, stage_b, stage_c)``; ``stage_c`` runs its ``num_k`` updates and returns
      ``None`` for the stepped optimizer state (counters advance with stage A's).
    """
    entropy_fn = ENTROPY_TERMS[entropy]

    def outputs(params, rest, batch, fixed):
        p = _steps.stop_gradient_where(params, _steps.mask_or(frozen, fixed))
        net = nnx.merge(model.train_graph, _steps.cast_floats(p, compute_dtype), rest)
        src, tgt = forward_domains(net, batch, compute_dtype)
        y2_s = net.method(src.features).astype(jnp.float32)
        y2_t = net.method(tgt.features).astype(jnp.float32)
        return net, (src.logits, y2_s), (tgt.logits, y2_t)

    def source_terms(ys, yt, labels):
        ce = _steps.cross_entropy(ys[0], labels) + _steps.cross_entropy(ys[1], labels)
        if not entropy_weight:
            return ce
        return ce + entropy_weight * (entropy_fn(yt[0]) + entropy_fn(yt[1]))

    def update(loss_fn, params, rest, opt_state, batch, mask):
        grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(params, rest, batch)
        params, opt_state, stepped = _steps.partial_update(tx, grads, opt_state, params, mask)
        return params, rest, opt_state, stepped, metrics

    def stage_a(params, rest, opt_state, batch):
        fixed = jax.tree.map(lambda _: False, params)

        def loss_fn(p, r, b):
            net, ys, yt = outputs(p, r, b, fixed)
            labels = b["source"]["label"]
            loss = source_terms(ys, yt, labels)
            acc = jnp.mean(jnp.argmax(ys[0], -1) == labels)
            return loss, (_steps.updated_rest(net, r), {"loss_a": loss, "source_acc": acc})

        return update(loss_fn, params, rest, opt_state, batch, _steps.mask_not(fixed))

    def stage_b(params, rest, opt_state, batch):
        fixed = _steps.path_mask(params, lambda p: not is_classifier(p))

        def loss_fn(p, r, b):
            net, ys, yt = outputs(p, r, b, fixed)
            disc = classifier_discrepancy(*yt)
            loss = source_terms(ys, yt, b["source"]["label"]) - weight * disc
            return loss, (_steps.updated_rest(net, r), {"loss_b": loss})

        return update(loss_fn, params, rest, opt_state, batch, _steps.mask_not(fixed))

    def stage_c(params, rest, opt_state, batch):
        fixed = _steps.path_mask(params, is_classifier)

        def loss_fn(p, r, b):
            net, _, yt = outputs(p, r, b, fixed)
            disc = classifier_discrepancy(*yt)
            return weight * disc, (_steps.updated_rest(net, r), {"discrepancy": disc})

        # Unrolled (num_k is small): XLA:CPU runs convolution gradients inside a
        # ``lax.scan``/while body ~18x slower than the same ops unrolled (measured on
        # 2 cores: 2.44 s vs 0.14 s for 4 LeNet updates at batch 32 per domain).
        metrics = None
        for _ in range(num_k):
            params, rest, opt_state, _, metrics = update(
                loss_fn, params, rest, opt_state, batch, _steps.mask_not(fixed)
            )
        return params, rest, opt_state, None, metrics

    return stage_a, stage_b, stage_c


def make(*, num_k: int = 4, entropy_weight: float = 0.01, entropy: str = "class_balance") -> Method:
    """Builds MCD.

    Args:
      num_k: number of feature-extractor updates (step C) per iteration.
      entropy_weight: weight of the target entropy term of both heads in steps A and B
        (TLlib: 0.01; the paper: 0).
      entropy: ``"class_balance"`` (TLlib's MCD term on the batch-mean prediction) or
        ``"per_sample"`` (mean per-sample Shannon entropy).

    Raises:
      ValueError: for ``num_k < 1``, a negative ``entropy_weight`` or an unknown
        ``entropy``.
    """
    if not isinstance(num_k, int) or num_k < 1 or not entropy_weight >= 0:
        raise ValueError(
            f"mcd: need an int num_k >= 1 and entropy_weight >= 0, got num_k={num_k!r}, "
            f"entropy_weight={entropy_weight!r}."
        )
    if entropy not in ENTROPY_TERMS:
        raise ValueError(f"mcd: entropy={entropy!r}; valid: {sorted(ENTROPY_TERMS)}.")

    def init(rngs: nnx.Rngs, info: ModelInfo) -> nnx.Linear:
        return nnx.Linear(info.feature_dim, info.num_classes, rngs=rngs)

    def train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None, compute_dtype=None):
        del num_classes
        stage_a, stage_b, stage_c = make_stages(
            model=model,
            tx=tx,
            frozen=frozen,
            weight=weight,
            compute_dtype=compute_dtype,
            num_k=num_k,
            entropy_weight=entropy_weight,
            entropy=entropy,
        )

        def step(state, batch, rng=None):
            del rng  # MCD is deterministic given the batch
            p, r, o = state.params, state.rest, state.opt_state
            p, r, o, stepped_a, m_a = stage_a(p, r, o, batch)
            p, r, o, _, m_b = stage_b(p, r, o, batch)
            p, r, o, _, m_c = stage_c(p, r, o, batch)
            o = _steps.advance_counters(o, stepped_a, p)
            metrics = {
                "loss": m_a["loss_a"],
                "task_loss": m_a["loss_a"],
                "method_loss": weight * m_c["discrepancy"],
                "source_acc": m_a["source_acc"],
                "mcd/loss_b": m_b["loss_b"],
                "mcd/discrepancy": m_c["discrepancy"],
            }
            return _steps.finish(
                state, params=p, rest=r, opt_state=o, metrics=metrics, lr_schedule=lr_schedule
            )

        return step

    hp = dict(num_k=num_k, entropy_weight=entropy_weight, entropy=entropy)
    return Method(name="mcd", init=init, train_step=train_step, hparams=hp)
