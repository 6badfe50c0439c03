// Everything the tests exercise under plain Node (bundled to dist/test/core.cjs).
export * from "./client.js";
export * from "./discovery.js";
export * from "./follower.js";
export * from "./histogram.js";
export * from "./html.js";
export * from "./launch.js";
export * from "./protocol.js";
export * from "./session.js";
export * from "./store.js";
export * from "./successor.js";
export * as webviewModel from "../webview/model.js";
export * as webviewScales from "../webview/scales.js";
export { create } from "@bufbuild/protobuf";
export * as telemetryPb from "../gen/onthefly/v1/telemetry_pb.js";
export * as runPb from "../gen/onthefly/v1/run_pb.js";
export * as controlPb from "../gen/onthefly/v1/control_pb.js";
export * as diagnosticsPb from "../gen/onthefly/v1/diagnostics_pb.js";
export * as sessionsPb from "../gen/onthefly/v1/sessions_pb.js";
