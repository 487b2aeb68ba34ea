r"""ADDA: adversarial discriminative domain adaptation (Tzeng et al., CVPR 2017).

Two stages in one compiled step, selected on the step counter:

* stage 1, steps ``i < pretrain_steps``: the source encoder ``M_s`` and classifier ``C``
  (the model) minimise the source cross-entropy;
* stage 2, ``i ≥ pretrain_steps``: ``M_s`` and ``C`` are fixed; a target encoder ``M_t``
  (initialised from ``M_s``) and a discriminator ``D`` play the GAN with inverted labels

.. math::
   \min_D\; -\mathbb{E}_s[\log D(M_s(x))] - \mathbb{E}_t[\log(1 - D(M_t(x)))],\qquad
   \min_{M_t}\; -\mathbb{E}_t[\log D(M_t(x))]

(the ``D`` loss is averaged over the two domains, ½(BCE_s + BCE_t), as DANN's).

``M_t`` is the method's own copy of the model's backbone and bottleneck
(``method/encoder/...``, same paths as ``model/...``); until the switch it mirrors ``M_s``
(copied at the start of every step up to ``pretrain_steps`` and after every stage-1
update), so stage 2 starts from the pretrained source encoder, also when the weights were
loaded after ``Method.init``, with fresh optimizer moments. Each stage updates only its
own leaves (parameters and moments; see
:mod:`tljax.methods._steps`), so stage 2 leaves ``M_s``, ``C`` and their BatchNorm
statistics bitwise unchanged: in stage 2, ``M_s`` runs in evaluation mode (TLlib's
``freeze_bn``). ``D`` and ``M_t`` are updated simultaneously from one batch (the paper
alternates); ``D`` sees both domains in one batch; the generator gradient comes from a
second pass of ``D`` with its weights detached.

Evaluation: :attr:`Method.eval_state` swaps ``M_t`` into the model for the target domain
(``C ∘ M_t``) and keeps ``M_s`` for the source domain; the loop must call it.

TLlib's ADDA example differs from the paper: after source pretraining it trains ``M_t``
and ``D`` with a gradient reversal layer (the minimax loss, warm start ``hi = 2``)
instead of inverted labels. The discriminator defaults follow TLlib (``1024 → 1024``,
BatchNorm); the paper's digit discriminator is ``500 → 500`` without BatchNorm.

**The adversarial stage collapses on a covariate shift; a source anchor prevents it.**
Nothing ties ``M_t`` to ``C`` in stage 2: the GAN only asks that target features look
like source features. On the 2-D covariate shift (``configs/seeds_shift2d.py:adda,
covariate``: MLP 2→64→64, Adam 1e-3, 32+32 per step, 1000 source steps, then 1000
adversarial ones, discriminator ``(32,)``, 5 seeds) the paper's ADDA took target accuracy
from source only's 0.943–0.952 (the same run with ``M_t``'s lr at 0 reproduces it
exactly) to 0.05–0.48, on every seed. Neither the discriminator's lr ×10 (0.10–0.50),
both networks' lr ×0.2 (0.30–0.86), nor the default 1024-1024 BatchNorm discriminator
(500 + 500 steps: 0.05–0.60; the ``(32,)`` one: 0.06–0.56) avoids it, nor an ``M_t`` lr
×0.01 (500 + 500 steps: 0.64–0.79). ``source_anchor`` (``λ·CE(C(M_t(x_s)), y_s)``) does,
when strong: worst seed 0.49 at λ = 1, 0.86 at 10, 0.93 at 30, 0.948 at 100 (the
config's; all five seeds 0.948–0.957). With the anchor that strong the adversarial term
adds nothing measurable there: the same run without it (``method.weight = 0``, ``M_t``
trained on the source cross-entropy alone) gave 0.946–0.960. ``tests/methods/
test_seed_robustness.py`` tests the anchored ADDA and keeps the paper's as an expected
failure. On UCI digits → digits-M (``configs/adda_digits_m.py``, 3 seeds, deterministic
mode) the anchor helps where it should: the paper's ADDA 23.5 ± 9.6%, λ = 1 41.7 ± 2.2%,
λ = 10 43.6 ± 1.4%, and λ = 1 without the GAN term 26.4 ± 1.1% (source only: 29.4%).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.errors import as_float
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, deep_copy, require_classifier
from tljax.models.heads import DomainDiscriminator

_ENCODER_PARTS = ("backbone", "bottleneck")


class Encoder(nnx.Module):
    """A feature extractor ``bottleneck(backbone(x))`` with the model's layout."""

    def __init__(self, backbone: nnx.Module, bottleneck: nnx.Module | None):
        self.backbone = backbone
        self.bottleneck = bottleneck

    def __call__(self, x: jax.Array) -> jax.Array:
        return encode(self, x)


