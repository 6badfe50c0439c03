"""A rank's part of a checkpoint crosses the job's store as JSON and comes back exactly; a collect
directive survives its message encoding and changes no state."""

from __future__ import annotations

import random

import numpy as np
import torch

from onthefly.distributed.directive import Directive, Message
from onthefly.distributed.gather import decode_part, encode_part
from onthefly.sessions import rng


def test_a_ranks_rng_part_round_trips_through_the_store_encoding():
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    part = {"now": rng.capture([generator]), "epoch_start": None}
    raw = encode_part(part)
    assert b"__tensor__" in raw and b"pickle" not in raw
    expected = (torch.rand(4), np.random.rand(4), random.random(), torch.rand(4, generator=generator))
    torch.manual_seed(0), np.random.seed(0), random.seed(0), generator.manual_seed(0)
    back = decode_part(raw)
    assert back["epoch_start"] is None
    rng.restore(back["now"], [generator])
    again = (torch.rand(4), np.random.rand(4), random.random(), torch.rand(4, generator=generator))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2] and torch.equal(expected[3], again[3])


def test_a_collect_directive_round_trips():
    message = Message(12, Directive(12, False, False, 0, collect=3))
    back = Message.decode(message.encode())
    assert back.directive.collect == 3 and back.directive.at == 12 and back.horizon == 12
    plain = Message.decode(Message(9, Directive(9, False, True, 2)).encode())
    assert plain.directive.collect == 0 and plain.directive.paused
