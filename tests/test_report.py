"""Paper-style tables, published references, plots and the report command."""

import csv
import io
import json
import os

import pytest

from tljax import references, report

O31 = {
    "A->W": 91.4,
    "D->W": 97.9,
    "W->D": 100.0,
    "A->D": 83.6,
    "D->A": 73.3,
    "W->A": 70.4,
}


def _row(task, method, seed, acc, **sel):
    rules = {"last": {"step": 10, "target_test_acc": acc}}
    rules.update({k: {"step": 5, "target_test_acc": v} for k, v in sel.items()})
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "steps": 10,
        "source_test_acc": 0.9,
        "target_test_acc": acc,
        "wall_time_s": 1.0,
        "by_selection_rule": rules,
    }


def test_headline_table_mean_std_average_and_rule():
    rows = [
        _row("t1", "dann", 0, 0.50, oracle=0.60),
        _row("t1", "dann", 1, 0.70, oracle=0.80),
        _row("t2", "dann", 0, 0.20),
        _row("t2", "dann", 1, 0.40),
        _row("t1", "source_only", 0, 0.10),
    ]
    t = report.headline_table(rows)
    assert t.columns == ["method", "variant", "t1 (ours)", "t2 (ours)", "avg (ours)", "seeds"]
    so, dann = t.rows  # source only first
    assert so[0] == "source_only" and so[3] is None and so[4] is None
    assert dann[2] == pytest.approx((60.0, 14.142135), rel=1e-5)
    # avg: mean of task means 45; std over seeds of per-seed averages (35, 55)
    assert dann[4] == pytest.approx((45.0, 14.142135), rel=1e-5)
    md = report.to_markdown(t)
    assert "| dann | 60.0 ± 14.1 | 30.0 ± 14.1 | 45.0 ± 14.1 | 0,1 |" in md
    assert "model selection: last step" in md and "variant" not in md
    oracle = report.headline_table(rows, rule="oracle")
    assert oracle.rows[1][2] == pytest.approx((70.0, 14.142135), rel=1e-5)
    assert "model selection: oracle" in report.to_markdown(oracle)
    with pytest.raises(ValueError, match="Unknown selection rule 'best'.*oracle"):
        report.headline_table(rows, rule="best")


def test_runtime_table_per_method_and_task_with_totals():
    rows = [_row("t1", "dann", s, 0.5) for s in (0, 1)] + [_row("t2", "dann", 0, 0.5)]
    rows += [_row("t1", "source_only", 0, 0.1)]
    rows[0]["wall_time_s"], rows[1]["wall_time_s"], rows[2]["wall_time_s"] = 2.0, 4.0, 10.0
    t = report.runtime_table(rows)
    assert t.columns == ["method", "variant", "t1", "t2", "total (s)"]
    so, dann = t.rows  # source only first
    assert so[2] == (1.0, 0.0) and so[3] is None and so[4] == 1.0
    assert dann[2] == pytest.approx((3.0, 1.414214), rel=1e-5) and dann[3] == (10.0, 0.0)
    assert dann[4] == 16.0
    assert "| dann | 3.0 ± 1.4 | 10.0 ± 0.0 | 16.0 |" in report.to_markdown(t)


def test_published_numbers_beside_ours_with_sources_and_averages():
    refs = references.load()
    rows = [_row(f"office31:{t}", "dann", 0, v / 100 - 0.01) for t, v in O31.items()]
    t = report.headline_table(rows, refs=refs)
    md = report.to_markdown(t)
    assert "91.4 (TLlib)" in md and "83.6 (TLlib)" in md
    # all six Office-31 tasks: the published averages (paper and TLlib columns)
    assert "82.2 (paper); 86.1 (TLlib)" in md
    assert "Transfer-Learning-Library" in md and "github.com/thuml" in md
    # an offline task has no published number; its notes name the analogue
    t = report.headline_table([_row("digits->digits_m", "dann", 0, 0.5)], refs=refs)
    md = report.to_markdown(t)
    assert "| dann | 50.0 ± 0.0 | – | 50.0 | – | 0 |" in md
    assert "no published number applies" in md


def test_reference_lookup_aliases_and_sources():
    refs = references.load()
    assert refs.canonical_task("A→W") == "office31/amazon->office31/webcam"
    assert refs.canonical_task("Ar->Cl") == "office_home/art->office_home/clipart"
    assert [r.value for r in refs.lookup("SVHN->MNIST", "DANN")] == [90.8, 73.85]
    assert refs.lookup("mnist->mnist_m", "erm")[0].short == "DANN paper"
    assert refs.lookup("visda2017/synthetic->visda2017/real", "mcc")[0].metric == (
        "mean_class_accuracy"
    )
    assert refs.lookup("digits->digits_m", "dann") == []
    assert references.format_refs([]) == "–"
    assert "80.1 (TLlib, class-mean)" in references.format_refs(
        refs.lookup("visda2017/synthetic->visda2017/real", "cdan")
    )
    with open(references.DEFAULT_PATH) as f:
        data = json.load(f)
    for key, src in data["sources"].items():
        assert src["citation"] and src["url"].startswith("https://"), key
    assert len(data["results"]) == 141


