"""Distributed runs: rank 0 hosts the API; every rank takes its decisions at the same step."""
