"""ResolutionService: parse, hand one lab command to the training thread (fork, compare, apply) or read what
the run's Workbench holds (comparison, recommendation, lineage), map domain errors to status codes."""

from __future__ import annotations


from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.lab.lab import attach_lab
from onthefly.lab.resolutions import MENU
from onthefly.lab.workbench import CompareResult, workbench_of
from onthefly.runtime.errors import InvalidArgument
from onthefly.runtime.run import Run
from onthefly.server import resolution_convert as convert
from onthefly.server.control_servicer import submit_and_wait
from onthefly.server.convert import receipt as proto_receipt
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ResolutionService"].full_name


class ResolutionServicer(pb_grpc.ResolutionServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def _bench(self):
        return workbench_of(attach_lab(self._run))

    def _routed(self, bench) -> set[str]:
        try:
            return {n for n in MENU if _is_routed(bench, n)}
        except Exception:  # no comparison yet
            return set()

    def Fork(self, request, context):
        with domain_errors(context):
            replay = request.replay_fraction if request.HasField("replay_fraction") else 0.2
            command = self._bench().fork_command(list(request.region_ids), int(request.budget),
                                                 replay_fraction=replay, patience=request.patience or None,
                                                 background=request.background, seed=int(request.seed),
                                                 checkpoint_id=request.checkpoint_id,
                                                 allowance=int(request.allowance) or None)
            pending = submit_and_wait(self._run, command, context)
        response = pb.ForkResponse(receipt=proto_receipt(pending.wait(0)), background=request.background)
        if pending.result is not None:
            response.specialist_ids.extend(pending.result.ids)
        return response

    def Compare(self, request, context):
        with domain_errors(context):
            names = tuple(request.resolutions) or MENU
            bench = self._bench()
            command = bench.compare_command(int(request.extra) or None, names, seed=int(request.seed),
                                            allowance=int(request.allowance) or None)
            pending = submit_and_wait(self._run, command, context)
        response = pb.CompareResponse(receipt=proto_receipt(pending.wait(0)))
        if isinstance(pending.result, CompareResult):
            response.comparison.CopyFrom(convert.comparison(pending.result, self._routed(bench)))
        return response

    def GetComparison(self, request, context):
        with domain_errors(context):
            bench = self._bench()
            return pb.GetComparisonResponse(comparison=convert.comparison(bench.comparison(), self._routed(bench)))

    def Recommend(self, request, context):
        with domain_errors(context):
            return convert.recommendation(self._bench().recommend())

    def Apply(self, request, context):
        with domain_errors(context):
            if not request.resolution:
                raise InvalidArgument("name the resolution to apply (see Compare / `onthefly lab compare`)")
            command = self._bench().apply_command(request.resolution, confirm=request.confirm)
            pending = submit_and_wait(self._run, command, context)
        response = pb.ApplyResponse(receipt=proto_receipt(pending.wait(0)))
        if pending.result is not None:
            applied = pending.result
            response.kind, response.state_hash = applied.kind, applied.state_hash
            response.replaced_state_hash, response.record = applied.replaced_hash, applied.record
        return response

    def Lineage(self, request, context):
        with domain_errors(context):
            bench = self._bench()
            return convert.lineage(bench.lineage, bench.training())


def _is_routed(bench, name: str) -> bool:
    try:
        return bench.resolution(name).routed
    except Exception:
        return False


def add_to_server(server: grpc.Server, run: Run) -> list[str]:
    """Server-factory extension: serve ResolutionService for the run's Lab."""
    pb_grpc.add_ResolutionServiceServicer_to_server(ResolutionServicer(run), server)
    return [SERVICE_NAME]


register_extension(add_to_server)
