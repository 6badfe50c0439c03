"""The contract: committed stubs equal freshly generated ones, buf lint is clean, every RPC and
field carries a contract comment."""

from __future__ import annotations

import filecmp
import pathlib
import shutil
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
STUBS = ROOT / "onthefly" / "v1"


def test_regenerated_python_stubs_equal_the_committed_ones(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = tmp_path / "onthefly" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed = sorted(p.name for p in STUBS.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    assert names == committed, "stub files differ: run `make stubs` and commit"
    _, mismatch, errors = filecmp.cmpfiles(fresh, STUBS, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code in {mismatch + errors}: run `make stubs` and commit"


def _buf() -> str:
    exe = shutil.which("buf", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("buf")
    if exe is None:
        pytest.fail("buf is not installed: run scripts/bootstrap.sh (it installs buf-bin)")
    return exe


def test_buf_lint_passes():
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rpc_message_field_and_enum_value_has_a_comment(tmp_path):
    image = tmp_path / "image.binpb"
    subprocess.run([_buf(), "build", "-o", str(image)], cwd=ROOT, check=True, capture_output=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    missing = []
    for f in files.file:
        if not f.name.startswith("onthefly/"):
            continue
        commented = {tuple(loc.path) for loc in f.source_code_info.location if loc.leading_comments.strip()}

        def need(path, what):
            if tuple(path) not in commented:
                missing.append(f"{f.name}: {what}")

        for si, service in enumerate(f.service):
            need([6, si], service.name)
            for mi, method in enumerate(service.method):
                need([6, si, 2, mi], f"{service.name}.{method.name}")
        for mi, message in enumerate(f.message_type):
            need([4, mi], message.name)
            for fi, field in enumerate(message.field):
                need([4, mi, 2, fi], f"{message.name}.{field.name}")
        for ei, enum in enumerate(f.enum_type):
            need([5, ei], enum.name)
            for vi, value in enumerate(enum.value):
                need([5, ei, 2, vi], f"{enum.name}.{value.name}")
    assert not missing, "add a one-line contract comment to: " + ", ".join(missing)
