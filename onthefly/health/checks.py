"""The registry of health checks, in the order they run and are reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from onthefly.health import activations, checkpoints, configuration, determinism, gradients, numerics, throughput
from onthefly.health.findings import Finding
from onthefly.health.inputs import CheckInput


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str
    run: Callable[[CheckInput], list[Finding]]


CHECKS: dict[str, CheckSpec] = {spec.name: spec for spec in (
    CheckSpec("numerics", "NaN/Inf in parameters, gradients, buffers and the loss; AMP overflow counts; guard trips",
              numerics.check),
    CheckSpec("gradients", "per-layer gradient norms from one probe step; exploding/vanishing layers; parameters "
              "with no gradient or missing from the optimizer", gradients.check),
    CheckSpec("activations", "dead ReLU and saturated sigmoid/tanh units over a few batches (hooks removed after)",
              activations.check),
    CheckSpec("throughput", "data-loading vs compute time per step, samples/s and GPU utilisation", throughput.check),
    CheckSpec("determinism", "replays one step from a saved batch and RNG state and compares loss and gradient hash; "
              "lists nondeterministic settings", determinism.check),
    CheckSpec("configuration", "train mode, scheduler/optimizer pairing, learning rates and loader settings",
              configuration.check),
    CheckSpec("checkpoints", "scheduled checkpoints that could not be written (a full disk); training went on "
              "without them", checkpoints.check),
)}
