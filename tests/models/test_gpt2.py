"""GPT-2 tests: HF ``GPT2Model``-keyed random weights vs an independent float64 NumPy
forward, causal masking, padding invariance, the tied LM head, strict loading, the
byte-level BPE tokenizer, registry and freezing rules."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.models.reference_transformers import gpt2_forward, gpt2_shapes, random_weights
from tljax import optim
from tljax.models import backbone_names, build_classifier, pretrained
from tljax.models.gpt2 import (
    GPT2,
    from_pretrained_dir,
    gpt2,
    load_hf_gpt2,
    pack_inputs,
    read_config,
)

# Compared with float64 references at 1e-4: full float32 matmuls (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

CFG = {"model_type": "gpt2", "vocab_size": 50, "n_positions": 24, "n_embd": 32, "n_layer": 2}
CFG["n_head"] = 4
HEADS = CFG["n_head"]


def hf_gpt2(seed=0, cfg=CFG) -> dict[str, np.ndarray]:
    shapes = gpt2_shapes(cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"])
    return random_weights(shapes, seed)


def _inputs(seed=1):
    """Right-padded ids: lengths 10, 6, 3 of 10."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CFG["vocab_size"], (3, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask


def _run(model):
    graph = nnx.graphdef(model)
    return jax.jit(lambda s, x: nnx.merge(graph, s)(x))


@pytest.fixture(scope="module")
def loaded():
    sd = hf_gpt2()
    model = GPT2(CFG, lm_head=True, rngs=nnx.Rngs(0))
    load_hf_gpt2(model, sd)
    run = _run(model)
    return sd, model, lambda x, m=model: run(nnx.state(m), x)


def test_matches_numpy_reference(loaded):
    sd, model, run = loaded
    ids, mask = _inputs()
    out = run(pack_inputs(ids, mask))
    ref = gpt2_forward(sd, ids, mask, heads=HEADS)
    m = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out["hidden_states"])[m], ref[m], rtol=1e-4, atol=1e-4)
    last = ref[np.arange(3), mask.sum(1) - 1]
    np.testing.assert_allclose(out["features"], last, rtol=1e-4, atol=1e-4)
    logits = ref @ sd["wte.weight"].astype(np.float64).T  # the head tied to wte
    np.testing.assert_allclose(np.asarray(out["lm_logits"])[m], logits[m], rtol=1e-4, atol=1e-4)
    assert model.feature_dim == 32

    mean_model = GPT2(CFG, pool="mean", rngs=nnx.Rngs(5))
    load_hf_gpt2(mean_model, sd)
    feats = _run(mean_model)(nnx.state(mean_model), pack_inputs(ids, mask))["features"]
    ref_mean = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(feats, ref_mean, rtol=1e-4, atol=1e-4)


