"""Process settings that must be in place before grpc is first imported.

Forked DataLoader workers crash while a gRPC stream is open unless gRPC's fork support is off,
and gRPC reads GRPC_ENABLE_FORK_SUPPORT only when it is first imported. Every onthefly module that
imports grpc imports this module first.
"""

from __future__ import annotations

import os
import sys
import warnings

_grpc_was_loaded = "grpc" in sys.modules
_fork_support_before = os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
if _grpc_was_loaded and _fork_support_before != "0":
    warnings.warn(
        "grpc was imported before onthefly with fork support on; DataLoader(num_workers>0) may crash "
        "while a client streams. Import onthefly first or set GRPC_ENABLE_FORK_SUPPORT=0.",
        RuntimeWarning,
        stacklevel=2,
    )
