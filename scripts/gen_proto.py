"""Generate the committed stubs from proto/onthefly/v1.

Python (messages, gRPC, .pyi via mypy-protobuf) goes into onthefly/v1/. The TypeScript
client has its own generator in vscode-client/. Run: .venv/bin/python scripts/gen_proto.py
[--out DIR] — with --out the stubs are written under DIR instead (the drift test uses this).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "onthefly" / "v1").glob("*.proto"))


def generate(out: pathlib.Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    (out / "onthefly" / "v1").mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = pathlib.Path(sys.executable).parent  # protoc-gen-mypy lives beside the interpreter
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see the messages above")
    init = out / "onthefly" / "v1" / "__init__.py"
    init.write_text('"""Generated gRPC/protobuf stubs for onthefly.v1. Do not edit: run scripts/gen_proto.py."""\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT, help="root to write onthefly/v1 under")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
