"""The TF-free TensorBoard writer, decoded by an independent reader (protobuf messages of
tensorboardX and a CRC-32C test vector)."""

import struct

import numpy as np
import pytest

from tljax import tb
from tljax.logs import MetricLogger


def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) B.4 and the common check value.
    assert tb.crc32c(b"123456789") == 0xE3069283
    assert tb.crc32c(bytes(32)) == 0x8A9136AA
    assert tb.crc32c(bytes([0xFF] * 32)) == 0x62A8AB43


def _records(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        (len_crc,) = struct.unpack_from("<I", data, i + 8)
        assert len_crc == tb.masked_crc32c(data[i : i + 8])
        body = data[i + 12 : i + 12 + n]
        (body_crc,) = struct.unpack_from("<I", data, i + 12 + n)
        assert body_crc == tb.masked_crc32c(body)
        out.append(body)
        i += 12 + n + 4
    assert i == len(data)
    return out


def test_events_decode_with_protobuf(tmp_path):
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    logger = MetricLogger(str(tmp_path))
    logger.write(10, "train", {"loss": 0.25, "acc": 0.5})
    logger.write(2**40, "eval", {"target_test_acc": -1.5})
    logger.close()
    (path,) = (tmp_path / "tensorboard").iterdir()
    assert path.name.startswith("events.out.tfevents.")
    events = []
    for body in _records(path):
        e = event_pb2.Event()
        e.ParseFromString(body)
        events.append(e)
    assert events[0].file_version == "brain.Event:2"
    got = {(e.step, v.tag): v.simple_value for e in events[1:] for v in e.summary.value}
    assert got == {
        (10, "train/loss"): 0.25,
        (10, "train/acc"): 0.5,
        (2**40, "eval/target_test_acc"): -1.5,
    }
    assert all(e.wall_time > 1e9 for e in events)


def test_float32_rounding_matches_protobuf(tmp_path):
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    w = tb.SummaryWriter(str(tmp_path))
    w.add_scalar("x", 0.1, 3)
    w.close()
    e = event_pb2.Event()
    e.ParseFromString(_records(w.path)[1])
    assert e.summary.value[0].simple_value == np.float32(0.1)
    assert e.step == 3
