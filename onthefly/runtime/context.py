"""LoopContext: what a command applied at a step boundary may read and change.

The training loop owns one instance and keeps ``step``/``epoch``/``batch_in_epoch`` current.
Only the training thread touches it (commands run there), so no locking is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from onthefly.runtime.events import EvalResult
    from onthefly.runtime.run import Run


@dataclass
class LoopContext:
    run: "Run"
    model: "torch.nn.Module"
    optimizer: "torch.optim.Optimizer"
    loss_fn: Callable[..., Any] | None
    device: "torch.device"
    train_loader: Any
    val_loader: Any = None
    test_loader: Any = None
    scheduler: Any = None
    scaler: Any = None
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    # evaluate(split, reason) runs a validation/test pass on the training thread and returns its result.
    evaluate: Callable[[str, str], "EvalResult"] | None = None
    # forward(model, batch) -> StepOutput: the loop's own forward pass and loss (health checks replay it).
    forward: Callable[[Any, Any], Any] | None = None
    # autocast() -> a context manager matching the run's precision, for passes outside the loop.
    autocast: Callable[[], Any] | None = None
    # train_batches: the TappedLoader the loop iterates (sessions position it to resume mid-epoch).
    train_batches: Any = None
    # repositioned: set by a command that moved step/epoch/batch_in_epoch (session import or restore);
    # the loop then starts over at that position.
    repositioned: bool = False
    # Feature-owned state (sessions, health checks, ...) keyed by feature name.
    extras: dict[str, Any] = field(default_factory=dict)
