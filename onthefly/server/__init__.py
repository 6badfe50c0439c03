"""The gRPC layer: thin servicers over the run runtime, one convert module, auth, discovery."""