class ADDANets(nnx.Module):
    """The target encoder and the domain discriminator."""

    def __init__(self, encoder: Encoder, discriminator: DomainDiscriminator):
        self.encoder = encoder
        self.discriminator = discriminator


def encode(module: nnx.Module, x: jax.Array) -> jax.Array:
    """Features of a module with ``backbone`` and optional ``bottleneck`` (the
    ``features`` of :class:`~tljax.models.heads.Classifier`)."""
    f = module.backbone(x)["features"]
    return module.bottleneck(f) if module.bottleneck is not None else f


def _swap_encoder(tree: dict, own: dict) -> dict:
    """``tree`` with ``model/<part>`` replaced by ``own[part]`` for the encoder parts."""
    model = dict(tree.get("model", {}))
    for part in _ENCODER_PARTS:
        if part in own:
            model[part] = own[part]
    return {**tree, "model": model}


def target_eval_state(params, rest, *, domain: str):
    """The state to evaluate ``domain`` with: ``C ∘ M_t`` for the target, the model else."""
    if domain not in ("source", "target"):
        raise ValueError(f"adda: domain must be 'source' or 'target', got {domain!r}.")
    if domain == "source":
        return params, rest
    enc_p = params["method"]["encoder"]
    enc_r = rest.get("method", {}).get("encoder", {})
    return _swap_encoder(params, enc_p), _swap_encoder(rest, enc_r)


def _mirror(tree: dict, flag) -> dict:
    """Copies ``model/<part>`` into ``method/encoder/<part>`` where ``flag`` is true."""
    if "method" not in tree or "encoder" not in tree["method"]:
        return tree
    enc = dict(tree["method"]["encoder"])
    for part in enc:
        enc[part] = jax.tree.map(lambda s, t: jnp.where(flag, s, t), tree["model"][part], enc[part])
    return {**tree, "method": {**tree["method"], "encoder": enc}}


