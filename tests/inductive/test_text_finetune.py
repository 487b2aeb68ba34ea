"""Text fine-tuning end to end: a tiny BERT on the constructed reviews through the trainer,
``config.model.pretrained`` loading, token ids kept integer, and (when its files are on
the machine) a short real all-MiniLM-L6-v2 fine-tune."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from tests.inductive.text_helpers import (  # noqa: E402
    MINILM_DIR,
    TINY_BERT,
    write_hf_model,
    write_tokenizer,
)
from tljax.config import base_config  # noqa: E402
from tljax.data.stream import DomainPairStream  # noqa: E402
from tljax.logs import read_metrics  # noqa: E402
from tljax.loop import build, train_and_evaluate  # noqa: E402
from tljax.models.bert import Bert  # noqa: E402
from tljax.models.weights import load_hf_bert  # noqa: E402

MAX_LEN = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tokenizer.json and a tiny random BERT in HF layout (config.json + safetensors)."""
    root = tmp_path_factory.mktemp("text")
    tok = write_tokenizer(root / "tokenizer.json")
    sd = write_hf_model(root / "bert")
    return tok, str(root / "bert"), sd


def tiny_config(tokenizer, pretrained="", *, method="source_only", task="reviews", steps=60):
    c = base_config()
    c.data.task = task
    c.data.task_kwargs.tokenizer = tokenizer
    c.data.task_kwargs.max_len = MAX_LEN
    c.data.task_kwargs.n_train = 512
    c.data.task_kwargs.n_test = 256
    c.data.batch_size = 32
    c.model.backbone = "bert"
    c.model.backbone_kwargs.add_pooler = False
    if pretrained:
        c.model.pretrained = pretrained
    else:
        c.model.backbone_kwargs.config = dict(TINY_BERT)
    c.method.name = method
    c.optim.optimizer = "adamw"
    c.optim.lr = 3e-3
    c.optim.schedule = "constant"
    c.optim.weight_decay = 0.0
    c.train.steps = steps
    c.train.log_every = 10
    c.train.eval_every = steps
    c.train.checkpoint_every = steps
    c.train.eval_batch_size = 128
    c.train.progress = False
    c.train.tensorboard = False
    return c


def test_tiny_bert_learns_the_constructed_sentiment_task(files, tmp_path):
    tok, model_dir, _ = files
    config = tiny_config(tok, model_dir)
    results = train_and_evaluate(config, str(tmp_path / "run"))
    losses = [m["loss"] for m in read_metrics(str(tmp_path / "run"), "train")]
    assert results["steps"] == 60 and results["evaluated_on"]["source"] == "reviews/test"
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses
    assert results["source_test_acc"] > 0.75, results
    # Re-running the finished run resumes from its checkpoint, not from the pretrained file.
    again = train_and_evaluate(config, str(tmp_path / "run"))
    assert again["trained_steps_this_run"] == 0
    assert again["source_test_acc"] == results["source_test_acc"]


def _backbone_features(graphs, params, rest, x):
    net = nnx.merge(graphs.eval_graph, params, rest)
    return np.asarray(jax.jit(lambda x: net.model.backbone(x)["features"])(x))


def test_pretrained_weights_are_loaded_into_the_backbone(files):
    tok, model_dir, sd = files
    parts = build(tiny_config(tok, model_dir, method="l2sp"))
    state = parts["state"]
    x = parts["task"].source.test.x[:8]
    reference = Bert(TINY_BERT, add_pooler=False, rngs=nnx.Rngs(1))
    load_hf_bert(reference, sd)
    reference.eval()
    expected = np.asarray(jax.jit(lambda x: reference(x)["features"])(x))
    got = _backbone_features(parts["graphs"], state.params, state.rest, x)
    np.testing.assert_array_equal(got, expected)
    backbone = state.params["model"]["backbone"]
    np.testing.assert_array_equal(
        backbone["layers"][1]["intermediate"]["kernel"],
        sd["encoder.layer.1.intermediate.dense.weight"].T,
    )
    # The copy L2-SP makes at Method.init already holds the pretrained weights.
    start = state.rest["method"]["start"]["backbone"]
    np.testing.assert_array_equal(
        start["embeddings"]["word_embeddings"]["embedding"],
        sd["embeddings.word_embeddings.weight"],
    )
    # A single .safetensors file works too, with the HF config given explicitly.
    c = tiny_config(tok, os.path.join(model_dir, "model.safetensors"))
    c.model.backbone_kwargs.config = os.path.join(model_dir, "config.json")
    p2 = build(c)["state"].params
    np.testing.assert_array_equal(
        p2["model"]["backbone"]["layers"][0]["attention"]["query"]["kernel"],
        backbone["layers"][0]["attention"]["query"]["kernel"],
    )


