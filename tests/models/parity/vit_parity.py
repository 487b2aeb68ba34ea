"""ViT parity check: tljax's ViT vs Hugging Face ``transformers.ViTModel`` (PyTorch).

Not a pytest module (needs torch + transformers, which tljax does not depend on). Run:

    python3 -m venv /work/ref-venv2
    /work/ref-venv2/bin/pip install torch==2.13.0 transformers safetensors numpy
    .venv/bin/python tests/models/parity/vit_parity.py --ref-python /work/ref-venv2/bin/python

The reference (``--reference`` mode of this same file, run by the reference interpreter
in a subprocess so the environments never mix) builds a randomly initialised ``ViTModel``
with the ViT-S/16 architecture (hidden 384, 12 layers, 6 heads, MLP 1536, patch 16, 224
px, with pooler; every parameter perturbed by N(0, 0.02²) so biases and LayerNorms are not
at their init values), runs it on random images at 224 px and, with
``interpolate_pos_encoding=True``, at 160 px (grid 14 → 10) and 256 px (14 → 16), and
writes its state dict and outputs. This script loads the state dict with
:func:`tljax.models.vit.load_hf_vit` into models built for each size (position embeddings
resized on loading) and compares the final hidden states and the pooler output. Exits
non-zero when a max abs difference exceeds ``--tol``.

Measured (2026-12-04, CPU, jax 0.10.2 vs torch 2.13.0+cpu + transformers 5.25.0, eager
attention, 2 images per size; the command above):

    224 px: max |tokens - ref| = 3.65e-06, max |pooled - ref| = 1.67e-06
    160 px: max |tokens - ref| = 3.81e-06, max |pooled - ref| = 1.67e-06
    256 px: max |tokens - ref| = 4.53e-06, max |pooled - ref| = 1.53e-06

transformers 5 keeps ViTModel's blocks as ``layers.N.attention.q_proj`` / ``mlp.fc1`` in
memory (its loader renames the published ``encoder.layer.N...`` keys); this run therefore
also checks that :func:`tljax.models.vit.load_hf_vit` maps those names back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

SIZES = (224, 160, 256)


def reference(io_path: str) -> None:
    """Builds the HF model, runs it on the images in ``io_path``, writes everything back."""
    import torch
    from transformers import ViTConfig, ViTModel
    from transformers import __version__ as version

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        image_size=224,
        patch_size=16,
        attn_implementation="eager",
    )
    model = ViTModel(cfg, add_pooling_layer=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    data = dict(np.load(io_path))
    out = {f"sd/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for size in SIZES:
            x = torch.from_numpy(data[f"x{size}"].transpose(0, 3, 1, 2).copy())
            o = model(pixel_values=x, interpolate_pos_encoding=size != 224)
            out[f"tokens{size}"] = o.last_hidden_state.numpy()
            out[f"pooled{size}"] = o.pooler_output.numpy()
    impl = model.config._attn_implementation
    out["versions"] = np.array(f"torch {torch.__version__}, transformers {version}, {impl}")
    np.savez(io_path, **out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref-python", default="/work/ref-venv2/bin/python")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--reference", metavar="NPZ", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        reference(args.reference)
        return 0

    import jax
    from flax import nnx

    jax.config.update("jax_default_matmul_precision", "highest")
    from tljax.models.vit import load_hf_vit, vit_s16

    rng = np.random.default_rng(0)
    images = {f"x{s}": rng.standard_normal((2, s, s, 3)).astype(np.float32) for s in SIZES}
    with tempfile.TemporaryDirectory() as d:
        io_path = os.path.join(d, "io.npz")
        np.savez(io_path, **images)
        subprocess.run(
            [args.ref_python, os.path.abspath(__file__), "--reference", io_path], check=True
        )
        ref = dict(np.load(io_path))
    sd = {k[3:]: v for k, v in ref.items() if k.startswith("sd/")}
    print(f"reference: ViTModel, {ref['versions']} attention")
    worst = 0.0
    for size in SIZES:
        model = vit_s16((size, size, 3), rngs=nnx.Rngs(0), add_pooler=True)
        load_hf_vit(model, sd)  # resizes the position embeddings for 160 and 256 px
        model.eval()
        out = jax.jit(lambda x, m=model: m(x))(images[f"x{size}"])
        d_tok = float(np.max(np.abs(np.asarray(out["tokens"]) - ref[f"tokens{size}"])))
        d_pool = float(np.max(np.abs(np.asarray(out["pooled"]) - ref[f"pooled{size}"])))
        print(f"{size} px: max |tokens - ref| = {d_tok:.2e}, max |pooled - ref| = {d_pool:.2e}")
        worst = max(worst, d_tok, d_pool)
    ok = worst <= args.tol
    print("PASS" if ok else f"FAIL (tol {args.tol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
