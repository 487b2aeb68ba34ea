r"""BatchNorm statistics in transfer: keep them frozen, or re-estimate them on new data.

* :func:`use_running_statistics` puts a module's BatchNorm layers in inference mode: they
  normalise with their running mean/variance and never update them ("frozen BN
  statistics", as Keras recommends when fine-tuning and detectron's ``FrozenBatchNorm``),
  while the rest of the module stays in training mode (dropout keeps dropping). Their
  scale and bias are parameters like any other and follow the freezing rules.
* :func:`adapt_batch_norm` is AdaBN (Li et al., "Revisiting Batch Normalization for
  Practical Domain Adaptation", ICLR-W 2017): the trained weights are kept and every
  BatchNorm layer of the model gets the statistics of the *target* data,

  .. math::
     \mu_\ell = \mathbb{E}_{x\sim T}[h_\ell(x)], \qquad
     \sigma^2_\ell = \mathrm{Var}_{x\sim T}[h_\ell(x)],

  where ``h_ℓ`` is the input of layer ``ℓ``. It runs the training-mode graph (each layer
  normalised with its batch statistics, as during training) over the target images in
  batches and combines the per-batch moments exactly (size-weighted means of the batch
  means and of the batch second moments), instead of an exponential moving average, so
  the result does not depend on a momentum or on the batch order. For the first
  BatchNorm layer the running mean is then exactly the mean of its input features over
  the target set. Deeper layers see inputs normalised with batch statistics, as in the
  paper's and the usual PyTorch recipe (``momentum=None``, a pass in ``train()`` mode).
  The variance is the biased one, as NNX's BatchNorm uses.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def batch_norm_layers(module: nnx.Module) -> list[tuple[tuple, nnx.BatchNorm]]:
    """``[(path, layer)]`` of every ``nnx.BatchNorm`` inside ``module``, in graph order."""
    return [
        (tuple(path), node)
        for path, node in nnx.iter_graph(module)
        if isinstance(node, nnx.BatchNorm)
    ]


def use_running_statistics(module: nnx.Module) -> int:
    """Makes every BatchNorm in ``module`` normalise with (and keep) its running statistics.

    Only the BatchNorm layers change mode; call it on a merged module inside a step
    (or before splitting a graph) to train with frozen statistics.

    Returns:
      The number of BatchNorm layers switched.
    """
    layers = batch_norm_layers(module)
    for _, bn in layers:
        bn.use_running_average = True
    return len(layers)


def _path_name(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def adapt_batch_norm(
    graphs,
    params,
    rest,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    include: str | None = None,
) -> dict:
    """AdaBN: the running statistics of the model's BatchNorm layers, re-estimated on ``images``.

    Args:
      graphs: the static graphs of the run (:func:`tljax.train.build_net`; its
        ``train_graph`` is used).
      params: the trained parameters (pure dict, as in ``TrainState.params``).
      rest: the non-parameter state holding the statistics to replace.
      images: target inputs ``(n, ...)`` (host or device array); labels are not needed.
      batch_size: images per forward pass (the last batch may be smaller; it is weighted
        by its size).
      include: optional regex over the BatchNorm layers' paths (e.g.
        ``"model/bottleneck"``); ``None`` adapts every BatchNorm of ``net.model``.

    Returns:
      A copy of ``rest`` whose selected BatchNorm means and variances are the target's;
      everything else (parameters, other state, the method's networks) is unchanged.

    Raises:
      ValueError: if the model has no BatchNorm layer (or none matches ``include``), there
        are no images, or ``batch_size < 1``.
    """
    n = int(images.shape[0])
    if n < 1 or batch_size < 1:
        raise ValueError(
            f"adapt_batch_norm needs images and batch_size >= 1, got n={n}, "
            f"batch_size={batch_size}."
        )
    probe = nnx.merge(graphs.train_graph, params, rest)
    names = [_path_name(("model", *p)) for p, _ in batch_norm_layers(probe.model)]
    regex = re.compile(include) if include else None
    chosen = [m for m in names if regex is None or regex.search(m)]
    if not chosen:
        raise ValueError(
            f"adapt_batch_norm: no BatchNorm layer to adapt (include={include!r}); the "
            f"model's BatchNorm layers are {names}."
        )

    @jax.jit
    def moments(params, rest, x):
        net = nnx.merge(graphs.train_graph, params, rest)
        layers = batch_norm_layers(net.model)
        for _, bn in layers:
            bn.use_running_average = False
            bn.momentum = 0.0  # the stored "running" value becomes this batch's moment
        net.model(x)
        out = {}
        for path, bn in layers:
            mean = bn.mean.get_value().astype(jnp.float32)
            out[_path_name(("model", *path))] = (mean, bn.var.get_value() + mean**2)
        return out

    sums: dict[str, list] = {}
    for start in range(0, n, batch_size):
        x = jnp.asarray(images[start : start + batch_size])
        w = x.shape[0] / n
        for name, (m1, m2) in jax.device_get(moments(params, rest, x)).items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] = acc[0] + w * np.asarray(m1, np.float64)
            acc[1] = acc[1] + w * np.asarray(m2, np.float64)

    def replace(path, leaf):
        keys = [str(getattr(k, "key", k)) for k in path]
        layer, stat = "/".join(keys[:-1]), keys[-1]
        if layer in chosen and stat in ("mean", "var"):
            m1, m2 = sums[layer]
            value = m1 if stat == "mean" else np.maximum(m2 - m1**2, 0.0)
            return jnp.asarray(value, leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(replace, rest)


__all__ = ["adapt_batch_norm", "batch_norm_layers", "use_running_statistics"]
