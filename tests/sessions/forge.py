"""Forge hostile bundles from a good one: every file rewritten with valid checksums, so only the
content checks (manifest fields, state.json, tensors) stand between them and the live run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from onthefly.sessions.bundle import Bundle, BundleWriter


def forge(src: Path, dst: Path, *, state: Callable[[dict], Any] | None = None,
          manifest: Callable[[dict], Any] | None = None, rename: dict[str, str] | None = None,
          resume_only: bool = False) -> Path:
    """Copy ``src`` to ``dst`` changing the resume checkpoint's state.json (``state(doc)`` edits it in
    place), the manifest (``manifest(body)`` edits it in place) or folder names (``rename`` maps an old
    checkpoint folder to a new one, in paths and in the manifest)."""
    rename = rename or {}

    def moved(rel: str) -> str:
        for old, new in rename.items():
            if rel == old or rel.startswith(old + "/"):
                return new + rel[len(old):]
        return rel

    with Bundle.open(src) as bundle:
        resume = bundle.resume_dir
        writer = BundleWriter(dst, overwrite=True, durable=False)
        for rel, entry in sorted(bundle.files.items(), key=lambda kv: kv[1]["offset"]):
            data = bundle.read_bytes(rel)
            if state is not None and rel == f"{resume}/state.json":
                doc = json.loads(data)
                state(doc)
                data = json.dumps(doc).encode()
            writer.add_bytes(moved(rel), data, entry["kind"])
        body = {k: v for k, v in bundle.manifest.items() if k not in ("files", "format", "format_version")}
        body = json.loads(json.dumps(body))
        body["resume_checkpoint"] = moved(body["resume_checkpoint"])
        for entry in body.get("checkpoints", []):
            entry["dir"] = moved(entry["dir"])
        if manifest is not None:
            manifest(body)
        writer.finish(body)
    return dst
