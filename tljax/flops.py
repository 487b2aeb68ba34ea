"""FLOPs of a traced JAX function, counted from its jaxpr (matmuls and convolutions only).

    from tljax.flops import count_flops
    count_flops(train_step, state, batch)        # arrays or jax.ShapeDtypeStruct: no compute

Convention (as in MLPerf's and PaLM's model-FLOPs utilisation): only ``dot_general`` and
``conv_general_dilated`` are counted, a multiply-add is 2 FLOPs, elementwise ops,
reductions, BatchNorm statistics, softmaxes and optimizer updates are ignored (they are
memory-bound and a few percent of a CNN's arithmetic).

* ``dot_general``: ``2 · prod(out shape) · prod(contracting sizes)`` (= 2·batch·M·N·K).
* ``conv_general_dilated``: ``2 · out batch · out features · in-features per group ·
  ∏ taps``, where a spatial dim's ``taps`` is the smaller of two counts of its
  multiply-adds: *gather* — output positions × kernel taps, taps on padding included, taps
  on the holes that ``lhs_dilation`` inserts not — and *scatter* — input elements × kernel
  taps. For an ordinary convolution (``lhs_dilation=1``, output no larger than the input)
  gather is the smaller: ``2 · prod(out) · prod(kernel spatial) · C_in/groups``, the count
  of torchvision's model cards and fvcore (ResNet-50: 4.09 GMACs), padding taps included.
  ``feature_group_count`` and ``batch_group_count`` need no special case: the kernel's
  input-feature dimension already is ``C_in/groups`` (and, for ``batch_group_count``, the
  output batch is ``N/groups``).

Why two counts: the backward pass of a convolution is two convolutions. The weight
gradient (input ⋆ output gradient) gathers exactly the forward's (output, tap) pairs. The
input gradient is a *transposed* convolution: the output gradient, dilated by the stride
and padded to the input's size, convolved with the flipped kernel. Its gather count would
bill the inserted zeros (the hardware, e.g. cuDNN's dgrad, skips them) and its own padding
(a ``'VALID'`` 5×5 layer's input gradient is 'full'-padded: 12² instead of 8² positions for
LeNet's conv2); its scatter count — each output-gradient element times each tap — is
exactly the forward's gather count. So with the minimum, **each backward convolution costs
exactly its forward convolution** (the convention of ``torch.utils.flop_counter``, and of
"training = 3 × forward" MFU accounting), and a transposed convolution in a model costs
input elements × taps, as in PyTorch's and fvcore's counters.

Forward + backward come for free: count the jaxpr of the train step (``jax.grad``
inside), whose backward convolutions and matmuls are equations like any other. Equations
inside ``jit``/``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``/``checkpoint``
and any other primitive carrying a sub-jaxpr are counted once per execution; ``scan``
multiplies its body by ``length``; ``cond`` takes its most expensive branch; a ``while``
loop's trip count is unknown at trace time, so its body (and condition) is counted **once**
(:attr:`FlopCount.while_loops` says how many such loops were met); ``shard_map`` multiplies
its per-shard body by the number of shards (the product of its manual mesh axes), so the
total is the global count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from jax import make_jaxpr
from jax.extend import core

__all__ = ["FlopCount", "conv_flops", "count_flops", "dot_flops", "flop_count", "jaxpr_flops"]


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs of a jaxpr, by kind.

    Attributes:
      conv: FLOPs of ``conv_general_dilated`` equations.
      dot: FLOPs of ``dot_general`` equations.
      while_loops: ``while`` loops met (each body counted once, see the module docstring).
    """

    conv: int = 0
    dot: int = 0
    while_loops: int = 0

    @property
    def total(self) -> int:
        """conv + dot FLOPs."""
        return self.conv + self.dot

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(
            self.conv + other.conv, self.dot + other.dot, self.while_loops + other.while_loops
        )

    def __mul__(self, n: int) -> FlopCount:
        # A repeated loop is still one loop in the source: while_loops is not multiplied.
        return FlopCount(self.conv * n, self.dot * n, self.while_loops)


def dot_flops(lhs_shape, out_shape, dimension_numbers) -> int:
    """``2 · prod(out) · prod(contracting sizes)`` of a ``dot_general``."""
    (lhs_contract, _), _ = dimension_numbers
    return 2 * math.prod(out_shape) * math.prod(lhs_shape[d] for d in lhs_contract)


def _taps(out_len, k_len, stride, rhs_dil, lhs_dil, pad_lo, in_len) -> int:
    """Multiply-adds per (output feature, input feature) along one spatial dim: the smaller
    of the gather count (output positions × kernel taps, padding taps included, holes
    from ``lhs_dilation`` not) and the scatter count (input elements × kernel taps)."""
    scatter = in_len * k_len
    if lhs_dil == 1:
        return min(out_len * k_len, scatter)
    pos = np.arange(out_len)[:, None] * stride + np.arange(k_len)[None, :] * rhs_dil - pad_lo
    span = (in_len - 1) * lhs_dil  # the dilated input covers [0, span]
    gather = int(np.count_nonzero((pos < 0) | (pos > span) | (pos % lhs_dil == 0)))
    return min(gather, scatter)


