"""Text tokenization for BERT and GPT-2 backbones, from a Hugging Face ``tokenizer.json``.

Uses the ``tokenizers`` package (a Rust wheel, no torch): the file carries the whole
pipeline — BERT normalizer (clean text, lowercase, strip accents, CJK spacing), BERT
pre-tokenizer, WordPiece with its vocabulary and the ``[CLS] … [SEP]`` template — so the
ids are exactly those the model was trained with. GPT-2's file (byte-level BPE, no special
tokens added) works the same way; it has no padding token, so ``<|endoftext|>`` pads (under
mask 0).

Example::

    tok = TextTokenizer.from_file("all-MiniLM-L6-v2/tokenizer.json")
    ids, mask = tok.encode_batch(["a photo of a cat", "a dog"], max_len=32)
    out = bert_model(pack_inputs(ids, mask))  # tljax.models.bert
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

# Looked up in this order when no padding token is given: BERT's, T5/RoBERTa-style,
# GPT-2's end-of-text (GPT-2 has no padding token; padded positions carry mask 0).
PAD_TOKENS = ("[PAD]", "<pad>", "<|endoftext|>")


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:
        raise ImportError(
            "Text tokenization needs the `tokenizers` package: pip install tokenizers"
        ) from e
    return tokenizers


class TextTokenizer:
    """Encodes texts into fixed-length ``(ids, mask)`` int32 arrays.

    Args:
      tokenizer: a ``tokenizers.Tokenizer``.
      pad_token: the padding token (its id is looked up in the vocabulary); ``None``: the
        first of :data:`PAD_TOKENS` in the vocabulary.

    Raises:
      ValueError: if ``pad_token`` is not in the vocabulary.
    """

    def __init__(self, tokenizer, *, pad_token: str | None = None):
        self._tok = tokenizer
        candidates = PAD_TOKENS if pad_token is None else (pad_token,)
        ids = [tokenizer.token_to_id(t) for t in candidates]
        pad_id = next((i for i in ids if i is not None), None)
        if pad_id is None:
            raise ValueError(
                f"Padding token {pad_token or list(PAD_TOKENS)!r} is not in the vocabulary."
            )
        self.pad_id = int(pad_id)
        # Padding and truncation are applied per call (below), not from the file.
        self._tok.no_padding()
        self._tok.no_truncation()
        self._max_len: int | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> TextTokenizer:
        """Loads a ``tokenizer.json`` (or a directory containing one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found; expected a HF tokenizer.json.")
        return cls(_tokenizers().Tokenizer.from_file(path), **kwargs)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary (with added tokens)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text`` with the special tokens (for inspection)."""
        return self._tok.encode(text).tokens

    def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokenizes, truncates to ``max_len`` (keeping ``[SEP]``) and right-pads.

        Args:
          texts: the strings to encode.
          max_len: the output length, special tokens included.

        Returns:
          ``(ids, mask)``: int32 arrays of shape ``(len(texts), max_len)``; ``mask`` is 1 on
          tokens and 0 on padding.

        Raises:
          ValueError: if ``max_len`` is smaller than the number of special tokens + 1, or
            ``texts`` is a single string.
        """
        if isinstance(texts, str):
            raise ValueError("encode_batch takes a sequence of strings, got one str.")
        special = self._tok.num_special_tokens_to_add(is_pair=False)
        if max_len <= special:
            raise ValueError(f"max_len={max_len} leaves no room beside {special} special tokens.")
        if self._max_len != max_len:
            self._tok.enable_truncation(max_length=max_len)
            self._max_len = max_len
        encodings = self._tok.encode_batch(list(texts))
        ids = np.full((len(encodings), max_len), self.pad_id, np.int32)
        mask = np.zeros((len(encodings), max_len), np.int32)
        for i, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[i, :n] = enc.ids
            mask[i, :n] = 1
        return ids, mask


def load_tokenizer(path: str | os.PathLike, **kwargs) -> TextTokenizer:
    """Shorthand for :meth:`TextTokenizer.from_file`."""
    return TextTokenizer.from_file(path, **kwargs)


__all__ = ["TextTokenizer", "load_tokenizer"]
