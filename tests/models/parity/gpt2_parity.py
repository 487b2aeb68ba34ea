"""GPT-2 parity check: tljax's GPT2 vs Hugging Face ``transformers.GPT2LMHeadModel``.

Not a pytest module (needs torch + transformers, which tljax does not depend on). Run:

    python3 -m venv /work/ref-venv2
    /work/ref-venv2/bin/pip install torch==2.13.0 transformers safetensors numpy
    .venv/bin/python tests/models/parity/gpt2_parity.py --ref-python /work/ref-venv2/bin/python

The reference (``--reference`` mode of this same file, run by the reference interpreter
in a subprocess so the environments never mix) builds a randomly initialised
``GPT2LMHeadModel`` with GPT-2 small's architecture (768 wide, 12 layers, 12 heads, 1024
positions, vocabulary 50257; every parameter perturbed by N(0, 0.02²)), and runs it on

* a right-padded batch (lengths 32, 20, 7 of 32) with its attention mask and HF's default
  position ids;
* the same texts left-padded, with position ids ``cumsum(mask) - 1`` (as ``generate``
  builds them);

and writes its state dict (``transformer.*`` + the tied ``lm_head.weight``), hidden states
and logits. It also encodes a few texts with ``PreTrainedTokenizerFast`` from a byte-level
BPE ``tokenizer.json`` that this script trains with ``tokenizers`` (no download). This
script loads the state dict with :func:`tljax.models.gpt2.load_hf_gpt2` and compares the
hidden states and LM logits at the non-pad positions, and the token ids of
:class:`tljax.data.text.TextTokenizer`. Exits non-zero when a max abs difference exceeds
``--tol`` or the ids differ.

Measured (2026-12-04, CPU, jax 0.10.2 vs torch 2.13.0+cpu + transformers 5.25.0, eager
attention; the command above):

    byte-level BPE ids identical to PreTrainedTokenizerFast: True
    right-padded: max |hidden - ref| = 4.77e-06, max |lm_logits - ref| = 4.47e-06
    left-padded: max |hidden - ref| = 4.77e-06, max |lm_logits - ref| = 4.47e-06
    (logits up to 4.3)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

TEXTS = ["Transfer learning adapts a model.", "naïve café ☃ — 東京!", "short"]


def reference(io_path: str) -> None:
    """Builds the HF model, runs it on the ids in ``io_path``, writes everything back."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers import __version__ as version

    data = dict(np.load(io_path))
    torch.manual_seed(0)
    cfg = GPT2Config(attn_implementation="eager")
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # wte and lm_head are one tensor: perturbed together
            p.add_(0.02 * torch.randn_like(p))
    out = {f"sd/{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for side in ("right", "left"):
            ids = torch.from_numpy(data[f"{side}_ids"].astype(np.int64))
            mask = torch.from_numpy(data[f"{side}_mask"].astype(np.int64))
            pos = None
            if side == "left":
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
            o = model(
                input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True
            )
            out[f"{side}_hidden"] = o.hidden_states[-1].numpy()
            out[f"{side}_logits"] = o.logits.numpy()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(data["tokenizer"]))
    ids = [tok(t)["input_ids"] for t in TEXTS]
    out["hf_tok_ids"] = np.array([i + [-1] * (64 - len(i)) for i in ids])
    impl = model.config._attn_implementation
    out["versions"] = np.array(f"torch {torch.__version__}, transformers {version}, {impl}")
    np.savez(io_path, **out)


def _bpe_tokenizer(path: str) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([t.lower() for t in TEXTS] * 10 + TEXTS * 10, trainer)
    tok.save(path)


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
    from tljax.data.text import TextTokenizer
    from tljax.models.gpt2 import GPT2, load_hf_gpt2, pack_inputs

    rng = np.random.default_rng(0)
    seq, lengths = 32, (32, 20, 7)
    right_ids = rng.integers(0, 50257, (3, seq)).astype(np.int32)
    right_mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int32)
    right_ids[right_mask == 0] = 50256
    left_ids = np.full_like(right_ids, 50256)
    left_mask = np.zeros_like(right_mask)
    for i, n in enumerate(lengths):
        left_ids[i, seq - n :] = right_ids[i, :n]
        left_mask[i, seq - n :] = 1
    with tempfile.TemporaryDirectory() as d:
        tok_path = os.path.join(d, "tokenizer.json")
        _bpe_tokenizer(tok_path)
        io_path = os.path.join(d, "io.npz")
        np.savez(
            io_path,
            right_ids=right_ids,
            right_mask=right_mask,
            left_ids=left_ids,
            left_mask=left_mask,
            tokenizer=np.array(tok_path),
        )
        subprocess.run(
            [args.ref_python, os.path.abspath(__file__), "--reference", io_path], check=True
        )
        ref = dict(np.load(io_path))
        ids, mask = TextTokenizer.from_file(tok_path).encode_batch(TEXTS, 64)
    hf_ids = ref["hf_tok_ids"]
    same_ids = np.array_equal(np.where(mask > 0, ids, -1), hf_ids)

    sd = {k[3:]: v for k, v in ref.items() if k.startswith("sd/")}
    model = GPT2(None, lm_head=True, rngs=nnx.Rngs(0))  # None: GPT-2 small
    load_hf_gpt2(model, sd)  # transformer.* keys, tied lm_head.weight accepted
    model.eval()
    run = jax.jit(lambda x: model(x))
    print(f"reference: GPT2LMHeadModel, {ref['versions']} attention")
    print(f"byte-level BPE ids identical to PreTrainedTokenizerFast: {same_ids}")
    worst = 0.0
    for side, x_ids, x_mask in (("right", right_ids, right_mask), ("left", left_ids, left_mask)):
        out = run(pack_inputs(x_ids, x_mask))
        m = x_mask.astype(bool)
        d_h = float(np.abs(np.asarray(out["hidden_states"])[m] - ref[f"{side}_hidden"][m]).max())
        d_l = float(np.abs(np.asarray(out["lm_logits"])[m] - ref[f"{side}_logits"][m]).max())
        scale = float(np.abs(ref[f"{side}_logits"][m]).max())
        print(
            f"{side}-padded: max |hidden - ref| = {d_h:.2e}, max |lm_logits - ref| = {d_l:.2e} "
            f"(logits up to {scale:.1f})"
        )
        worst = max(worst, d_h, d_l / max(scale, 1.0))
    ok = same_ids and worst <= args.tol
    print("PASS" if ok else f"FAIL (tol {args.tol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
