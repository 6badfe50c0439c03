"""Bulk per-sample arrays as raw protobuf wire bytes, in both directions.

SampleLosses' arrays are packed fixed-width fields (sfixed64 indices, float losses), whose wire
form is a tag, a byte length and the little-endian values. Building and reading that form with
numpy moves millions of values a second where element-by-element conversion manages a few. This is
plain protobuf encoding (any client decodes the message normally); this module is just a fast path.
"""

from __future__ import annotations

import numpy as np

_SPLIT_TAG, _INDICES_TAG, _LOSSES_TAG = b"\x0a", b"\x12", b"\x1a"  # fields 1, 2, 3, wire type 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def encode_sample_losses(split: str, indices: np.ndarray, losses: np.ndarray) -> bytes:
    """Serialized onthefly.v1.SampleLosses for these arrays."""
    parts = []
    if split:
        raw = split.encode()
        parts += [_SPLIT_TAG, _varint(len(raw)), raw]
    if len(indices):
        raw = np.ascontiguousarray(indices, dtype="<i8").tobytes()
        parts += [_INDICES_TAG, _varint(len(raw)), raw]
    if len(losses):
        raw = np.ascontiguousarray(losses, dtype="<f4").tobytes()
        parts += [_LOSSES_TAG, _varint(len(raw)), raw]
    return b"".join(parts)


def decode_sample_losses(data: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """(split, indices int64, losses float32) from serialized SampleLosses (zero-copy views)."""
    buf = memoryview(data)
    pos, split = 0, ""
    indices = np.empty(0, np.int64)
    losses = np.empty(0, np.float32)
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag & 7 != 2:  # every field of SampleLosses is length-delimited when packed
            raise ValueError(f"unexpected wire type {tag & 7} in SampleLosses")
        size, pos = _read_varint(buf, pos)
        chunk = buf[pos : pos + size]
        pos += size
        field = tag >> 3
        if field == 1:
            split = bytes(chunk).decode()
        elif field == 2:
            indices = np.concatenate([indices, np.frombuffer(chunk, dtype="<i8")]) if len(indices) else \
                np.frombuffer(chunk, dtype="<i8")
        elif field == 3:
            losses = np.concatenate([losses, np.frombuffer(chunk, dtype="<f4")]) if len(losses) else \
                np.frombuffer(chunk, dtype="<f4")
    return split, indices, losses