def test_causal_mask(loaded):
    """The output at position t does not depend on tokens after t, and does on token t."""
    _, _, run = loaded
    ids, _ = _inputs()
    h = np.asarray(run(ids)["hidden_states"])
    for t in (0, 4, 8):
        later = ids.copy()
        later[:, t + 1 :] = (later[:, t + 1 :] + 7) % CFG["vocab_size"]
        h2 = np.asarray(run(later)["hidden_states"])
        np.testing.assert_allclose(h2[:, : t + 1], h[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert np.abs(h2[:, t + 1 :] - h[:, t + 1 :]).max() > 1e-2
    changed = ids.copy()
    changed[:, 4] = (changed[:, 4] + 1) % CFG["vocab_size"]
    assert np.abs(np.asarray(run(changed)["hidden_states"])[:, 4] - h[:, 4]).max() > 1e-2


def test_padding_is_ignored_right_and_left(loaded):
    sd, _, run = loaded
    ids, mask = _inputs()
    out = run(pack_inputs(ids, mask))
    noisy = np.where(mask > 0, ids, (ids + 13) % CFG["vocab_size"])
    out2 = run(pack_inputs(noisy, mask))
    np.testing.assert_allclose(out2["features"], out["features"], rtol=1e-5, atol=1e-5)
    # Left padding: positions come from the mask, so the tokens see what they see unpadded.
    n = 4
    left_ids = np.concatenate([np.full((1, 10 - n), 3), ids[2:, :n]], axis=1).astype(np.int32)
    left_mask = np.concatenate([np.zeros((1, 10 - n)), np.ones((1, n))], axis=1).astype(np.int32)
    left = run(pack_inputs(left_ids, left_mask))
    ref = gpt2_forward(sd, ids[2:, :n], np.ones((1, n)), heads=HEADS)
    np.testing.assert_allclose(left["features"], ref[:, -1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(left["hidden_states"][:, -n:], ref, rtol=1e-4, atol=1e-4)
    assert np.isfinite(np.asarray(left["hidden_states"])).all()  # fully masked pad rows


def test_lm_head_is_tied_to_wte(loaded):
    sd, model, _ = loaded
    paths = optim.param_paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert not any("head" in p for p in paths) and "wte/embedding" in paths
    # Changing the embedding of a token the input does not contain changes only that
    # token's logit column, by exactly h @ (new - old).
    ids = np.array([[1, 2, 3, 4]], np.int32)
    other = GPT2(CFG, lm_head=True, rngs=nnx.Rngs(0))
    load_hf_gpt2(other, sd)
    run = _run(other)
    # np.asarray waits for the result; a new array (not an in-place write) replaces wte.
    out = jax.tree.map(np.asarray, run(nnx.state(other), ids))
    delta = np.random.default_rng(0).standard_normal(32).astype(np.float32)
    emb = np.array(other.wte.embedding[...])
    emb[7] += delta
    other.wte.embedding.set_value(jnp.asarray(emb))
    out2 = jax.tree.map(np.asarray, run(nnx.state(other), ids))
    np.testing.assert_array_equal(out2["hidden_states"], out["hidden_states"])
    diff = np.asarray(out2["lm_logits"] - out["lm_logits"])
    np.testing.assert_allclose(diff[..., 7], np.asarray(out["hidden_states"]) @ delta, atol=1e-5)
    np.testing.assert_array_equal(np.delete(diff, 7, axis=-1), 0)


def test_loading_prefixes_buffers_tied_head_and_errors():
    sd = hf_gpt2()
    full = {"transformer." + k: v for k, v in sd.items()}
    for i in range(CFG["n_layer"]):  # HF's causal-mask buffers
        full[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 24, 24), bool))
        full[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    full["lm_head.weight"] = sd["wte.weight"].copy()
    full["score.weight"] = np.zeros((2, 32), np.float32)  # a classification head: dropped
    model = GPT2(CFG, rngs=nnx.Rngs(1))
    load_hf_gpt2(model, full)
    np.testing.assert_array_equal(model.h[1].attn.c_attn.kernel[...], sd["h.1.attn.c_attn.weight"])
    np.testing.assert_array_equal(model.h[0].attn.c_attn.bias[...], sd["h.0.attn.c_attn.bias"])

    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
    untied = dict(full, **{"lm_head.weight": sd["wte.weight"] + 1})
    with pytest.raises(ValueError, match="untied head"):
        load_hf_gpt2(model, untied)
    bad = dict(sd)
    del bad["h.0.ln_2.bias"]
    bad["h.2.mlp.c_fc.bias"] = np.zeros(128, np.float32)
    bad["h.1.mlp.c_fc.weight"] = np.zeros((128, 32), np.float32)  # (out, in): not Conv1D
    with pytest.raises(ValueError) as err:
        load_hf_gpt2(model, bad)
    msg = str(err.value)
    assert "missing (1): h.0.ln_2.bias" in msg
    assert "unexpected (1): h.2.mlp.c_fc.bias" in msg
    assert "h.1.mlp.c_fc.weight: (128, 32)" in msg
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(model)), before)
    with pytest.raises(ValueError, match="classifier.backbone"):
        load_hf_gpt2(build_classifier("gpt2", (8,), 2, rngs=nnx.Rngs(0), config=CFG), sd)


def test_pretrained_directory_and_registry(tmp_path):
    from safetensors.numpy import save_file

    sd = hf_gpt2(seed=3)
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    save_file(sd, str(tmp_path / "model.safetensors"))
    assert "gpt2" in backbone_names() and "gpt2" in pretrained.loader_names()
    kwargs = pretrained.backbone_kwargs("gpt2", {}, str(tmp_path))
    assert kwargs["config"] == str(tmp_path / "config.json")
    clf = build_classifier("gpt2", (2, 8), 3, rngs=nnx.Rngs(0), **kwargs)
    pretrained.load(clf.backbone, "gpt2", str(tmp_path))
    direct = from_pretrained_dir(tmp_path)
    np.testing.assert_array_equal(clf.backbone.wpe.embedding[...], sd["wpe.weight"])
    np.testing.assert_array_equal(direct.ln_f.scale[...], sd["ln_f.weight"])

    graph, state = nnx.split(clf)
    hash(graph)  # static under jax.jit
    x = pack_inputs(np.ones((2, 8), np.int32), np.ones((2, 8), np.int32))
    logits, out = jax.eval_shape(lambda s, x: nnx.merge(graph, s)(x), state, x)
    assert logits.shape == (2, 3) and out["hidden_states"].shape == (2, 8, 32)
    with pytest.raises(ValueError, match=r"\(seq,\) or \(2, seq\)"):
        gpt2((3, 8), rngs=nnx.Rngs(0), config=CFG)
    with pytest.raises(ValueError, match="exceeds n_positions=24"):
        gpt2((25,), rngs=nnx.Rngs(0), config=CFG)
    with pytest.raises(TypeError, match="integer token ids"):
        direct(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(n, seq\) or \(n, 2, seq\)"):
        direct(np.zeros((1, 3, 4), np.int32))


def test_config_validation_dropout_and_bf16():
    assert read_config(None)["n_embd"] == 768 and read_config(CFG)["n_inner"] == 128
    with pytest.raises(ValueError, match="model_type='bert'"):
        read_config({**CFG, "model_type": "bert"})
    with pytest.raises(ValueError, match="activation_function='swish'"):
        read_config({**CFG, "activation_function": "swish"})
    with pytest.raises(ValueError, match="not divisible"):
        read_config({**CFG, "n_head": 5})
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        read_config({**CFG, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ValueError, match="pool='cls'.*'last', 'mean'"):
        GPT2(CFG, pool="cls", rngs=nnx.Rngs(0))
    noisy = GPT2({**CFG, "attn_pdrop": 0.2}, dropout=None, rngs=nnx.Rngs(0))
    assert noisy.drop.rate == 0.1 and noisy.h[0].attn.attn_dropout.rate == 0.2
    assert GPT2(CFG, rngs=nnx.Rngs(0)).h[0].mlp.dropout is None  # default: no dropout

    sd = hf_gpt2()
    half = gpt2((10,), rngs=nnx.Rngs(0), config=CFG, dtype="bfloat16")
    load_hf_gpt2(half, sd)
    params = nnx.state(half, nnx.Param)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    ids, mask = _inputs()
    out = _run(half)(nnx.state(half), pack_inputs(ids, mask))
    assert out["hidden_states"].dtype == jnp.bfloat16
    ref = gpt2_forward(sd, ids, mask, heads=HEADS)[np.arange(3), mask.sum(1) - 1]
    err = np.abs(np.asarray(out["features"], np.float64) - ref).max()
    assert err < 0.1 * np.abs(ref).max(), err


@pytest.fixture(scope="module")
def bpe_json(tmp_path_factory):
    """A tiny GPT-2-style byte-level BPE tokenizer.json, trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["the movie was great", "the plot was dull", "a great film, not dull"] * 20
    tok.train_from_iterator(corpus, trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


def test_byte_level_bpe_tokenizer_feeds_the_model(bpe_json):
    pytest.importorskip("tokenizers")
    from tljax.data.text import TextTokenizer

    tok = TextTokenizer.from_file(bpe_json)
    assert tok.pad_id == 0  # <|endoftext|>: GPT-2 has no padding token
    pieces = tok.tokenize("the movie was great")
    assert pieces[0] == "the" and all(p.startswith("Ġ") for p in pieces[1:])
    texts = ["the movie was great", "dull", "naïve ☃ café"]  # unseen bytes still encode
    ids, mask = tok.encode_batch(texts, max_len=24)
    assert ids.shape == (3, 24) and mask[1].sum() < mask[0].sum()
    assert (ids[mask == 0] == 0).all()
    raw = tok._tok.decode(ids[2, : mask[2].sum()].tolist())
    assert raw == texts[2]  # byte-level: lossless

    cfg = {**CFG, "vocab_size": tok.vocab_size}
    sd = hf_gpt2(seed=2, cfg=cfg)
    model = GPT2(cfg, rngs=nnx.Rngs(2))
    load_hf_gpt2(model, sd)
    batch = _run(model)(nnx.state(model), pack_inputs(ids, mask))["features"]
    for i, text in enumerate(texts):  # each text alone, unpadded, in the reference
        one_ids, one_mask = tok.encode_batch([text], max_len=int(mask[i].sum()))
        assert one_mask.all()
        ref = gpt2_forward(sd, one_ids, one_mask, heads=HEADS)[0, -1]
        np.testing.assert_allclose(batch[i], ref, rtol=1e-4, atol=1e-4)


# Rules of docs/transfer.md for GPT-2 (paths under the trainer's "model/").
LINEAR_PROBE = [(r"^model/head/", 1.0), (r".*", None)]
GRADUAL = [
    (r"^model/head/", 1.0),
    (r"^model/backbone/(h/1/|ln_f/)", (1.0, 100)),
    (r"^model/backbone/h/0/", (1.0, 200)),
    (r"^model/backbone/(wte|wpe)/", (1.0, 300)),
]


def test_freeze_rules_linear_probe_and_gradual_unfreezing():
    clf = build_classifier("gpt2", (10,), 3, rngs=nnx.Rngs(0), config=CFG)
    params = {"model": nnx.to_pure_dict(nnx.state(clf, nnx.Param))}
    tx, labels, _ = optim.make_optimizer(
        params, LINEAR_PROBE, optimizer="adamw", schedule=optax.constant_schedule(0.1)
    )
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    moved = {
        optim.path_str(p): bool(jnp.any(u != 0))
        for p, u in jax.tree_util.tree_flatten_with_path(updates)[0]
    }
    assert moved["model/head/kernel"] and moved["model/head/bias"]
    assert not any(v for k, v in moved.items() if not k.startswith("model/head/"))

    _, report = optim.match_rules(params, GRADUAL)  # every parameter covered
    start = {k: r for k, (_, r) in report.items()}
    assert start["model/backbone/ln_f/scale"] == (1.0, 100)
    assert start["model/backbone/h/1/attn/c_attn/kernel"] == (1.0, 100)
    assert start["model/backbone/h/0/mlp/c_proj/bias"] == (1.0, 200)
    assert start["model/backbone/wte/embedding"] == (1.0, 300)


@pytest.mark.slow  # a 60-step run through train_and_evaluate (~18 s on 2 shared cores)
def test_gpt2_fine_tunes_on_the_constructed_reviews_end_to_end(tmp_path):
    """``model.pretrained`` (a HF GPT-2 directory), a byte-level BPE tokenizer.json and the
    text task, through the trainer: last-token features learn the sentiment task."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from tests.inductive.test_text_finetune import tiny_config
    from tljax.data import sentiment
    from tljax.loop import train_and_evaluate

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([" ".join(sentiment.words())] * 5, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg = {**CFG, "vocab_size": tok.get_vocab_size(), "n_positions": 64}
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(cfg))
    sd = random_weights(gpt2_shapes(cfg["vocab_size"], 64, 32, 2), seed=0)
    sd = {k: v * 0.1 if v.ndim > 1 else v for k, v in sd.items()}  # HF-like init scale
    save_file(sd, str(tmp_path / "gpt2" / "model.safetensors"))

    c = tiny_config(str(tmp_path / "tokenizer.json"), str(tmp_path / "gpt2"))
    c.model.backbone = "gpt2"
    del c.model.backbone_kwargs["add_pooler"]
    c.model.backbone_kwargs.pool = "last"
    results = train_and_evaluate(c, str(tmp_path / "run"))
    assert results["steps"] == 60 and results["source_test_acc"] > 0.75, results
