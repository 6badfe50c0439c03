"""The tracking server: ``onthefly serve`` hosts TrackingService over a local store, with per-user tokens."""
