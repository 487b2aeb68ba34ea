"""Data-parallel over a device mesh gives the same result as one device.

Runs in a subprocess because the number of emulated CPU devices must be set before
JAX starts.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from tests.helpers import random_batch, tiny_setup
    from tljax.loop import data_mesh

    assert jax.device_count() == 8, jax.devices()

    def run(devices):
        mesh = data_mesh(devices)
        state, step, _, _ = tiny_setup("dann", bottleneck_dim=16, lr=0.005,
                                       hparams=dict(grl_lo=1.0, grl_hi=1.0))
        state = jax.device_put(state, NamedSharding(mesh, P()))
        f = jax.jit(step, donate_argnums=0)
        losses = []
        for i in range(3):
            batch = jax.device_put(random_batch(n=16, seed=i), NamedSharding(mesh, P("data")))
            state, m = f(state, batch)
            losses.append(float(m["loss"]))
        kernel = state.params["model"]["backbone"]["conv1"]["kernel"]
        shards = len(batch["source"]["image"].sharding.device_set)
        return losses, jax.tree.map(np.asarray, state.params), shards

    l1, p1, s1 = run(jax.devices()[:1])
    l8, p8, s8 = run(jax.devices())
    assert (s1, s8) == (1, 8), (s1, s8)
    np.testing.assert_allclose(l1, l8, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p1, p8)
    print("OK", l1, l8)
    """
)


def test_eight_devices_match_one_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "OK" in out.stdout
