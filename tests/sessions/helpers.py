"""Shared set-up for the sessions tests: one canonical tiny run, weight comparison, bundle surgery."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from onthefly.demos.boring import boring_setup


def setup(num_workers: int = 0, n: int = 256, persistent: bool = False):
    """(model, optimizer, loss_fn, loader, scheduler, val_loader): dropout, momentum, a per-epoch
    scheduler and a validation pass, so every piece of state matters to the next step."""
    model, opt, loss, loader = boring_setup(seed=0, n=n, num_workers=num_workers)
    if persistent:
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=16, shuffle=True, num_workers=num_workers,
                                             persistent_workers=True)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
    val = torch.utils.data.DataLoader(loader.dataset, batch_size=64)
    return model, opt, loss, loader, scheduler, val


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- bundle surgery: rewrite the manifest (with a valid manifest checksum) to forge bad bundles -----
TRAILER = struct.Struct("<QQ32s16s")


def read_manifest(path: Path) -> tuple[bytes, dict, int]:
    data = path.read_bytes()
    offset, length, _, _ = TRAILER.unpack(data[-TRAILER.size:])
    return data[:offset], json.loads(data[offset:offset + length]), offset


def write_manifest(path: Path, body: bytes, manifest: dict) -> None:
    import hashlib

    data = json.dumps(manifest).encode()
    end = b"ONTHEFLY-END\n\x00\x00\x00"
    path.write_bytes(body + data + TRAILER.pack(len(body), len(data), hashlib.sha256(data).digest(), end))
