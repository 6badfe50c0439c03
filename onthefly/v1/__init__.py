"""Generated gRPC/protobuf stubs for onthefly.v1. Do not edit: run scripts/gen_proto.py."""
