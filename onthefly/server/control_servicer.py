"""ControlService: parse, submit one domain command, wait for its receipt, answer."""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime import steering
from onthefly.runtime.commands import Command, PendingCommand
from onthefly.runtime.run import Run
from onthefly.server import convert
from onthefly.server.status import domain_errors
from onthefly.v1 import control_pb2, control_pb2_grpc

MAX_WAIT_SECONDS = 60.0  # without a client deadline, a call returns ACCEPTED after this long


def submit_and_wait(run: Run, command: Command, context: grpc.ServicerContext) -> PendingCommand:
    """Submit ``command`` and wait (bounded by the call deadline) until it is applied or rejected."""
    with domain_errors(context):
        pending = run.control.submit(command)
    remaining = context.time_remaining()
    timeout = MAX_WAIT_SECONDS if remaining is None else max(0.0, min(remaining - 0.05, MAX_WAIT_SECONDS))
    pending.wait(timeout)
    return pending


class ControlServicer(control_pb2_grpc.ControlServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def _do(self, command: Command, context: grpc.ServicerContext):
        pending = submit_and_wait(self._run, command, context)
        return convert.receipt(pending.wait(0)), pending

    def GetStatus(self, request, context):
        return control_pb2.GetStatusResponse(status=convert.status(self._run.status()))

    def Pause(self, request, context):
        receipt, _ = self._do(steering.Pause(), context)
        return control_pb2.PauseResponse(receipt=receipt)

    def Resume(self, request, context):
        receipt, _ = self._do(steering.Resume(), context)
        return control_pb2.ResumeResponse(receipt=receipt)

    def Stop(self, request, context):
        receipt, _ = self._do(steering.Stop(skip_test=request.skip_test), context)
        return control_pb2.StopResponse(receipt=receipt)

    def Step(self, request, context):
        receipt, _ = self._do(steering.RunSteps(request.steps), context)
        return control_pb2.StepResponse(receipt=receipt)

    def RunTest(self, request, context):
        receipt, pending = self._do(steering.RunTest(stay_paused=request.stay_paused), context)
        response = control_pb2.RunTestResponse(receipt=receipt)
        if pending.result is not None:
            response.result.CopyFrom(convert.eval_result(pending.result))
        return response

    def SetHyperparameters(self, request, context):
        receipt, pending = self._do(steering.SetHyperparameters(dict(request.values), list(request.groups)), context)
        response = control_pb2.SetHyperparametersResponse(receipt=receipt)
        if pending.result is not None:
            response.hyperparameters.extend(convert.hyperparameters(pending.result))
        return response
