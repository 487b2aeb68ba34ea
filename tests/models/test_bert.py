"""BERT encoder tests: HF-keyed random weights vs an independent NumPy forward."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.models.reference import bert_forward
from tljax.models import build_classifier, get_backbone_factory
from tljax.models.bert import Bert, from_pretrained_dir, pack_inputs, read_config
from tljax.models.weights import load_hf_bert

# Compared with float64/NumPy/torch references at 1e-4: full float32 matmuls and
# convolutions (GPUs default to TF32, ~1e-3; tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

CFG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 50,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 16,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def hf_state_dict(cfg=CFG, seed=0, pooler=True) -> dict[str, np.ndarray]:
    """Random weights under HF BertModel's key names and shapes."""
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, (o, n_in) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (f, h),
            "output.dense": (h, f),
        }.items():
            shapes[p + name + ".weight"] = (o, n_in)
            shapes[p + name + ".bias"] = (o,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + ln + ".weight"] = (h,)
            shapes[p + ln + ".bias"] = (h,)
    if pooler:
        shapes["pooler.dense.weight"] = (h, h)
        shapes["pooler.dense.bias"] = (h,)
    sd = {}
    for k, s in shapes.items():
        if "LayerNorm.weight" in k:
            sd[k] = rng.uniform(0.5, 1.5, s).astype(np.float32)
        else:
            sd[k] = (0.2 * rng.standard_normal(s)).astype(np.float32)
    sd["embeddings.position_ids"] = np.arange(cfg["max_position_embeddings"])[None]
    return sd


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny checkpoint on disk, the model loaded from it, and one jitted forward.

    The tests share ``run(state, *args)`` (compiled once per input signature): eager NNX
    would compile every op separately, which is slow on a CPU.
    """
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("tiny_bert")
    (d / "config.json").write_text(json.dumps(CFG))
    sd = hf_state_dict()
    save_file(sd, str(d / "model.safetensors"))
    model = from_pretrained_dir(d)
    model.eval()
    graph = nnx.graphdef(model)
    run = jax.jit(lambda s, *a, **k: nnx.merge(graph, s)(*a, **k))
    return sd, model, run


def _inputs():
    rng = np.random.default_rng(1)
    ids = rng.integers(1, CFG["vocab_size"], (3, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = np.zeros_like(ids)
    types[0, 5:] = 1
    return ids, mask, types


def test_matches_numpy_reference(pretrained):
    sd, model, run = pretrained
    ids, mask, types = _inputs()
    out = run(nnx.state(model), pack_inputs(ids, mask, types))
    ref = bert_forward(sd, read_config(CFG), ids, mask, types)
    m = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out["hidden_states"])[m], ref[m], rtol=1e-4, atol=1e-4)
    ref_mean = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(out["features"], ref_mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["cls"], ref[:, 0], rtol=1e-4, atol=1e-4)
    pooled = np.tanh(ref[:, 0] @ sd["pooler.dense.weight"].T + sd["pooler.dense.bias"])
    np.testing.assert_allclose(out["pooled"], pooled, rtol=1e-4, atol=1e-4)
    assert model.feature_dim == CFG["hidden_size"]


def test_calling_conventions_agree(pretrained):
    _, model, run = pretrained
    state = nnx.state(model)
    ids, mask, types = _inputs()
    packed = run(state, pack_inputs(ids, mask, types))["hidden_states"]
    explicit = run(state, jnp.asarray(ids), attention_mask=mask, token_type_ids=types)
    np.testing.assert_allclose(explicit["hidden_states"], packed, rtol=1e-6, atol=1e-6)
    no_mask = run(state, ids)["features"]  # 2-D ids: every position attended, segment 0
    full = pack_inputs(ids, np.ones_like(mask), np.zeros_like(types))
    np.testing.assert_allclose(no_mask, run(state, full)["features"], rtol=1e-6, atol=1e-6)


def test_padding_content_is_ignored(pretrained):
    """Whatever ids and segments sit under mask 0 leave the unmasked outputs unchanged."""
    _, model, run = pretrained
    state = nnx.state(model)
    ids, mask, types = _inputs()
    out = run(state, pack_inputs(ids, mask, types))
    rng = np.random.default_rng(2)
    noisy_ids = np.where(mask > 0, ids, rng.integers(0, CFG["vocab_size"], ids.shape))
    noisy_types = np.where(mask > 0, types, 1)
    out2 = run(state, pack_inputs(noisy_ids, mask, noisy_types))
    np.testing.assert_allclose(out2["features"], out["features"], rtol=1e-5, atol=1e-5)
    m = mask.astype(bool)
    np.testing.assert_allclose(
        np.asarray(out2["hidden_states"])[m], np.asarray(out["hidden_states"])[m], atol=1e-5
    )


def test_bad_inputs_raise(pretrained):
    _, model, _ = pretrained
    ids, mask, _ = _inputs()
    with pytest.raises(TypeError, match="integer token ids"):
        model(pack_inputs(ids, mask).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(n, seq\), \(n, 2, seq\)"):
        model(np.zeros((2, 4, 3, 5), np.int32))
    with pytest.raises(ValueError, match="exceeds 16 positions"):
        model(np.zeros((1, 17), np.int32))


def test_prefixed_and_legacy_keys_load_the_same(pretrained):
    sd, model, run = pretrained
    legacy = {}
    for k, v in sd.items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma")
        legacy["bert." + k.replace("LayerNorm.bias", "LayerNorm.beta")] = v
    legacy["cls.predictions.bias"] = np.zeros(CFG["vocab_size"], np.float32)  # a task head
    other = Bert(CFG, rngs=nnx.Rngs(1))
    load_hf_bert(other, legacy)
    other.eval()
    x = pack_inputs(*_inputs())
    np.testing.assert_array_equal(
        run(nnx.state(other), x)["features"], run(nnx.state(model), x)["features"]
    )
    no_pooler = Bert(CFG, add_pooler=False, rngs=nnx.Rngs(1))
    load_hf_bert(no_pooler, legacy)  # the checkpoint's pooler is dropped
    np.testing.assert_array_equal(
        no_pooler.layers[1].output.kernel[...], sd["encoder.layer.1.output.dense.weight"].T
    )


def test_strict_loading_errors():
    sd = hf_state_dict(pooler=False)
    model = Bert(CFG, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"missing \(2\): pooler.dense.bias; pooler.dense.weight"):
        load_hf_bert(model, sd)
    sd = hf_state_dict()
    sd["encoder.layer.2.output.dense.bias"] = np.zeros(32, np.float32)
    sd["encoder.layer.0.intermediate.dense.weight"] = np.zeros((32, 64), np.float32)
    with pytest.raises(ValueError) as err:
        load_hf_bert(model, sd)
    assert "unexpected (1): encoder.layer.2.output.dense.bias" in str(err.value)
    assert "encoder.layer.0.intermediate.dense.weight: (32, 64)" in str(err.value)


def test_config_validation():
    with pytest.raises(ValueError, match="lacks.*hidden_size"):
        read_config({k: v for k, v in CFG.items() if k != "hidden_size"})
    with pytest.raises(ValueError, match="model_type='roberta'"):
        read_config({**CFG, "model_type": "roberta"})
    with pytest.raises(ValueError, match="hidden_act='swish'"):
        read_config({**CFG, "hidden_act": "swish"})
    with pytest.raises(ValueError, match="not divisible"):
        read_config({**CFG, "num_attention_heads": 5})


def test_registry_classifier_and_dropout():
    factory = get_backbone_factory("bert")
    with pytest.raises(ValueError, match="input_shape"):
        factory((4, 8), rngs=nnx.Rngs(0), config=CFG)
    model = build_classifier("bert", (2, 8), 3, rngs=nnx.Rngs(0), config=CFG)
    graph, state = nnx.split(model)
    hash(graph)  # static under jax.jit
    x = pack_inputs(np.ones((2, 8), np.int32), np.ones((2, 8), np.int32))
    logits, out = jax.eval_shape(lambda s, x: nnx.merge(graph, s)(x), state, x)  # no compile
    assert logits.shape == (2, 3) and out["hidden_states"].shape == (2, 8, 32)

    # dropout=None takes the config's rates; the embeddings alone keep the compile short.
    cfg = {**CFG, "num_hidden_layers": 1, "attention_probs_dropout_prob": 0.2}
    noisy = Bert(cfg, dropout=None, rngs=nnx.Rngs(0, dropout=1))
    assert noisy.embeddings.dropout.rate == 0.1 and noisy.layers[0].dropout.rate == 0.1
    assert noisy.layers[0].attention.dropout.rate == 0.2
    assert Bert(cfg, rngs=nnx.Rngs(0)).layers[0].dropout is None  # default: no dropout
    emb = nnx.jit(lambda m, i: m(i, jnp.zeros_like(i)))
    noisy.train()
    ids = jnp.ones((2, 8), jnp.int32)
    assert not np.allclose(emb(noisy.embeddings, ids), emb(noisy.embeddings, ids))
