"""Text tasks: the constructed review domains and TFDS imdb_reviews (a fake archive)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from tests.inductive.text_helpers import VOCAB, write_tokenizer  # noqa: E402
from tljax.data import imdb, sentiment, tasks  # noqa: E402
from tljax.data.text import TextTokenizer  # noqa: E402

SMALL = dict(n_train=60, n_test=40, max_len=32)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


def test_text_tasks_are_registered():
    names = tasks.task_names()
    for name in ("reviews", "products", "reviews->products", "products->reviews", "imdb"):
        assert name in names and name in tasks.registered_task_names()


def test_constructed_task_shapes_labels_and_cache(tokenizer):
    task = tasks.get_task("reviews->products", tokenizer=tokenizer, **SMALL)
    assert task.num_classes == 2 and task.source.name == "reviews"
    assert task.target.name == "products"
    for d in (task.source, task.target):
        for s, n in ((d.train, 60), (d.test, 40)):
            assert s.x.shape == (n, 2, 32) and s.x.dtype == np.int32
            assert np.bincount(s.y).tolist() == [n // 2, n // 2]
            assert not s.x.flags.writeable
            ids, mask = s.x[:, 0], s.x[:, 1]
            assert (ids[:, 0] == VOCAB.index("[CLS]")).all()
            assert set(np.unique(mask)) == {0, 1} and (ids[mask == 0] == 0).all()
    np.testing.assert_array_equal(task.source.train.y, task.target.train.y)
    assert not np.array_equal(task.source.train.x, task.target.train.x)
    assert tasks.get_task("reviews->products", tokenizer=tokenizer, **SMALL) is task
    single = tasks.get_task("reviews", tokenizer=tokenizer, **SMALL)
    assert single.target is single.source
    # A domain is the same in every task it appears in.
    np.testing.assert_array_equal(single.source.train.x, task.source.train.x)
    other_seed = tasks.get_task("reviews", tokenizer=tokenizer, data_seed=1, **SMALL)
    assert not np.array_equal(other_seed.source.train.x, single.source.train.x)


def test_generator_is_seeded_and_the_test_split_is_new_text():
    y = np.arange(300) % 2
    train, test = sentiment.train_test("products", y, y[:100], seed=0)
    assert train == sentiment.train_test("products", y, y[:100], seed=0)[0]
    assert not set(test) & set(train)
    assert all(t == t.lower() for t in train)
    tok_words = set(sentiment.words())
    assert all(w in tok_words for t in train for w in t.replace(".", " . ").split() if w.isalpha())


def test_the_domains_share_only_part_of_their_sentiment_words():
    y = np.arange(400) % 2
    movies, _ = sentiment.train_test("reviews", y, y[:2], seed=0)
    products, _ = sentiment.train_test("products", y, y[:2], seed=0)
    own = {w for d in sentiment.DOMAINS.values() for pol in (0, 1) for w in d["sentiment"][pol]}
    movie_words = {w for w in own if any(w in t for t in movies)}
    product_words = {w for w in own if any(w in t for t in products)}
    assert movie_words and product_words and not movie_words & product_words
    shared = {w for pol in (0, 1) for w in sentiment.SHARED[pol]}
    assert any(w in t for t in products for w in shared)


def test_text_task_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="needs the `tokenizer` option"):
        tasks.get_task("reviews")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        tasks.get_task("reviews", tokenizer=str(tmp_path))
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['degrees'\]"):
        tasks.get_task("reviews", tokenizer=tokenizer, degrees=3)
    with pytest.raises(ValueError, match="max_len must be an integer >= 3, got 2"):
        tasks.get_task("reviews", tokenizer=tokenizer, max_len=2)
    with pytest.raises(ValueError, match="negation must be a number in"):
        tasks.get_task("reviews", tokenizer=tokenizer, negation=1.5)


@pytest.fixture(scope="module")
def fake_imdb(tmp_path_factory):
    """An aclImdb/ folder with 4 train and 4 test reviews, prepared TF-free."""
    root = tmp_path_factory.mktemp("imdb")
    texts = {}
    for split in ("train", "test"):
        for label in ("pos", "neg", "unsup"):
            if split == "test" and label == "unsup":
                continue
            d = root / "manual" / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i in range(2):
                word = {"pos": "great", "neg": "awful", "unsup": "the"}[label]
                text = f"the film was {word}.<br />{'really ' * i}{word}!"
                (d / f"{i}_7.txt").write_text(text)
                texts.setdefault(split, []).append((text, label))
    imdb.prepare(root / "data", root / "manual")
    return root / "data", texts


def test_imdb_reads_the_prepared_dataset(fake_imdb, tokenizer):
    data_dir, _ = fake_imdb
    task = tasks.get_task("imdb", tokenizer=tokenizer, data_dir=str(data_dir), max_len=12)
    assert task.source is task.target and task.num_classes == 2
    assert task.source.train.x.shape == (4, 2, 12) and sorted(task.source.train.y) == [0, 0, 1, 1]
    tok = TextTokenizer.from_file(tokenizer)
    texts, labels = imdb.load_split("test", data_dir=str(data_dir))
    assert "<br />" not in "".join(texts)
    ids, mask = tok.encode_batch(texts, 12)
    np.testing.assert_array_equal(task.source.test.x[:, 0], ids)
    np.testing.assert_array_equal(task.source.test.y, labels)
    assert all(("great" in t) == (y == 1) for t, y in zip(texts, labels))
    sub = tasks.get_task("imdb", tokenizer=tokenizer, data_dir=str(data_dir), max_train=3)
    assert len(sub.source.train) == 3 and len(sub.source.test) == 4


def test_imdb_not_prepared_says_how_to_prepare_it(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        tasks.get_task("imdb", tokenizer=tokenizer, data_dir=str(tmp_path))
    msg = str(err.value)
    assert f"python -m tljax.data.imdb --data_dir {tmp_path}" in msg
    assert "tfds build imdb_reviews/plain_text --file_format=array_record" in msg


def test_text_configs_build(fake_imdb, tmp_path):
    """configs/text/* with a tiny model directory standing in for all-MiniLM-L6-v2."""
    from configs.text import common, finetune_imdb, finetune_reviews
    from tests.inductive.text_helpers import write_hf_model
    from tljax import config as config_lib
    from tljax.loop import build

    model_dir = tmp_path / "minilm"
    write_hf_model(model_dir)
    write_tokenizer(model_dir / "tokenizer.json")
    c = finetune_reviews.get_config(f"minilm={model_dir},method=dann,steps=30,max_len=24")
    config_lib.validate(c)
    assert c.data.task == "reviews->products" and c.method.hparams.grl_max_iters == 30.0
    assert c.model.pretrained == c.data.task_kwargs.tokenizer == str(model_dir)
    assert finetune_reviews.get_config(f"minilm={model_dir}").data.task == "reviews"
    data_dir, _ = fake_imdb
    c = finetune_imdb.get_config(f"minilm={model_dir},max_len=16,batch=2")
    c.data.task_kwargs.data_dir = str(data_dir)
    parts = build(c)
    assert parts["task"].source.train.x.shape == (4, 2, 16)
    assert c.optim.optimizer == "adamw" and c.optim.lr == 2e-5
    with pytest.raises(ValueError, match=r"Bad config argument 'lr'; expected key=value"):
        common.parse("lr")
