"""Partial / open-set / universal variants of registered tasks (tljax.data.label_sets)."""

import numpy as np
import pytest

from tljax.data import get_task
from tljax.data import label_sets as ls

BASE = "digits->digits_m"


def test_partial_keeps_a_seeded_subset_in_the_target():
    t = get_task(f"partial/{BASE}")
    base = get_task(BASE)
    assert isinstance(t, ls.LabelSetTask) and t.setting == "partial"
    assert t.num_classes == 10 and t.unknown_label is None
    assert t.shared == (0, 1, 2, 3, 4) and t.source_private == (5, 6, 7, 8, 9)
    assert set(t.target.train.y.tolist()) == set(t.shared)
    assert set(t.source.train.y.tolist()) == set(range(10))
    assert len(t.source.train) == len(base.source.train)
    # The target keeps exactly the examples of the kept original classes, relabelled.
    kept = np.isin(base.target.train.y, t.source_classes[:5])
    assert len(t.target.train) == kept.sum()
    remap = {c: i for i, c in enumerate(t.source_classes)}
    np.testing.assert_array_equal(t.target.train.y, [remap[c] for c in base.target.train.y[kept]])
    np.testing.assert_array_equal(t.target.train.x, base.target.train.x[kept])
    # Seeded: another seed draws another subset; None takes the first classes.
    other = get_task(f"partial/{BASE}", label_seed=1)
    assert other.source_classes[:5] != t.source_classes[:5]
    first = get_task(f"partial/{BASE}", label_seed=None, shared=3)
    assert first.source_classes[:3] == (0, 1, 2)
    three = get_task(f"partial/{BASE}", shared=3, label_seed=2)
    assert len(set(three.target.test.y.tolist())) == 3
    assert three.source_classes[:3] == tuple(sorted(three.source_classes[:3]))
    assert three.source_classes[:3] != (0, 1, 2)


def test_open_set_maps_the_rest_to_unknown():
    t = get_task(f"open_set/{BASE}")
    assert t.setting == "open_set" and t.num_classes == 7 and t.unknown_label == 6
    assert t.shared == tuple(range(6)) and t.source_private == ()
    assert t.target_private == (6, 7, 8, 9)
    assert set(t.source.train.y.tolist()) == set(range(6))
    assert set(t.target.test.y.tolist()) == set(range(7))
    base = get_task(BASE)
    assert (t.target.test.y == 6).sum() == np.isin(base.target.test.y, [6, 7, 8, 9]).sum()
    t2 = get_task(f"open_set/{BASE}", shared=3, target_private=(8, 9))
    assert t2.unknown_label == 3 and t2.target_private == (8, 9)
    assert len(t2.target.test) == np.isin(base.target.test.y, [0, 1, 2, 8, 9]).sum()


def test_universal_has_private_classes_on_both_sides():
    t = get_task(f"universal/{BASE}")
    assert t.setting == "universal"
    assert t.shared == (0, 1, 2, 3) and t.source_private == (4, 5, 6)
    assert t.unknown_label == 7 and t.num_classes == 8
    assert set(t.source.train.y.tolist()) == set(range(7))
    assert set(t.target.train.y.tolist()) == {0, 1, 2, 3, 7}
    assert t.known == tuple(range(7)) and t.target_classes == (0, 1, 2, 3, 7)


def test_bad_choices_and_names():
    with pytest.raises(ValueError, match="at most|only"):
        get_task(f"partial/{BASE}", shared=11)
    with pytest.raises(ValueError, match="distinct"):
        get_task(f"universal/{BASE}", shared=(0, 1), source_private=(1, 2))
    with pytest.raises(ValueError, match="source-private"):
        get_task(f"open_set/{BASE}", source_private=2)
    with pytest.raises(TypeError, match="unexpected option"):
        get_task(f"partial/{BASE}", nonsense=1)
    with pytest.raises(ValueError, match="Unknown task"):
        get_task("partial/nope->nothing")
    assert ls.parse("partial/a->b") == ("partial", "a->b") and ls.parse("moons") is None


def test_published_office_splits():
    assert len(ls.OFFICE31_PARTIAL) == 10 and set(ls.OFFICE31_PARTIAL) <= set(ls.OFFICE31_CLASSES)
    assert ls.OFFICE_HOME_PARTIAL[0] == "Alarm_Clock" and len(ls.OFFICE_HOME_PARTIAL) == 25
    assert ls.OFFICE_HOME_PARTIAL[-1] == "Fork"
    s, sp, tp = ls._classes("open_set", "office31/amazon->office31/webcam", 31, None, None, None, 0)
    assert s == tuple(range(10)) and sp == () and tp == tuple(range(20, 31))
    s, sp, tp = ls._classes("partial", "office31/amazon->office31/dslr", 31, None, None, None, 0)
    assert [ls.OFFICE31_CLASSES[c] for c in s] == list(ls.OFFICE31_PARTIAL) and len(sp) == 21
    s, _, _ = ls._classes(
        "partial", "office_home/Art->office_home/Clipart", 65, None, None, None, 0
    )
    assert s == tuple(range(25))


def test_absent_office_data_raises_the_loaders_error(tmp_path):
    from tljax.data.benchmarks import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        get_task("partial/office31/amazon->office31/webcam", data_dir=str(tmp_path))
