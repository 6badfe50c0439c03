"""OnTheFly: watch and steer a PyTorch training run while it runs."""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401  (must precede any grpc import)

__version__ = "0.1.0"
