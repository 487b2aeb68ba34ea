"""The step benchmark (experiments/bench.py) and the PyTorch reference step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench, bench_records
from tests.configs import tiny
from tljax.flops import count_flops
from tljax.loop import build


@pytest.fixture(scope="module")
def moons():
    config = tiny.get_config("dann,moons")
    return config, build(config)


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_records_have_all_fields_and_scan_matches_single_steps(moons):
    config, parts = moons
    runners = bench.tljax_runners(
        config, parts, inputs=("synthetic", "pipeline"), ks=(1, 2), steps=4, warmup=2
    )
    bench.measure(runners, blocks=2)
    flops = count_flops(
        parts["train_step"], parts["state"], bench.synthetic_batch(parts["task"], 16)
    )
    machine = bench_records.machine_info()
    records = [
        bench_records.summarize(r, config, parts, config_name="tiny", machine=machine)
        for r in runners
    ]
    bench_records.add_ratios(records)
    assert [(r["steps_per_call"], r["input"]) for r in records] == [
        (1, "synthetic"),
        (1, "pipeline"),
        (2, "synthetic"),
        (2, "pipeline"),
    ]
    for r in records:
        assert set(bench_records.FIELDS) <= set(r), set(bench_records.FIELDS) - set(r)
        assert r["blocks"] == 2 and len(r["block_s"]) == 2
        for key in ("steps_per_s", "img_per_s", "ms_per_step"):
            s = r[key]
            assert all(_positive(s[q]) for q in ("min", "median", "max")), (key, s)
            assert s["min"] <= s["median"] <= s["max"]
        assert math.isclose(r["img_per_s"]["median"], 2 * 16 * r["steps_per_s"]["median"])
        assert _positive(r["compile_cold_s"]) and _positive(r["flops_per_step"])
        # FLOPs from the jaxpr of the single step, whatever K; XLA's only from K=1
        assert r["flops_per_step"] == flops and r["flops_source"].startswith("tljax.flops")
        assert r["xla_flops"] == records[0]["xla_flops"] and _positive(r["xla_flops"])
        assert math.isclose(r["flops_per_s"], flops * r["steps_per_s"]["median"])
        peak, name = bench_records.peak_flops(jax.devices()[0], "float32")
        if peak is None:  # e.g. the CPU: no MFU, with the reason
            assert r["mfu"] is None and r["peak_name"] is None and r["mfu_note"] == name
        else:
            assert r["peak_name"] == name and r["peak_flops_per_s"] == peak
            assert math.isclose(r["mfu"], r["flops_per_s"] / peak)
        if jax.devices()[0].platform == "cpu":  # no allocator statistics there
            assert r["peak_bytes_in_use"] is None and r["peak_memory_note"]
        else:
            assert _positive(r["peak_bytes_in_use"])
        mem = r["memory_analysis"]
        assert set(mem) == set(bench.MEMORY_FIELDS)
        assert all(mem[f] >= 0 for f in ("temp_size_in_bytes", "argument_size_in_bytes"))
        assert r["program_bytes"] == (
            mem["argument_size_in_bytes"]
            + mem["output_size_in_bytes"]
            - mem["alias_size_in_bytes"]
            + mem["temp_size_in_bytes"]
        )
    table = bench_records.markdown(records)
    assert "| tljax | jit+scan | pipeline | 2 |" in table
    assert "| XLA temp+args (GB) | peak (GB) |" in table

    # K steps in one scanned call = K single-step calls (same batches, same start).
    one, two = runners[0].program, runners[2].program
    batches = [bench.synthetic_batch(parts["task"], 16, seed=s) for s in (3, 4)]
    state = jax.tree.map(jnp.copy, parts["state"])
    singles = []
    for b in batches:
        state, m = one(state, jax.device_put(b))
        singles.append(float(m["loss"]))
    scanned, ms = two(jax.tree.map(jnp.copy, parts["state"]), jax.device_put(bench.stack(batches)))
    assert int(scanned.step) == int(state.step) == 2
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(scanned)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ms["loss"]), singles, rtol=1e-6)


def test_peak_flops_table(monkeypatch):
    class Dev:
        platform, device_kind = "gpu", "NVIDIA H100 80GB HBM3"

    assert bench_records.peak_flops(Dev(), "bfloat16") == (989.4e12, "H100 SXM bf16 dense")
    Dev.device_kind = "NVIDIA H200"
    # float32 at JAX's default precision runs on TF32 tensor cores: the TF32 peak
    assert bench_records.peak_flops(Dev(), "float32") == (494.7e12, "H200 SXM tf32 dense")
    with jax.default_matmul_precision("highest"):
        assert bench_records.peak_flops(Dev(), "float32") == (66.9e12, "H200 SXM fp32 dense")
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert bench_records.peak_flops(Dev(), "float32")[0] == 66.9e12
    Dev.device_kind = "NVIDIA H100 PCIe"
    assert bench_records.peak_flops(Dev(), "bfloat16")[0] == 756e12
    for kind in ("NVIDIA H200 NVL", "NVIDIA GH200 480GB", "Tesla V100-SXM2-16GB"):
        Dev.device_kind = kind
        value, note = bench_records.peak_flops(Dev(), "bfloat16")
        assert value is None and kind in note
    value, note = bench_records.peak_flops(jax.devices("cpu")[0], "float32")
    assert value is None and "cpu" in note
    with pytest.raises(ValueError, match="valid: bfloat16"):
        bench_records.compute_mode("int8")


@pytest.mark.slow
def test_warm_compile_reads_the_persistent_cache(moons):
    config, _ = moons
    times = bench.warm_compile_times(config, (1,))
    assert times["fill"][1]["cache_hits"] == 0
    assert times["warm"][1]["cache_hits"] >= 1
    assert _positive(times["warm"][1]["compile_s"])


def _tiny_spec(**kw):
    ref = pytest.importorskip("experiments.torch_reference")
    return ref, ref.Spec(
        backbone="lenet",
        image_shape=(16, 16, 3),
        num_classes=4,
        channels=(4, 8),
        disc_hidden=(32,),
        **kw,
    )


def test_torch_lenet_dann_step_runs():
    pytest.importorskip("torch")
    ref, spec = _tiny_spec()
    trainer = ref.Trainer(spec, variant="eager", device="cpu")
    batch = trainer.synthetic(8)
    losses = [trainer.step(*batch) for _ in range(2)]
    assert all(math.isfinite(v) for v in losses)
    assert trainer.iteration == 2 and trainer.meters["domain_acc"].count == 16
    assert trainer.count_flops(*batch) > 0


def test_torch_reference_matches_the_config_architecture():
    pytest.importorskip("torch")
    from flax import nnx

    from tljax import methods
    from tljax.methods.base import ModelInfo
    from tljax.models import build_classifier

    ref, _ = _tiny_spec()
    config = tiny.get_config("dann,digits->digits_m")
    config.model.bottleneck_dim = 6
    spec = ref.spec_from_config(config, image_shape=(16, 16, 3), num_classes=10)
    assert spec.channels == (4, 8) and spec.disc_hidden == (32,) and spec.lr_mult[0] == 1.0

    def tljax_net():  # shapes only (nnx.eval_shape): no initialisation is run
        model = build_classifier(
            "lenet", (16, 16, 3), 10, rngs=nnx.Rngs(0), bottleneck_dim=6, channels=(4, 8)
        )
        info = ModelInfo(feature_dim=model.feature_dim, num_classes=10, model=model)
        return model, methods.get("dann", **config.method.hparams.to_dict()).init(nnx.Rngs(1), info)

    net = nnx.eval_shape(tljax_net)
    n_jax = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(net, nnx.Param)))
    n_torch = sum(p.numel() for p in ref.DANNLoss(spec).parameters())
    assert n_torch == n_jax
    config.method.name = "cdan"
    with pytest.raises(ValueError, match="no method 'cdan'"):
        ref.spec_from_config(config, image_shape=(16, 16, 3), num_classes=10)


@pytest.mark.slow
def test_torch_resnet50_dann():
    torch = pytest.importorskip("torch")
    ref, _ = _tiny_spec()
    # ResNet-50 without its classifier has 23,508,032 parameters (25,557,032 with fc).
    assert sum(p.numel() for p in ref.ResNet50().parameters()) == 23_508_032
    spec = ref.Spec(
        backbone="resnet50",
        image_shape=(32, 32, 3),
        num_classes=5,
        bottleneck_dim=256,
        lr_mult=(0.1, 1.0, 1.0, 1.0),
    )
    trainer = ref.Trainer(spec, variant="eager")
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
        [0.001, 0.01, 0.01, 0.01]
    )
    torch.manual_seed(0)
    assert math.isfinite(trainer.step(*trainer.synthetic(2)))


def test_profile_step_sums_named_ops(moons, tmp_path):
    from experiments import profile_step

    config, _ = moons
    res = profile_step.profile(config, steps=2, trace_dir=str(tmp_path))
    assert res["steps"] == 2 and res["block_s"] > 0
    assert res["ops"] and all(v >= 0 for v in res["ops"].values())
    assert sum(res["ops"].values()) < 4 * res["block_s"]  # two host threads at most, padded
