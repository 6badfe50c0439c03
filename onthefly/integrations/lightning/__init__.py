"""OnTheFly for PyTorch Lightning: ``attach_lightning(trainer=..., model=..., project=..., run_name=...)``."""

from onthefly.integrations.lightning.attach import attach_lightning
from onthefly.integrations.lightning.callback import OnTheFlyCallback

__all__ = ["OnTheFlyCallback", "attach_lightning"]
