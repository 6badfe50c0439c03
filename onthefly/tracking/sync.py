"""Copy an experiment between two backends (local store -> server is push, server -> local is pull).

The copy is idempotent: streams are replaced, parameters merged, files copied by id (a file already there
with the same checksum is skipped), and the source's status is recorded at the end. Running it twice
leaves the destination as after the first run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from onthefly.tracking.filestore import STAGING_SUFFIX
from onthefly.tracking.records import OpenSpec, Status

PAGE_ROWS = 100_000


@dataclass
class CopyReport:
    prefix: str
    streams: dict[str, int] = field(default_factory=dict)
    params: int = 0
    files_copied: int = 0
    files_skipped: int = 0
    status: str = ""


def copy_experiment(src, dst, prefix: str, dst_prefix: str | None = None) -> CopyReport:
    """Copy ``prefix`` from backend ``src`` to backend ``dst`` (as ``dst_prefix``)."""
    target = dst_prefix or prefix
    record = src.get_experiment(prefix)
    report = CopyReport(target)
    dst.open_experiment(OpenSpec(target, record.tags, record.readme, record.metadata, record.shared, status=None))
    params = src.get_params(prefix)
    if params:
        dst.set_params(target, params)
    report.params = len(params)
    for info in src.streams(prefix):
        table, total = src.read(prefix, info.kind, info.name)
        if table.num_rows == 0:
            continue
        for start in range(0, table.num_rows, PAGE_ROWS):
            dst.append(target, info.kind, info.name, table.slice(start, PAGE_ROWS), replace=(start == 0))
        report.streams[f"{info.kind.value}:{info.name}"] = table.num_rows
    have = {(f.id, f.sha256) for f in dst.list_files(target)}
    with tempfile.TemporaryDirectory(prefix="onthefly-sync-") as tmp:
        for record_file in src.list_files(prefix):
            if (record_file.id, record_file.sha256) in have:
                report.files_skipped += 1
                continue
            staged = Path(tmp) / f"{record_file.id}{STAGING_SUFFIX}"
            with open(staged, "wb") as f:
                src.read_file(prefix, record_file.id, f)
            dst.put_file(target, record_file, staged)
            staged.unlink(missing_ok=True)
            report.files_copied += 1
    note = f"copied from {getattr(src, 'address', src)}"
    final = dst.set_status(target, record.status or Status.COMPLETED, record.error, note)
    report.status = final.status.value
    return report
