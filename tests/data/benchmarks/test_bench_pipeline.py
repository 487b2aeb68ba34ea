"""experiments/bench_pipeline.py on real JPEG files: the TFDS-layout writer and a tiny run
of the streamed-photos benchmark (ResNet-18 at 32², numbers meaningless)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.bench_pipeline import write_jpeg_benchmark
from tljax.data.benchmarks import load_domain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_jpeg_benchmark_is_office31_in_tfds_layout(tmp_path):
    data_dir = write_jpeg_benchmark(str(tmp_path), per_class=1, size=40)
    assert os.path.isdir(os.path.join(data_dir, "office31", "amazon", "1.0.0"))
    domain = load_domain("office31/webcam", data_dir=data_dir, image_size=16, dtype="uint8")
    assert domain.train.x.shape == (31, 16, 16, 3) and domain.train.x.dtype == np.uint8
    assert sorted(domain.train.y.tolist()) == list(range(31))
    assert domain.train.x.std() > 10  # textures, not solid colours
    # Written once: a second call reuses the prepared data.
    before = os.path.getmtime(os.path.join(data_dir, "office31", "amazon", "1.0.0"))
    assert write_jpeg_benchmark(str(tmp_path), per_class=1, size=40) == data_dir
    assert os.path.getmtime(os.path.join(data_dir, "office31", "amazon", "1.0.0")) == before


@pytest.mark.slow
def test_streamed_photos_benchmark_runs_at_tiny_size(tmp_path):
    out = tmp_path / "bench.jsonl"
    cmd = [
        sys.executable, "-m", "experiments.bench_pipeline",
        "--config=configs/bench_photos_synthetic.py:batch=2,size=32,arch=resnet18",
        f"--jpeg_dir={tmp_path / 'jpeg'}", "--jpeg_per_class=1", "--jpeg_size=40",
        "--stream", "--threads=2", "--augment=flip", "--blocks=1", "--steps=2",
        "--warmup=1", "--host_batches=3", f"--out={out}",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600, capture_output=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in rows] == [
        "synthetic", "stream", "stream+prefetch", "synthetic+aug", "stream+prefetch+aug"
    ]  # fmt: skip
    assert all(r["stream"] and r["input_dtype"] == "uint8" for r in rows)
    assert rows[-1]["vs"] == "synthetic+aug" and rows[0]["steps_per_s"]["median"] > 0
