"""experiments/tta_table.py's corruption sequences: what each mode resets, and the table."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from experiments import tta_table
from tljax import adaptation, methods
from tljax.adaptation import Context
from tljax.models import build_classifier
from tljax.train import build_net


@pytest.fixture(scope="module")
def ctx():
    model = build_classifier("mlp", (4, 4, 1), 3, rngs=nnx.Rngs(0), bottleneck_dim=5, hidden=(6,))
    graphs, params, rest = build_net(model, methods.get("source_only"), seed=0, num_classes=3)
    return Context(graphs, params, rest, 3)


def _streams(n=3, size=16):
    rng = np.random.default_rng(0)
    return [
        (f"d{i}", (rng.normal(size=(size, 4, 4, 1)) * (i + 1)).astype(np.float32),
         rng.integers(0, 3, size))
        for i in range(n)
    ]  # fmt: skip


def test_modes_reset_where_they_say(ctx):
    streams = _streams()
    tent = adaptation.get("tent", ctx, lr=0.5)
    run = lambda s, mode, bs=8: tta_table.run_sequence(  # noqa: E731
        tent, s, mode=mode, batch_size=bs, seed=0
    )[0]
    cont, reset, epi = (run(streams, m) for m in ("continual", "reset", "episodic"))
    # The first stream starts from the source in every mode; continual and reset agree there.
    assert cont[0] == reset[0]
    # reset: each stream as if it came first (the step's key differs, Tent ignores it).
    for d in range(1, 3):
        assert reset[d] == run([streams[d]], "continual")[0]
    # episodic with one batch per stream = continual on that single batch.
    one = [(n, x[:8], y[:8]) for n, x, y in streams]
    assert run(one, "episodic") == [run([s], "continual")[0] for s in one]
    assert all(0 <= a <= 1 for a in cont + reset + epi)
    with pytest.raises(ValueError, match="mode"):
        run(streams, "online")


def test_format_errors_means_over_runs_and_corruptions():
    table = {
        "corruptions": ["gaussian_noise", "jpeg_compression"],
        "errors": {"m": {"continual": [[10.0, 20.0], [30.0, 40.0]]}},
        "step_ms": {},
    }
    text = tta_table.format_errors(table)
    row = [r for r in text.splitlines() if r.startswith("| m |")][0]
    # cells: mean over runs per corruption; last: mean over corruptions, ± std over runs
    assert "| 20.0 | 30.0 | 25.00 ± 10.00 |" in row
    assert "| gaussian | jpeg |" in text