def conv_flops(lhs_shape, rhs_shape, out_shape, params: dict) -> int:
    """FLOPs of one ``conv_general_dilated`` equation (see the module docstring).

    Args:
      lhs_shape, rhs_shape, out_shape: the operand and result shapes.
      params: the equation's parameters (``dimension_numbers``, ``window_strides``,
        ``padding``, ``lhs_dilation``, ``rhs_dilation``).
    """
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    taps = 1
    for i, (ld, rd, od) in enumerate(zip(lhs_spec[2:], rhs_spec[2:], out_spec[2:])):
        taps *= _taps(
            out_shape[od],
            rhs_shape[rd],
            params["window_strides"][i],
            params["rhs_dilation"][i],
            params["lhs_dilation"][i],
            params["padding"][i][0],
            lhs_shape[ld],
        )
    return 2 * out_shape[out_spec[0]] * out_shape[out_spec[1]] * taps * rhs_shape[rhs_spec[1]]


def _sub_jaxprs(value) -> list:
    """The (open) jaxprs in one equation parameter (a jaxpr, a closed one, or a tuple)."""
    if isinstance(value, core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def _shards(params: dict) -> int:
    """How many copies of a ``shard_map`` body run: the product of its manual axes."""
    mesh = params["mesh"]
    sizes = dict(mesh.shape)
    if "newly_manual_axes" in params:
        manual = params["newly_manual_axes"]
    elif "manual_axes" in params:
        manual = params["manual_axes"]
    else:
        manual = set(sizes) - set(params.get("auto", ()))
    return math.prod(sizes[a] for a in manual)


def _walk(jaxpr: core.Jaxpr, cache: dict) -> FlopCount:
    key = id(jaxpr)
    if key in cache:
        return cache[key]
    total = FlopCount()
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "dot_general":
            lhs = eqn.invars[0].aval.shape
            total += FlopCount(
                dot=dot_flops(lhs, eqn.outvars[0].aval.shape, params["dimension_numbers"])
            )
        elif name == "conv_general_dilated":
            lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
            total += FlopCount(conv=conv_flops(lhs, rhs, eqn.outvars[0].aval.shape, params))
        elif name == "scan":
            total += _walk(params["jaxpr"].jaxpr, cache) * int(params["length"])
        elif name == "while":
            body = _walk(params["body_jaxpr"].jaxpr, cache)
            total += body + _walk(params["cond_jaxpr"].jaxpr, cache)
            total += FlopCount(while_loops=1)
        elif name == "cond":
            branches = [_walk(b.jaxpr, cache) for b in params["branches"]]
            most = max(branches, key=lambda c: c.total)
            total += dataclasses.replace(most, while_loops=max(b.while_loops for b in branches))
        elif name == "shard_map":
            total += _walk(params["jaxpr"], cache) * _shards(params)
        else:  # jit/pjit, custom_jvp_call, custom_vjp_call, remat, ...: run once
            for value in params.values():
                for sub in _sub_jaxprs(value):
                    total += _walk(sub, cache)
    cache[key] = total
    return total


def jaxpr_flops(jaxpr: core.Jaxpr | core.ClosedJaxpr) -> FlopCount:
    """Counts the matmul and convolution FLOPs of a (closed) jaxpr, recursively.

    Args:
      jaxpr: e.g. ``jax.make_jaxpr(fn)(*args)``.

    Returns:
      The :class:`FlopCount` (``.total`` for one number).

    Raises:
      TypeError: if ``jaxpr`` is neither a ``Jaxpr`` nor a ``ClosedJaxpr``.
    """
    if isinstance(jaxpr, core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    if not isinstance(jaxpr, core.Jaxpr):
        raise TypeError(
            f"jaxpr_flops needs a jax.core.Jaxpr or ClosedJaxpr (e.g. from jax.make_jaxpr), "
            f"got {type(jaxpr).__name__}."
        )
    return _walk(jaxpr, {})


def flop_count(fn: Callable, *args: Any, **kwargs: Any) -> FlopCount:
    """:class:`FlopCount` of ``fn(*args, **kwargs)``, traced with ``jax.make_jaxpr``.

    Arguments may be arrays or ``jax.ShapeDtypeStruct``; nothing is computed.
    """
    return jaxpr_flops(make_jaxpr(fn)(*args, **kwargs))


def count_flops(fn: Callable, *args: Any, **kwargs: Any) -> int:
    """Matmul + convolution FLOPs of one call of ``fn(*args, **kwargs)`` (traced, not run).

    Args:
      fn: any JAX-traceable function (a whole train step with ``jax.grad`` inside counts
        forward and backward).
      *args, **kwargs: its arguments, as arrays or ``jax.ShapeDtypeStruct``.

    Returns:
      The FLOP count (a multiply-add is 2 FLOPs); ``while`` loop bodies are counted once.
    """
    return flop_count(fn, *args, **kwargs).total
