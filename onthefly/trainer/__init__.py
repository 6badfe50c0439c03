"""The native training loop: Trainer(...).fit(...) and quickstart(...)."""
