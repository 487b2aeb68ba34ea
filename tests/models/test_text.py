"""Tokenizer tests on a tiny BERT WordPiece tokenizer.json built here (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from tljax.data.text import TextTokenizer, load_tokenizer  # noqa: E402

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "hello",
    ",",
    "world",
    "!",
    "un",
    "##aff",
    "##able",
    "the",
    "cafe",
    "a",
]
ID = {t: i for i, t in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    """The pipeline of bert-base-uncased / all-MiniLM-L6-v2, with a 15-token vocabulary."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_truncation(max_length=128)  # the file's own settings must not leak through
    tok.enable_padding(length=128)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def test_wordpiece_lowercase_accents_and_punctuation(tokenizer_json):
    tok = TextTokenizer.from_file(tokenizer_json)
    assert tok.tokenize("Hello, WORLD! Unaffable café") == [
        "[CLS]",
        "hello",
        ",",
        "world",
        "!",
        "un",
        "##aff",
        "##able",
        "cafe",
        "[SEP]",
    ]
    assert tok.vocab_size == len(VOCAB)


def test_encode_batch_pads_truncates_and_masks(tokenizer_json):
    tok = load_tokenizer(tokenizer_json.parent)  # a directory works too
    ids, mask = tok.encode_batch(["hello world", "the unaffable zebra , a a a a"], max_len=6)
    assert ids.dtype == np.int32 and mask.dtype == np.int32 and ids.shape == (2, 6)
    c, s, p = ID["[CLS]"], ID["[SEP]"], ID["[PAD]"]
    np.testing.assert_array_equal(ids[0], [c, ID["hello"], ID["world"], s, p, p])
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1, 0, 0])
    # Truncated to 6 with [SEP] kept last; unknown words become [UNK].
    np.testing.assert_array_equal(ids[1], [c, ID["the"], ID["un"], ID["##aff"], ID["##able"], s])
    np.testing.assert_array_equal(mask[1], np.ones(6))
    ids, _ = tok.encode_batch(["zebra"], max_len=4)
    np.testing.assert_array_equal(ids[0], [c, ID["[UNK]"], s, p])


def test_bad_arguments(tokenizer_json, tmp_path):
    tok = TextTokenizer.from_file(tokenizer_json)
    with pytest.raises(ValueError, match="sequence of strings"):
        tok.encode_batch("hello", max_len=8)
    with pytest.raises(ValueError, match="max_len=2"):
        tok.encode_batch(["hello"], max_len=2)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextTokenizer.from_file(tmp_path)
    with pytest.raises(ValueError, match="'<pad>'"):
        TextTokenizer.from_file(tokenizer_json, pad_token="<pad>")
