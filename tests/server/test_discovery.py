"""The discovery folder is trusted only when it is ours: another user's discovery file is never listed
(it could point our clients at their server, with our token), and a discovery folder that is a link or
belongs to someone else is refused with what to do. Tests run as root here, so other users' files are
made with chown (skipped where that is not allowed)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest

from onthefly.server.discovery import DiscoveryFile, RunInfo, live_runs

OTHER_UID = 65534  # nobody


def _info(port: int) -> RunInfo:
    return RunInfo(port=port, pid=os.getpid(), token="t" * 48, project="p", run_name=f"r{port}", run_id=f"id{port}",
                   started_at=1.0 + port)


def _chown_or_skip(path) -> None:
    try:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    except PermissionError:
        pytest.skip("making another user's file needs root")


def test_another_users_discovery_file_is_never_listed(runtime_dir):
    runtime_dir.mkdir(mode=0o700)
    ours = DiscoveryFile(_info(1111))
    try:
        theirs = runtime_dir / f"{os.getpid()}-2222.json"
        theirs.write_text(json.dumps(asdict(_info(2222))))
        _chown_or_skip(theirs)
        assert [r.port for r in live_runs()] == [1111]
    finally:
        ours.remove()


@pytest.mark.parametrize("kind", ["symlink", "owned by another user"])
def test_a_discovery_folder_that_is_not_ours_is_refused(runtime_dir, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if kind == "symlink":
        runtime_dir.symlink_to(elsewhere)
    else:
        runtime_dir.mkdir(mode=0o700)
        _chown_or_skip(runtime_dir)
    with pytest.raises(PermissionError, match="not a folder owned by this user.*ONTHEFLY_RUNTIME_DIR"):
        DiscoveryFile(_info(3333))
    assert list(elsewhere.iterdir()) == [] and not list(runtime_dir.glob("*.json"))