def make(
    *,
    pretrain_steps: int = 1000,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    source_anchor: float = 0.0,
) -> Method:
    """Builds ADDA.

    Args:
      pretrain_steps: number of source-only steps (stage 1) before the adversarial stage.
      hidden: hidden widths of the domain discriminator.
      batch_norm: BatchNorm in the discriminator.
      source_anchor: weight ``λ`` of a source classification term for the target encoder
        in stage 2, ``λ · CE(C(M_t(x_s)), y_s)`` with ``C`` fixed: ``M_t`` must stay an
        encoder the source classifier reads correctly. ``0`` (the default) is the paper's
        ADDA. With ``λ > 0``, ``M_t`` runs on the source batch too, before the target
        batch (its BatchNorm statistics, if any, take both updates).

    Raises:
      ValueError: for a negative ``pretrain_steps`` or ``source_anchor``.
    """
    if not isinstance(pretrain_steps, int) or pretrain_steps < 0:
        raise ValueError(f"adda: pretrain_steps must be an int >= 0, got {pretrain_steps!r}.")
    source_anchor = as_float(source_anchor)
    if not source_anchor >= 0.0:
        raise ValueError(
            f"adda: source_anchor must be a weight >= 0 (0 = the paper's ADDA), got "
            f"{source_anchor!r}."
        )

    def init(rngs: nnx.Rngs, info: ModelInfo) -> ADDANets:
        model = require_classifier(info, "adda")
        bottleneck = deep_copy(model.bottleneck) if model.bottleneck is not None else None
        encoder = Encoder(deep_copy(model.backbone), bottleneck)
        disc = DomainDiscriminator(
            info.feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs
        )
        return ADDANets(encoder, disc)

    def train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None, compute_dtype=None):
        del num_classes
        cast = lambda p: _steps.cast_floats(p, compute_dtype)
        as_input = lambda x: x if compute_dtype is None else x.astype(compute_dtype)

        def stage1(params, rest, batch):
            fixed = _steps.path_mask(params, lambda p: not p.startswith("model/"))
            p = _steps.stop_gradient_where(params, _steps.mask_or(frozen, fixed))
            net = nnx.merge(model.train_graph, cast(p), rest)
            logits, _ = net.model(as_input(batch["source"]["image"]))
            labels = batch["source"]["label"]
            task = _steps.cross_entropy(logits, labels)
            metrics = {
                "loss": task,
                "task_loss": task,
                "method_loss": jnp.zeros(()),
                "source_acc": jnp.mean(jnp.argmax(logits, -1) == labels),
                "adda/discriminator_loss": jnp.zeros(()),
                "adda/domain_acc": jnp.zeros(()),
                "adda/source_anchor_loss": jnp.zeros(()),
            }
            return task, (_steps.updated_rest(net, rest), metrics)

        def stage2(params, rest, batch):
            fixed = _steps.path_mask(params, lambda p: not p.startswith("method/"))
            p = _steps.stop_gradient_where(params, _steps.mask_or(frozen, fixed))
            net = nnx.merge(model.train_graph, cast(p), rest)
            source = nnx.merge(model.eval_graph, cast(p), rest).model
            xs, xt = as_input(batch["source"]["image"]), as_input(batch["target"]["image"])
            fs = jax.lax.stop_gradient(encode(source, xs)).astype(jnp.float32)
            logits_s = source.head(fs.astype(xs.dtype)).astype(jnp.float32)
            ys = batch["source"]["label"]
            anchor = jnp.zeros(())
            if source_anchor > 0:  # C (fixed: a model/ leaf) must still read M_t's features
                logits_ts = source.head(net.method.encoder(xs)).astype(jnp.float32)
                anchor = _steps.cross_entropy(logits_ts, ys)
            ft = net.method.encoder(xt).astype(jnp.float32)
            disc = net.method.discriminator
            g, d_params, d_rest = nnx.split(disc, nnx.Param, ...)
            frozen_disc = nnx.merge(g, jax.lax.stop_gradient(d_params), d_rest)
            n = fs.shape[0]
            labels = jnp.concatenate([jnp.ones((n,)), jnp.zeros((ft.shape[0],))])
            d = disc(jnp.concatenate([fs, jax.lax.stop_gradient(ft)])).astype(jnp.float32)
            bce = optax.sigmoid_binary_cross_entropy(d, labels)
            d_loss = 0.5 * (bce[:n].mean() + bce[n:].mean())
            d_gen = frozen_disc(jnp.concatenate([fs, ft])).astype(jnp.float32)[n:]
            g_loss = optax.sigmoid_binary_cross_entropy(d_gen, jnp.ones_like(d_gen)).mean()
            metrics = {
                "loss": d_loss + weight * g_loss + source_anchor * anchor,
                "task_loss": _steps.cross_entropy(logits_s, ys),
                "method_loss": g_loss,
                "source_acc": jnp.mean(jnp.argmax(logits_s, -1) == ys),
                "adda/discriminator_loss": d_loss,
                "adda/domain_acc": jnp.mean((d > 0) == (labels > 0.5)),
                "adda/source_anchor_loss": anchor,
            }
            # The train-mode model is never called here: the model's statistics stay put.
            return metrics["loss"], (_steps.updated_rest(net, rest), metrics)

        def step(state, batch, rng=None):
            del rng
            pretraining = state.step < pretrain_steps
            # Up to the switch M_t starts each step as a copy of M_s: this also covers
            # weights loaded into the model after Method.init (and pretrain_steps=0).
            start = state.step <= pretrain_steps
            params, rest = _mirror(state.params, start), _mirror(state.rest, start)
            # Both stages are computed and one is selected. A ``lax.cond`` would skip the
            # other stage's work, but XLA:CPU runs convolution gradients inside a
            # conditional ~8x slower than in the main computation (measured on 2 cores:
            # 0.65 s vs 0.08 s per LeNet step at batch 32 per domain), which costs far
            # more than the discarded stage.
            out1 = jax.grad(stage1, has_aux=True)(params, rest, batch)
            out2 = jax.grad(stage2, has_aux=True)(params, rest, batch)
            grads, (rest, metrics) = jax.tree.map(
                lambda a, b: jnp.where(pretraining, a, b), out1, out2
            )
            is_model = _steps.path_mask(params, lambda p: p.startswith("model/"))
            mask = jax.tree.map(lambda m: pretraining if m else ~pretraining, is_model)
            params, opt_state, stepped = _steps.partial_update(
                tx, grads, state.opt_state, params, mask
            )
            opt_state = _steps.advance_counters(opt_state, stepped, params)
            params, rest = _mirror(params, pretraining), _mirror(rest, pretraining)
            metrics["adda/pretraining"] = pretraining.astype(jnp.float32)
            return _steps.finish(
                state,
                params=params,
                rest=rest,
                opt_state=opt_state,
                metrics=metrics,
                lr_schedule=lr_schedule,
            )

        return step

    hp = dict(
        pretrain_steps=pretrain_steps,
        hidden=tuple(hidden),
        batch_norm=batch_norm,
        source_anchor=source_anchor,
    )
    return Method(
        name="adda",
        init=init,
        train_step=train_step,
        hparams=hp,
        eval_state=target_eval_state,
    )