def test_pretrained_errors(files, tmp_path):
    tok, model_dir, _ = files
    with pytest.raises(FileNotFoundError, match=r"pretrained='/nonexistent/bert' does not exist"):
        build(tiny_config(tok, "/nonexistent/bert"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"without weights: expected one of"):
        c = tiny_config(tok, str(tmp_path / "empty"))
        c.model.backbone_kwargs.config = dict(TINY_BERT)
        build(c)
    with pytest.raises(ValueError, match="has no config.json beside it"):
        build(tiny_config(tok, os.path.join(model_dir, "model.safetensors")))
    c = base_config()
    c.data.task = "moons"
    c.model.backbone = "mlp"
    c.model.pretrained = model_dir
    with pytest.raises(ValueError, match=r"backbone 'mlp' has no weights loader; .*'bert'"):
        build(c)
    wide = dict(TINY_BERT, intermediate_size=48)
    c = tiny_config(tok, model_dir)
    c.model.backbone_kwargs.config = wide
    with pytest.raises(ValueError, match="Cannot load Hugging Face BERT weights"):
        build(c)


def test_token_ids_stay_integer_through_the_pipeline(files):
    tok, model_dir, _ = files
    c = tiny_config(tok, model_dir, method="dann", task="reviews->products")
    c.model.dtype = "bfloat16"  # floats are cast to bf16; ids above 256 would not survive
    c.method.hparams.hidden = (16,)
    parts = build(c)
    task = parts["task"]
    batch = next(DomainPairStream(task, 8, seed=0))
    for domain in ("source", "target"):
        assert batch[domain]["image"].dtype == np.int32
    assert np.isin(batch["source"]["image"], task.source.train.x).all()
    # Tracing is enough: BERT raises a TypeError on any non-integer input.
    state, metrics = jax.eval_shape(parts["train_step"], parts["state"], batch)
    assert metrics["loss"].shape == ()
    logits, _ = jax.eval_shape(
        parts["eval_step"], parts["state"].params, parts["state"].rest, task.source.test.x[:4]
    )
    assert logits.shape == (4, 2)
    c.data.standardize = True
    with pytest.raises(ValueError, match="standardize=True but task .* int32 inputs"):
        build(c)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(MINILM_DIR, "model.safetensors")),
    reason=f"all-MiniLM-L6-v2 not found in {MINILM_DIR} (set TLJAX_MINILM_DIR; how to get "
    "it: configs/text/common.py)",
)
def test_real_minilm_finetunes_on_the_constructed_reviews(tmp_path):
    from configs.text import finetune_reviews

    c = finetune_reviews.get_config(f"minilm={MINILM_DIR},steps=20,batch=16,max_len=36,lr=1e-4")
    c.data.task_kwargs.n_train = 128
    c.data.task_kwargs.n_test = 64
    c.train.progress = False
    c.train.tensorboard = False
    results = train_and_evaluate(c, str(tmp_path / "minilm"))
    assert results["steps"] == 20
    assert results["source_test_acc"] > 0.75, results


def test_runs_from_before_new_config_fields_still_resume(tmp_path):
    """A workdir whose config.json predates ``data.task_kwargs``/``model.pretrained``."""
    import json

    from tests.configs import tiny
    from tljax.workdir import check_config

    c = tiny.get_config("source_only,moons")
    check_config(str(tmp_path), c)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    for key in ("data.task_kwargs", "model.pretrained"):
        del saved[key]
    path.write_text(json.dumps(saved))
    check_config(str(tmp_path), c)  # the new fields hold their defaults: accepted
    path.write_text(json.dumps({k: v for k, v in saved.items() if k != "model.pretrained"}))
    c.model.pretrained = "/some/weights.pth"
    with pytest.raises(ValueError, match=r"differs in \['model.pretrained'\]"):
        check_config(str(tmp_path), c)
