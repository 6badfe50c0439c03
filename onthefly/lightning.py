"""``from onthefly.lightning import attach_lightning`` (the code lives in onthefly.integrations.lightning)."""

from onthefly.integrations.lightning import OnTheFlyCallback, attach_lightning

__all__ = ["OnTheFlyCallback", "attach_lightning"]
