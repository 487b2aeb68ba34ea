"""Optimizers, learning-rate schedules and freezing rules built on optax masks.

Freezing rules are an ordered list of ``(regex, rule)`` pairs matched against parameter
paths such as ``model/backbone/conv1/kernel`` (``re.search``; the first match wins).
``rule`` is ``None`` for a frozen parameter, a float learning-rate multiplier (``1.0``
trains at the base rate, ``0.1`` is the usual fine-tuning rate of a pretrained backbone),
or a pair ``(multiplier, from_step)`` for a parameter that stays frozen until step
``from_step`` and then trains (gradual unfreezing: give deeper layers earlier steps).
Every parameter must be matched by some rule.

The optimizer is ``optax.partition`` over one label per distinct multiplier plus
``"frozen"`` → ``optax.set_to_zero()``: frozen leaves keep no optimizer moments and their
updates are exactly zero, so they stay bitwise unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

FROZEN = "frozen"

Rule = float | tuple[float, int] | None
Rules = Sequence[tuple[str, Rule]]


def path_str(path) -> str:
    """``("model", "backbone", "conv1", "kernel")`` keys → ``"model/backbone/conv1/kernel"``."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(str(k.name))
        else:
            parts.append(str(k))
    return "/".join(p for p in parts if p != "value")