def test_csv_and_latex():
    rows = [_row("a->b", "dann", 0, 0.5), _row("a->b", "dann", 1, 0.7)]
    t = report.headline_table(rows)
    got = list(csv.reader(io.StringIO(report.to_csv(t))))
    assert got[0] == ["method", "variant", "a->b (ours) mean", "a->b (ours) std"] + [
        "avg (ours) mean",
        "avg (ours) std",
        "seeds",
    ]
    assert got[1][:4] == ["dann", "", "60.0000", "14.1421"]
    tex = report.to_latex(t, "Caption 100%")
    assert r"a$\to$b (ours)" in tex and r"60.0 $\pm$ 14.1" in tex
    assert r"\caption{Caption 100\%}" in tex and tex.count(r"\\") == 2


def test_variants_from_config_json(tmp_path):
    rows = []
    for w in (0.1, 1.0):
        for s in (0, 1):
            d = tmp_path / f"w{w}" / f"s{s}"
            d.mkdir(parents=True)
            (d / "config.json").write_text(json.dumps({"seed": s, "method.weight": w}))
            rows.append(dict(_row("t", "dann", s, w / 2), workdir=str(d)))
    report.attach_configs(rows)
    assert {r["variant"] for r in rows} == {"method.weight=0.1", "method.weight=1"}
    t = report.headline_table(rows)
    assert [r[1] for r in t.rows] == ["method.weight=0.1", "method.weight=1"]
    sel = report.to_markdown(report.selection_rules_table(rows))
    assert "| t | dann | method.weight=1 | 50.0 ± 0.0 | 2 |" in sel


def test_a_field_added_later_at_its_default_is_not_a_variant(tmp_path):
    # An older run's config.json lacks a field added since (e.g. data.task_kwargs); at
    # the field's default it is the same config, at another value a variant.
    from tljax import config as config_lib

    flat = json.loads(json.dumps(config_lib.flatten(config_lib.base_config()), default=str))
    key = "model.pretrained"
    rows = []
    for name, cfg in [
        ("old", {k: v for k, v in flat.items() if k != key}),
        ("new", flat),
        ("other", dict(flat, **{key: "/weights"})),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        rows.append(dict(_row("t", "dann", 0, 0.5), workdir=str(d)))
    report.attach_configs(rows[:2])
    assert [r["variant"] for r in rows[:2]] == ["", ""]
    report.attach_configs(rows)
    assert [r["variant"] for r in rows] == [f"{key}=", f"{key}=", f"{key}=/weights"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    from tests.configs import tiny
    from tljax import multiseed

    root = tmp_path_factory.mktemp("sweep")
    for method in ("source_only", "dann"):
        c = tiny.get_config(f"{method},moons")
        c.train.steps, c.train.eval_every = 10, 5
        c.train.log_every = c.train.checkpoint_every = 5
        multiseed.train_seeds(c, [0, 1], str(root / method))
    return root


def test_report_command_writes_tables_and_figures(sweep_dir):
    from experiments.report import write_report
    from tljax import plots

    out = sweep_dir / "report"
    written = write_report(str(sweep_dir), str(out), max_points=100)
    names = set(os.listdir(out))
    for ext in ("md", "csv", "tex"):
        assert {f"results.{ext}", f"selection.{ext}", f"runtime.{ext}"} <= names
    assert {"curves_moons__dann.png", "curves_moons__source_only.png"} <= names
    assert {"pad_moons.png", "tsne_moons.png", "pad.json", "report.md"} <= names
    assert all(open(out / n, "rb").read(4) == b"\x89PNG" for n in names if n.endswith(".png"))
    pads = json.load(open(out / "pad.json"))["moons"]
    assert set(pads) == {"pixels", "source_only", "dann"}
    assert all(0.0 <= v <= 2.0 for v in pads.values())
    md = (out / "report.md").read_text()
    assert "Headline model selection: **last step**" in md and "(tsne_moons.png)" in md
    assert "| source_only | " in md and "| moons | " in md and "## Runtime per method" in md
    assert written["report.md"] == str(out / "report.md")
    assert plots.curves_name("a->b", "dann", "method.weight=0.1") == (
        "curves_a_to_b__dann__method.weight=0.1.png"
    )


def test_config_from_json_round_trip(sweep_dir):
    from tljax import config as config_lib
    from tljax import plots

    path = sweep_dir / "dann" / "seed_1" / "config.json"
    c = plots.config_from_json(str(path))
    assert json.loads(json.dumps(config_lib.flatten(c))) == json.load(open(path))
    assert c.seed == 1 and c.method.hparams.hidden == (32,)
    bad = sweep_dir / "bad.json"
    bad.write_text(json.dumps({"optim.lrr": 0.1}))
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        plots.config_from_json(str(bad))


def test_report_on_empty_dir_is_a_clear_error(tmp_path):
    from experiments.report import write_report

    with pytest.raises(FileNotFoundError, match="No results.json"):
        write_report(str(tmp_path))
