"""VGG parity check: tljax's VGG vs a PyTorch reference at ImageNet resolution.

Not a pytest module. Needs an environment with torch *and* jax/flax (tljax on the path):

    /work/ref-venv/bin/pip install torch==2.13.0 jax==0.10.2 flax==0.12.8 safetensors
    PYTHONPATH=. /work/ref-venv/bin/python -m tests.models.parity.vgg_parity --arch vgg16_bn

The reference is ``torchvision.models.<arch>`` when torchvision imports, otherwise the
torchvision-equivalent ``tests/models/torch_cnn.py``. Weights are the reference's random
init (torchvision's) with random BatchNorm affine parameters and running statistics
calibrated on a random batch (no network here for ImageNet weights); they go through the
torch state dict → :func:`load_torchvision_vgg` path. Prints the max abs differences of
features (``classifier[:6]``) and logits in eval mode, and both float32 runs' distance to
torch in float64 as the round-off yardstick.

Measured (CPU, jax 0.10.2, torch 2.13.0 with ``tests/models/torch_cnn.py``; batch 2):
at 224×224, max |logits − ref| = 1.8e-5 (VGG-16-BN, |logits| ≈ 1.4; vs float64 ours
8.6e-6, torch float32 1.8e-5) and 6.8e-7 (VGG-11, |logits| ≈ 0.27); at 32×32 (the 1×1
map spread over the 7×7 pool), VGG-11-BN 6.1e-6 (|logits| ≈ 1.6).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

ARCHS = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]


def _features_and_logits(self, x):
    """torchvision VGG's forward, also returning ``classifier[:6]``'s output."""
    import torch

    feats = self.classifier[:6](torch.flatten(self.avgpool(self.features(x)), 1))
    return feats, self.classifier[6](feats)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="vgg16_bn", choices=ARCHS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-3)
    args = p.parse_args()

    import jax
    import torch
    from flax import nnx

    from tests.models.torch_cnn import VGG
    from tests.models.torch_resnet import calibrate_bn, randomize_bn
    from tljax.models import get_backbone_factory
    from tljax.models.vgg import load_torchvision_vgg

    torch.manual_seed(0)
    arch, bn = args.arch.removesuffix("_bn"), args.arch.endswith("_bn")
    try:
        import torchvision

        ref = getattr(torchvision.models, args.arch)(weights=None)
        source = f"torchvision {torchvision.__version__}"
        ref.forward = _features_and_logits.__get__(ref)
    except ImportError:
        ref = VGG(arch, bn)
        source = "tests/models/torch_cnn.py (torchvision not importable)"
    randomize_bn(ref)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((4, 3, args.size, args.size)).astype(np.float32)
    calibrate_bn(ref, torch.from_numpy(calib))
    ref.eval()
    x = rng.standard_normal((args.batch, args.size, args.size, 3)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        feats, logits = (t.numpy() for t in ref(xt))

    model = get_backbone_factory(args.arch)(x.shape[1:], rngs=nnx.Rngs(0), num_classes=1000)
    load_torchvision_vgg(
        model, {k: v.numpy() for k, v in ref.state_dict().items()}, include_head=True
    )
    model.eval()
    graph, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    d_f = float(np.max(np.abs(np.asarray(out["features"]) - feats)))
    d_l = float(np.max(np.abs(np.asarray(out["logits"]) - logits)))
    scale, f_scale = float(np.max(np.abs(logits))), float(np.max(np.abs(feats)))
    print(
        f"reference: {source}, torch {torch.__version__}; jax {jax.__version__} "
        f"({jax.devices()[0].platform})"
    )
    print(f"{args.arch}, {args.batch}x{args.size}x{args.size}x3, eval mode")
    print(
        f"max |features - ref| = {d_f:.3e} (max |feature| = {f_scale:.3g}); "
        f"max |logits - ref| = {d_l:.3e} (max |logit| = {scale:.3g})"
    )
    with torch.no_grad():  # float32 round-off yardstick: both runs against torch float64
        l64 = ref.double()(xt.double())[1].numpy()
    print(
        f"vs torch float64: max |ours - f64| = {np.max(np.abs(out['logits'] - l64)):.3e}, "
        f"max |torch f32 - f64| = {np.max(np.abs(logits - l64)):.3e}"
    )
    ok = d_l <= args.tol * max(1.0, scale)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
