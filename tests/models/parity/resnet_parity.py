"""ResNet parity check: tljax's ResNet vs a PyTorch reference at ImageNet resolution.

Not a pytest module. Needs an environment with torch *and* jax/flax (tljax on the path):

    /work/ref-venv/bin/pip install torch==2.13.0 jax==0.10.2 flax==0.12.8 safetensors
    PYTHONPATH=. /work/ref-venv/bin/python -m tests.models.parity.resnet_parity --arch resnet50

The reference is ``torchvision.models.<arch>`` when torchvision imports, otherwise the
torchvision-equivalent ``tests/models/torch_resnet.py``. Weights are the reference's random
init with random BatchNorm affine parameters and running statistics calibrated on a random
batch (no network here for ImageNet weights), so activations have a trained net's scale; they go
through the torch state dict → :func:`load_torchvision_resnet` path. Prints the max abs
differences of features and logits in eval mode, and both float32 runs' distance to torch
in float64 as the round-off yardstick.

Measured (CPU, jax 0.10.2; torchvision 0.29.1 + torch 2.14.1, batch 2 at 224×224, |logits|
≈ 2): max |logits - ref| = 2.4e-6 (ResNet-18), 3.6e-5 (ResNet-50), 1.5e-4 (ResNet-101);
vs float64 ours 3.6e-5 and torch float32 3.9e-5 (ResNet-50), i.e. float32 round-off.
With seed 0, ``tests/models/torch_resnet.py`` builds a state dict identical to
torchvision's ``resnet50(weights=None)``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"]
    )
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-3)
    args = p.parse_args()

    import jax
    import torch
    from flax import nnx

    from tests.models.torch_resnet import ResNet, calibrate_bn, randomize_bn
    from tljax.models import get_backbone_factory
    from tljax.models.weights import load_torchvision_resnet

    torch.manual_seed(0)
    try:
        import torchvision

        ref = getattr(torchvision.models, args.arch)(weights=None)
        source = f"torchvision {torchvision.__version__}"
    except ImportError:
        ref = ResNet(args.arch)
        source = "tests/models/torch_resnet.py (torchvision not importable)"
    randomize_bn(ref)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, args.size, args.size)).astype(np.float32)
    calibrate_bn(ref, torch.from_numpy(calib))
    x = rng.standard_normal((args.batch, args.size, args.size, 3)).astype(np.float32)
    feats = {}
    ref.avgpool.register_forward_hook(lambda m, i, o: feats.update(f=o.flatten(1)))
    with torch.no_grad():
        logits = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    if isinstance(logits, tuple):
        logits = logits[1]

    model = get_backbone_factory(args.arch)(x.shape[1:], rngs=nnx.Rngs(0), num_classes=1000)
    load_torchvision_resnet(
        model, {k: v.numpy() for k, v in ref.state_dict().items()}, include_head=True
    )
    model.eval()
    graph, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    d_f = float(np.max(np.abs(np.asarray(out["features"]) - feats["f"].numpy())))
    d_l = float(np.max(np.abs(np.asarray(out["logits"]) - logits.numpy())))
    scale = float(np.max(np.abs(logits.numpy())))
    f_scale = float(np.max(np.abs(feats["f"].numpy())))
    print(
        f"reference: {source}, torch {torch.__version__}; jax {jax.__version__} "
        f"({jax.devices()[0].platform})"
    )
    print(f"{args.arch}, {args.batch}x{args.size}x{args.size}x3, eval mode")
    print(
        f"max |features - ref| = {d_f:.3e} (max |feature| = {f_scale:.3g}); "
        f"max |logits - ref| = {d_l:.3e} (max |logit| = {scale:.3g})"
    )
    # Float32 round-off yardstick: both float32 runs against torch in float64.
    with torch.no_grad():
        l64 = ref.double()(torch.from_numpy(x.transpose(0, 3, 1, 2)).double())
    l64 = (l64[1] if isinstance(l64, tuple) else l64).numpy()
    print(
        f"vs torch float64: max |ours - f64| = {np.max(np.abs(out['logits'] - l64)):.3e}, "
        f"max |torch f32 - f64| = {np.max(np.abs(logits.numpy() - l64)):.3e}"
    )
    ok = d_l <= args.tol * max(1.0, scale)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
