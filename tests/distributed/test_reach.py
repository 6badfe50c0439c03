"""Whether a job spans hosts, and the address rank 0's coordinator is dialled at."""

from __future__ import annotations

import pytest

from onthefly.distributed import reach
from onthefly.distributed.reach import Placement


def test_the_hostname_override_is_what_a_rank_reports(monkeypatch):
    monkeypatch.setenv(reach.HOSTNAME_ENV, "node-b")
    assert reach.hostname() == "node-b"


def test_ranks_on_rank0s_host_are_not_remote():
    placements = [Placement(0, "a", "127.0.0.1"), Placement(1, "a", "127.0.0.1"), Placement(2, "b", "node-a")]
    assert reach.remote(placements) == [placements[2]]
    assert reach.remote(placements[:2]) == []


def test_rank0_is_dialled_where_the_remote_ranks_dial_the_store_when_that_is_rank0s_host(monkeypatch):
    monkeypatch.delenv(reach.COORDINATOR_HOST_ENV, raising=False)
    placements = [Placement(0, "a", "localhost"), Placement(1, "b", "127.0.0.1")]
    assert reach.coordinator_host(placements) == ("127.0.0.1", "127.0.0.1")


def test_an_explicit_coordinator_host_wins_and_must_be_this_hosts(monkeypatch):
    placements = [Placement(0, "a", "127.0.0.1"), Placement(1, "b", "127.0.0.1")]
    monkeypatch.setenv(reach.COORDINATOR_HOST_ENV, "localhost")
    assert reach.coordinator_host(placements)[0] == "localhost"
    monkeypatch.setenv(reach.COORDINATOR_HOST_ENV, "192.0.2.1")  # TEST-NET-1: never this host's
    with pytest.raises(RuntimeError, match=reach.COORDINATOR_HOST_ENV):
        reach.coordinator_host(placements)


def test_a_host_name_that_means_loopback_only_here_is_not_dialled_from_other_hosts(monkeypatch):
    # As Debian maps a machine's own name to 127.0.1.1: the other hosts resolve that name elsewhere.
    monkeypatch.delenv(reach.COORDINATOR_HOST_ENV, raising=False)
    placements = [Placement(0, "a", "x"), Placement(1, "no-such-host.invalid", "localhost")]
    with pytest.raises(RuntimeError, match=reach.COORDINATOR_HOST_ENV):
        reach.coordinator_host(placements)


def test_an_unreachable_store_address_asks_for_the_coordinator_host(monkeypatch):
    monkeypatch.delenv(reach.COORDINATOR_HOST_ENV, raising=False)
    placements = [Placement(0, "a", "x"), Placement(1, "b", "no-such-host.invalid")]
    with pytest.raises(RuntimeError, match=reach.COORDINATOR_HOST_ENV):
        reach.coordinator_host(placements)


def test_ipv6_addresses_are_bracketed():
    assert reach.dial_address("::1", 5) == "[::1]:5"
    assert reach.dial_address("10.0.0.1", 5) == "10.0.0.1:5"
    assert reach.dial_address("node0", 5) == "node0:5"