def param_paths(params) -> list[str]:
    """All parameter paths of a pytree, in flattening order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _parse_rule(rule: Rule) -> tuple[float, int] | None:
    """``None`` (frozen) or ``(lr multiplier, first trained step)``."""
    if rule is None:
        return None
    mult, start = (rule, 0) if not isinstance(rule, (tuple, list)) else (tuple(rule) + (None,))[:2]
    ok = (
        isinstance(mult, (int, float))
        and not isinstance(mult, bool)
        and math.isfinite(mult)
        and mult >= 0
        and isinstance(start, int)
        and start >= 0
    )
    if not ok or (isinstance(rule, (tuple, list)) and len(rule) != 2):
        raise ValueError(
            "A freezing rule must be None (frozen), a finite lr multiplier >= 0, or a pair "
            f"(lr multiplier, from_step >= 0) for gradual unfreezing; got {rule!r}."
        )
    return float(mult), int(start)


def _rule_label(rule: Rule) -> str:
    parsed = _parse_rule(rule)
    if parsed is None:
        return FROZEN
    mult, start = parsed
    return f"lr_x{mult:g}" + (f"_from{start}" if start else "")


def gated(tx: optax.GradientTransformation, start_step: int) -> optax.GradientTransformation:
    """``tx`` that does nothing (zero updates, state untouched) before ``start_step``.

    Used for gradual unfreezing: until the layer is unfrozen its optimizer state (e.g.
    momentum, which weight decay would otherwise fill) stays at its initial value.
    """

    def init(params):
        return (jnp.zeros((), jnp.int32), tx.init(params))

    def update(updates, state, params=None):
        count, inner = state
        new_updates, new_inner = tx.update(updates, inner, params)
        on = count >= start_step
        new_updates = jax.tree.map(lambda u: jnp.where(on, u, jnp.zeros_like(u)), new_updates)
        new_inner = jax.tree.map(lambda a, b: jnp.where(on, a, b), new_inner, inner)
        return new_updates, (count + 1, new_inner)

    return optax.GradientTransformation(init, update)


def match_rules(params, rules: Rules) -> tuple[Any, dict[str, tuple[str, Rule]]]:
    """Assigns each parameter its rule.

    Args:
      params: the parameter pytree.
      rules: ordered ``(regex, rule)`` pairs; the first ``re.search`` match wins.

    Returns:
      ``(labels, report)``: a pytree of optax partition labels with the structure of
      ``params``, and ``{path: (pattern, rule)}`` saying which rule matched each parameter.

    Raises:
      ValueError: if a pattern is not a valid regex, a rule is invalid, or some
        parameters match no rule (all of them are named).
    """
    compiled = []
    for item in rules:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"A freezing rule must be a (regex, rule) pair, got {item!r}.")
        pattern, rule = item
        try:
            compiled.append((re.compile(pattern), pattern, rule, _rule_label(rule)))
        except re.error as e:
            raise ValueError(f"Invalid regex {pattern!r} in freezing rules: {e}") from e
    report, uncovered = {}, []

    def assign(path, _):
        name = path_str(path)
        for regex, pattern, rule, label in compiled:
            if regex.search(name):
                report[name] = (pattern, rule)
                return label
        uncovered.append(name)
        return FROZEN

    labels = jax.tree_util.tree_map_with_path(assign, params)
    if uncovered:
        raise ValueError(
            f"{len(uncovered)} parameter(s) match no freezing rule: {uncovered}. "
            f"Rules: {[p for _, p, _, _ in compiled]}. Add a rule (e.g. ('.*', 1.0)) "
            "that covers them."
        )
    return labels, report


def frozen_mask(labels) -> Any:
    """``True`` where a parameter is frozen, from the labels of :func:`match_rules`."""
    return jax.tree.map(lambda label: label == FROZEN, labels)


def make_schedule(
    kind: str,
    *,
    base_lr: float,
    total_steps: int,
    gamma: float = 1e-3,
    power: float = 0.75,
    warmup_steps: int = 0,
) -> optax.Schedule:
    """Learning-rate schedules.

    Args:
      kind: ``"inverse_decay"`` — ``base·(1+γ·i)^(−power)`` (TLlib, Ganin & Lempitsky);
        ``"cosine"`` — linear warm-up then cosine decay to 0 at ``total_steps``;
        ``"constant"``.
      base_lr: the base learning rate.
      total_steps: number of training steps (cosine only).
      gamma: γ of the inverse decay.
      power: exponent of the inverse decay (0.75 in the papers).
      warmup_steps: linear warm-up steps (cosine only).

    Raises:
      ValueError: for an unknown ``kind``.
    """
    if kind == "inverse_decay":
        return lambda i: base_lr * (1.0 + gamma * jnp.asarray(i, jnp.float32)) ** (-power)
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else base_lr,
            base_lr,
            max(warmup_steps, 0),
            max(total_steps, warmup_steps + 1),
            end_value=0.0,
        )
    if kind == "constant":
        return optax.constant_schedule(base_lr)
    raise ValueError(
        f"Unknown lr schedule {kind!r}; valid: ['constant', 'cosine', 'inverse_decay']."
    )


def _base_optimizer(
    name: str,
    lr: Callable,
    *,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    b1: float,
    b2: float,
) -> optax.GradientTransformation:
    if name == "sgd":
        # PyTorch SGD semantics (as in the published code): decay is added to the
        # gradient before momentum.
        return optax.chain(
            optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
            optax.sgd(lr, momentum=momentum or None, nesterov=nesterov),
        )
    if name == "adam":
        return optax.chain(
            optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
            optax.adam(lr, b1=b1, b2=b2),
        )
    if name == "adamw":
        return optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; valid: ['adam', 'adamw', 'sgd'].")


def make_optimizer(
    params,
    rules: Rules,
    *,
    optimizer: str = "sgd",
    schedule: optax.Schedule,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    grad_clip: float | None = None,
):
    """The optimizer of a run: one base optimizer per lr multiplier, frozen leaves zeroed.

    Args:
      params: the parameter pytree (only its structure and paths are used).
      rules: freezing rules (see the module docstring).
      optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
      schedule: the base learning-rate schedule; a rule's multiplier scales it.
      momentum, nesterov: SGD settings.
      weight_decay: L2 decay (added to the gradient for sgd/adam, decoupled for adamw).
      b1, b2: Adam betas.
      grad_clip: clip the global gradient norm to this value (``None``: no clipping).

    Returns:
      ``(tx, labels, report)``: the optax transformation, the partition labels and the
      ``{path: (pattern, rule)}`` report of which rule matched which parameter.
    """
    labels, report = match_rules(params, rules)
    parsed = {_rule_label(r): _parse_rule(r) for _, r in report.values() if r is not None}
    transforms = {FROZEN: optax.set_to_zero()}
    for label, (mult, start) in parsed.items():
        lr = lambda i, m=mult: m * schedule(i)
        base = _base_optimizer(
            optimizer,
            lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            b1=b1,
            b2=b2,
        )
        transforms[label] = gated(base, start) if start else base
    tx = optax.partition(transforms, labels)
    if grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx, labels, report


def format_rule_report(report: dict[str, tuple[str, Rule]]) -> str:
    """One line per parameter: path, matched pattern, rule (``frozen`` or ``lr x m``)."""
    width = max((len(p) for p in report), default=0)
    lines = []
    for path, (pattern, rule) in report.items():
        parsed = _parse_rule(rule)
        if parsed is None:
            what = "frozen"
        else:
            what = f"lr x{parsed[0]:g}" + (f" from step {parsed[1]}" if parsed[1] else "")
        lines.append(f"{path:<{width}}  {what:<10} <- {pattern!r}")
    return "\n".join(lines)
