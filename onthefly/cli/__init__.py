"""The `onthefly` command line: a typed client of the same gRPC stubs as every other client."""
