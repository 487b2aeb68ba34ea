"""Weight import: strictness, file readers, refusal of unsafe pickles, torch parity."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from flax import nnx

from tests.models.reference import random_state_dict, torchvision_resnet_shapes
from tljax.models.resnet import resnet18
from tljax.models.weights import load_torchvision_resnet, read_state_dict, resnet_state_dict


@pytest.fixture(scope="module")
def r18_sd():
    return random_state_dict(torchvision_resnet_shapes("resnet18"), seed=5)


def _params(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))


def test_strict_errors_list_every_problem_and_write_nothing(r18_sd):
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0))
    before = _params(model)
    bad = dict(r18_sd)
    del bad["layer2.0.downsample.0.weight"]
    bad["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    bad["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        load_torchvision_resnet(model, bad)
    msg = str(err.value)
    assert "missing (1): layer2.0.downsample.0.weight" in msg
    assert "unexpected (1): layer5.0.conv1.weight" in msg
    assert "shape mismatch (1): layer1.0.conv2.weight: (64, 64, 1, 1)" in msg
    jax.tree.map(np.testing.assert_array_equal, _params(model), before)


def test_include_head(r18_sd):
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no fc head"):
        load_torchvision_resnet(model, r18_sd, include_head=True)
    load_torchvision_resnet(model, r18_sd)  # fc.* dropped
    np.testing.assert_array_equal(model.bn1.var[...], r18_sd["bn1.running_var"])

    with_head = resnet18((32, 32, 3), rngs=nnx.Rngs(0), num_classes=1000)
    fc_before = np.asarray(with_head.fc.kernel[...])
    load_torchvision_resnet(with_head, r18_sd)  # keeps its own fc
    np.testing.assert_array_equal(with_head.fc.kernel[...], fc_before)
    load_torchvision_resnet(with_head, r18_sd, include_head=True)
    np.testing.assert_array_equal(with_head.fc.kernel[...], r18_sd["fc.weight"].T)

    with pytest.raises(ValueError, match="classifier.backbone"):
        load_torchvision_resnet(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), r18_sd)

    ten = resnet18((32, 32, 3), rngs=nnx.Rngs(0), num_classes=10)
    with pytest.raises(ValueError, match=r"fc.weight: \(1000, 512\)"):
        load_torchvision_resnet(ten, r18_sd, include_head=True)


def test_read_safetensors_round_trip(tmp_path, r18_sd):
    from safetensors.numpy import save_file

    path = tmp_path / "r18.safetensors"
    save_file(r18_sd, str(path))
    sd = read_state_dict(path)
    assert set(sd) == set(r18_sd)
    for k in sd:
        np.testing.assert_array_equal(sd[k], r18_sd[k])
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0), num_classes=1000)
    load_torchvision_resnet(model, sd, include_head=True)
    back = resnet_state_dict(model)
    np.testing.assert_array_equal(back["layer3.1.conv2.weight"], r18_sd["layer3.1.conv2.weight"])


def test_read_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"'\.npz'.*valid: '\.safetensors'"):
        read_state_dict(tmp_path / "w.npz")


def test_read_pth_without_torch_says_what_to_do(tmp_path):
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs PyTorch"):
            read_state_dict(tmp_path / "w.pth")
    else:
        pytest.skip("torch is installed; the torch tests below cover .pth")


class _Payload:
    """Unpickling this would create ``self.marker``: the classic ``__reduce__`` exploit."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pth_with_code_payload_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="refusing unsafe .pth needs torch to read it")
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(2), "x": _Payload(str(marker))}, path)
    from tljax.errors import UserFileError

    with pytest.raises(UserFileError, match="weights_only") as info:
        read_state_dict(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not os.path.exists(marker)


def test_pth_round_trip(tmp_path, r18_sd):
    torch = pytest.importorskip("torch", reason="reading .pth needs torch")
    path = tmp_path / "r18.pth"
    torch.save(
        {"state_dict": {k: torch.from_numpy(np.asarray(v)) for k, v in r18_sd.items()}}, path
    )
    sd = read_state_dict(path)
    np.testing.assert_array_equal(
        sd["layer4.1.bn2.running_var"], r18_sd["layer4.1.bn2.running_var"]
    )


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.usefixtures("highest_precision")  # vs torch in float32 (TF32 off there too)
def test_matches_torch_resnet(arch):
    """Full network vs a torch.nn ResNet built like torchvision's (same state-dict keys)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from tests.models.torch_resnet import ResNet, calibrate_bn, randomize_bn
    from tljax.models import get_backbone_factory

    torch.manual_seed(0)
    ref = ResNet(arch, num_classes=10)
    randomize_bn(ref)
    rng = np.random.default_rng(0)
    calibrate_bn(ref, torch.from_numpy(rng.standard_normal((4, 3, 64, 64)).astype(np.float32)))
    x = rng.standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        feats, logits = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    model = get_backbone_factory(arch)((64, 64, 3), rngs=nnx.Rngs(0), num_classes=10)
    load_torchvision_resnet(
        model, {k: v.numpy() for k, v in ref.state_dict().items()}, include_head=True
    )
    model.eval()
    graph, state = nnx.split(model)
    out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    # float32 round-off grows through 50 layers (torch f32 is as far from torch f64, see
    # tests/models/parity/resnet_parity.py); a wrong layer would be off by O(1).
    for ours, theirs in ((out["features"], feats.numpy()), (out["logits"], logits.numpy())):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())
