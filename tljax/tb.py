"""A minimal TensorBoard scalar writer: event files without TensorFlow, torch or protobuf.

An event file is a TFRecord stream of serialized ``tensorboard.Event`` protocol buffers.
Scalars need only a handful of fields, encoded here by hand in the protobuf wire format:

* ``Event``: ``wall_time`` (1, double), ``step`` (2, int64), ``file_version`` (3, string),
  ``summary`` (5, message);
* ``Summary``: ``value`` (1, repeated message);
* ``Summary.Value``: ``tag`` (1, string), ``simple_value`` (2, float).

Each TFRecord is ``uint64 length, uint32 masked_crc32c(length), data,
uint32 masked_crc32c(data)`` (little endian), with CRC-32C (Castagnoli) masked as
``((crc >> 15 | crc << 17) + 0xa282ead8) mod 2**32``. TensorBoard reads these files
like those of ``tf.summary`` (``tests/test_tb.py`` decodes them with an independent
reader).
"""

from __future__ import annotations

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(
    *, wall_time: float, step: int = 0, file_version: str | None = None, scalars=None
) -> bytes:
    """Serializes one ``Event`` (a file-version header, or scalars ``{tag: value}``)."""
    out = bytearray(_varint(1 << 3 | 1) + struct.pack("<d", wall_time))
    out += _varint(2 << 3 | 0) + _varint(int(step))
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _field_bytes(
                1,
                _field_bytes(1, str(tag).encode()) + _varint(2 << 3 | 5) + struct.pack("<f", v),
            )
            for tag, v in scalars.items()
        )
        out += _field_bytes(5, summary)
    return bytes(out)


def tfrecord(data: bytes) -> bytes:
    """Frames ``data`` as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


class SummaryWriter:
    """Writes scalars to ``<logdir>/events.out.tfevents.<time>.<host>``.

    Args:
      logdir: the directory (created if missing).
    """

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._f = open(self.path, "ab")
        self._f.write(tfrecord(encode_event(wall_time=now, file_version="brain.Event:2")))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Appends one scalar (a float32 ``simple_value``)."""
        self.add_scalars({tag: value}, step)

    def add_scalars(self, scalars: dict[str, float], step: int) -> None:
        """Appends several scalars of one step as one event."""
        event = encode_event(
            wall_time=time.time(), step=step, scalars={k: float(v) for k, v in scalars.items()}
        )
        self._f.write(tfrecord(event))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
