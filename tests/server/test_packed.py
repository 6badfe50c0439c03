import numpy as np
import pytest

from onthefly.client import sample_arrays
from onthefly.server.packed import decode_sample_losses, encode_sample_losses
from onthefly.v1 import telemetry_pb2


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_fast_encoding_is_plain_protobuf_both_ways(n):
    rng = np.random.default_rng(n)
    indices = rng.integers(-1, 2**40, n).astype(np.int64)
    losses = rng.random(n, dtype=np.float32)
    fast = encode_sample_losses("val", indices, losses)
    standard = telemetry_pb2.SampleLosses(split="val", indices=indices.tolist(), losses=losses.tolist())
    assert fast == standard.SerializeToString()
    parsed = telemetry_pb2.SampleLosses.FromString(fast)
    got_indices, got_losses = sample_arrays(parsed)
    assert np.array_equal(got_indices, indices) and np.array_equal(got_losses, losses)
    assert decode_sample_losses(fast)[0] == "val"
