"""LabService: parse, call one lab operation (a scoring command at a step boundary, a discovery on the lab's
worker thread, or a read), map domain errors to status codes, answer. Registered on import; it gives
every served run a Lab (``attach_lab``) when the server starts, before the first step."""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.lab.lab import Lab, attach_lab
from onthefly.runtime.run import Run
from onthefly.server import lab_convert as convert
from onthefly.server.control_servicer import submit_and_wait
from onthefly.server.convert import receipt as proto_receipt
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.v1 import lab_pb2, lab_pb2_grpc

SERVICE_NAME = lab_pb2.DESCRIPTOR.services_by_name["LabService"].full_name
EXPORT_CHUNK_BYTES = 1 << 20
MAX_DISCOVER_SECONDS = 600.0


class LabServicer(lab_pb2_grpc.LabServiceServicer):
    def __init__(self, run: Run, lab: Lab) -> None:
        self._run = run
        self._lab = lab

    def Score(self, request, context):
        with domain_errors(context):
            command = self._lab.score_command(convert.splits(request.splits, ("train",)), layer=request.layer or None,
                                              seed=request.seed)
        pending = submit_and_wait(self._run, command, context)
        response = lab_pb2.ScoreResponse(receipt=proto_receipt(pending.wait(0)))
        if pending.result is not None:
            response.scores.extend(convert.score_summary(split, scored)
                                   for split, scored in pending.result.tables.items())
        return response

    def DiscoverRegions(self, request, context):
        remaining = context.time_remaining()
        timeout = MAX_DISCOVER_SECONDS if remaining is None else max(0.1, min(remaining - 0.05, MAX_DISCOVER_SECONDS))
        with domain_errors(context):
            if request.inputs_only and request.embedding_only:
                from onthefly.runtime.errors import InvalidArgument

                raise InvalidArgument("inputs_only and embedding_only exclude each other; set at most one")
            regions = self._lab.discover(k=request.k or 8, ratio=request.ratio or None,
                                         max_regions=request.max_regions or 4, seed=request.seed,
                                         use_inputs=not request.embedding_only,
                                         use_embedding=not request.inputs_only, timeout=timeout)
            return lab_pb2.DiscoverRegionsResponse(discovery=self._region_set(regions))

    def _region_set(self, regions):
        descriptions = {r.id: self._lab.describe(r.id) for r in regions.regions}
        return convert.region_set(regions, self._lab.discovery_step(regions), descriptions)

    def ListRegions(self, request, context):
        with domain_errors(context):
            return lab_pb2.ListRegionsResponse(discovery=self._region_set(self._lab.regions()))

    def GetRegion(self, request, context):
        with domain_errors(context):
            if not request.region_id:
                from onthefly.runtime.errors import InvalidArgument

                raise InvalidArgument("name a region, e.g. r1 (ListRegions lists them)")
            region = self._lab.region(request.region_id)
            description = self._lab.describe(request.region_id)
            return lab_pb2.GetRegionResponse(region=convert.region_description(description, region))

    def Select(self, request, context):
        with domain_errors(context):
            split = convert.split(request.split)
            rule = request.WhichOneof("rule")
            if rule == "loss_band":
                made = self._lab.select_loss_band(request.name, split, request.loss_band.low_quantile,
                                                  request.loss_band.high_quantile)
            elif rule == "class_errors":
                made = self._lab.select_class_errors(request.name, split, request.class_errors.label)
            elif rule == "forgotten":
                made = self._lab.select_forgotten(request.name, request.forgotten.threshold or None)
            elif rule == "region":
                made = self._lab.select_region(request.name, request.region.region_id)
            else:
                from onthefly.runtime.errors import InvalidArgument

                raise InvalidArgument("set one rule: loss_band, class_errors, forgotten or region")
            return lab_pb2.SelectResponse(slice=convert.slice_summary(made))

    def ListSlices(self, request, context):
        return lab_pb2.ListSlicesResponse(slices=[convert.slice_summary(s)
                                                  for s in sorted(self._lab.slices(), key=lambda s: s.name)])

    def PerClassError(self, request, context):
        with domain_errors(context):
            return convert.per_class_error(self._lab.per_class_error(convert.split(request.split)))

    def Quantiles(self, request, context):
        with domain_errors(context):
            self._lab.sync_bus()  # include every step published so far
            split = convert.split(request.split)
            scope = convert.scope(request.scope, "run" if split == "train" else "eval")
            value = self._lab.sketches.quantiles(split, tuple(request.ranks), scope=scope,
                                                 epoch=convert.optional(request, "epoch"),
                                                 step=convert.optional(request, "step"))
            return convert.quantiles(value)

    def Histogram(self, request, context):
        with domain_errors(context):
            self._lab.sync_bus()  # include every step published so far
            value = self._lab.sketches.histogram(
                convert.split(request.split), request.bins or 50, scope=convert.scope(request.scope, "latest"),
                epoch=convert.optional(request, "epoch"), step=convert.optional(request, "step"),
                low=convert.optional(request, "low"), high=convert.optional(request, "high"),
                log_scale=request.log_scale)
            return convert.histogram(value)

    def TopK(self, request, context):
        with domain_errors(context):
            self._lab.sync_bus()  # include every step published so far
            value = self._lab.sketches.topk(convert.split(request.split), request.k or 20,
                                            by="mean" if request.by_mean else "latest", largest=not request.smallest)
            return convert.topk(value)

    def LossBands(self, request, context):
        with domain_errors(context):
            self._lab.sync_bus()  # include every step published so far
            value = self._lab.sketches.step_bands(convert.optional(request, "first_step"),
                                                  convert.optional(request, "last_step"), request.max_points or 2000)
            return convert.loss_bands(value)

    def SampleTrajectory(self, request, context):
        with domain_errors(context):
            self._lab.sync_bus()
            value = self._lab.history.trajectory(request.index, convert.splits(request.splits, ("train", "val", "test")))
            return convert.trajectory(value)

    def GetSample(self, request, context):
        with domain_errors(context):
            command = self._lab.sample_command(request.index, convert.split(request.split))
        pending = submit_and_wait(self._run, command, context)
        receipt = pending.wait(0)
        if pending.result is None:
            code = grpc.StatusCode.FAILED_PRECONDITION if receipt.reason else grpc.StatusCode.DEADLINE_EXCEEDED
            context.abort(code, receipt.reason or "the run did not reach a step boundary before the deadline")
        return convert.sample(pending.result)

    def ExportSlice(self, request, context):
        with domain_errors(context):
            fmt = convert.slice_format(request.format)
            rows, data = self._lab.export_slice(request.name, fmt, tuple(request.columns) or None)
        view = memoryview(data)
        first = True
        for start in range(0, max(len(data), 1), EXPORT_CHUNK_BYTES):
            if not context.is_active():
                return
            chunk = lab_pb2.ExportSliceResponse(data=bytes(view[start:start + EXPORT_CHUNK_BYTES]))
            if first:
                chunk.rows, chunk.total_bytes, first = rows, len(data), False
            yield chunk

    def ImportSlice(self, request, context):
        with domain_errors(context):
            fmt = convert.slice_format(request.format)
            split = None if request.split == lab_pb2.SAMPLE_SPLIT_UNSPECIFIED else convert.split(request.split)
            made = self._lab.import_slice(request.name, fmt, request.data, split)
            return lab_pb2.ImportSliceResponse(slice=convert.slice_summary(made))


def add_to_server(server: grpc.Server, run: Run) -> list[str]:
    """Server-factory extension: give the run its Lab and serve LabService."""
    lab_pb2_grpc.add_LabServiceServicer_to_server(LabServicer(run, attach_lab(run)), server)
    return [SERVICE_NAME]


register_extension(add_to_server)
