// The lab's calls for the dashboard's Lab panel: each page request ("op") becomes one or a few
// LabService / ResolutionService calls, answered as plain JSON. Statistics are computed by the trainer
// (histogram bins, quantiles): the page never receives every sample's loss.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { RunClient } from "./client.js";
import { LossScope, SampleSplit, SliceFormat, type RegionSummary, type ScoreSummary } from "../gen/onthefly/v1/lab_pb.js";
import type { ResolutionTable } from "../gen/onthefly/v1/lab_resolutions_pb.js";
import { ReceiptStatus, type Receipt } from "../gen/onthefly/v1/receipt_pb.js";
import type { LabComparisonView, LabOverview, LabReceiptView, LabRegionView, LabRequest, LabResult, LabSampleView, SliceFormatName,
} from "./labview.js";

export * from "./labview.js";

/** A call's failure as a person reads it: "NOT_FOUND: no region r42 (regions: r1, r2)". */
export function labError(err: unknown): string {
  const e = ConnectError.from(err);
  const code = e.code === Code.DeadlineExceeded ? "the trainer did not answer in time" : codeToString(e.code).toUpperCase();
  return `${code}: ${e.rawMessage || e.message}`;
}

const SPLITS: Record<number, string> = { [SampleSplit.TRAIN]: "train", [SampleSplit.VAL]: "val", [SampleSplit.TEST]: "test" };
const FORMATS: Record<SliceFormatName, SliceFormat> = { parquet: SliceFormat.PARQUET, csv: SliceFormat.CSV, json: SliceFormat.JSON };
/** Calls that run on the training thread (scoring, forks, comparisons) may take minutes. */
const LONG_MS = 600_000;
const SHORT_MS = 60_000;
/** The most pixels a thumbnail carries to the page. */
const MAX_THUMB_VALUES = 256 * 256 * 3;

function receipt(r: Receipt | undefined): LabReceiptView {
  const base = { step: Number(r?.appliedStep ?? 0n), commandId: Number(r?.commandId ?? 0n) };
  switch (r?.status) {
    case ReceiptStatus.APPLIED: return { ...base, status: "applied", detail: "" };
    case ReceiptStatus.ACCEPTED: return { ...base, status: "accepted", detail: "still queued for the next step boundary" };
    case ReceiptStatus.REJECTED: return { ...base, status: "rejected", detail: r.reason };
    default: return { ...base, status: "error", detail: "the trainer sent no receipt" };
  }
}

export function regionView(r: RegionSummary): LabRegionView {
  return {
    id: r.regionId, size: Number(r.size), meanLoss: r.meanLoss, lossRatio: r.lossRatio, accuracy: r.accuracy, verdict: r.verdict,
    noise: r.verdict.startsWith("likely label noise"), sentence: r.sentence,
  };
}

function scoreView(s: ScoreSummary) {
  return { split: SPLITS[s.split] ?? "train", samples: Number(s.samples), accuracy: s.accuracy, meanLoss: s.meanLoss, step: Number(s.step),
    seconds: s.seconds, stateHash: s.stateHash };
}

function tableView(t: ResolutionTable, step: number, extra: number): LabComparisonView {
  return {
    step, extra, split: t.split,
    columns: t.slices.map((c) => ({ name: c.name, kind: c.kind, size: Number(c.size) })),
    rows: t.rows.map((r) => ({
      name: r.name, description: r.description, accuracy: [...r.accuracy], overall: r.overall, worst: r.worstAccuracy,
      worstSlice: r.worstSlice, flopsRatio: r.flopsRatio, timeRatio: r.timeRatio, routed: r.routed,
    })),
    best: { ...t.best }, skipped: {}, blocked: {},
  };
}

/** Reads an image-shaped input ((H,W), (C,H,W) or (H,W,C)) into [0,1] pixels, min-max scaled. */
export function thumbnail(shape: number[], values: ArrayLike<number>): LabSampleView["image"] {
  let h: number, w: number, c: number, chw: boolean;
  if (shape.length === 2) [h, w, c, chw] = [shape[0], shape[1], 1, false];
  else if (shape.length === 3 && [1, 3, 4].includes(shape[0])) [c, h, w, chw] = [shape[0], shape[1], shape[2], true];
  else if (shape.length === 3) [h, w, c, chw] = [shape[0], shape[1], shape[2], false];
  else return undefined;
  const stride = chw ? 1 : c;
  c = Math.min(c, 3);
  if (h * w * c > MAX_THUMB_VALUES) return undefined;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]);
    hi = Math.max(hi, values[i]);
  }
  const span = hi > lo ? hi - lo : 1;
  const pixels: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        const v = chw ? values[k * h * w + y * w + x] : values[(y * w + x) * stride + k];
        pixels.push(Math.round(((v - lo) / span) * 1000) / 1000);
      }
    }
  }
  return { width: w, height: h, channels: c, pixels };
}

/** Runs one lab request against the run. Throws a ConnectError when the trainer refuses or fails. */
export async function runLab(client: RunClient, req: LabRequest,
  saveSlice?: (suggested: string, format: SliceFormatName, data: Uint8Array) => Promise<string | undefined>): Promise<LabResult> {
  const lab = client.lab;
  const res = client.resolutions;
  switch (req.op) {
    case "overview": {
      const out: LabOverview = {};
      out.step = await client.status().then((st) => Number(st.step), () => undefined);
      try {
        const [h, q] = await Promise.all([
          lab.histogram({ scope: LossScope.LATEST, bins: 40 }, { timeoutMs: SHORT_MS }),
          lab.quantiles({ scope: LossScope.LATEST }, { timeoutMs: SHORT_MS }),
        ]);
        out.histogram = { edges: [...h.edges], counts: h.counts.map(Number), total: Number(h.total), exact: h.exact };
        out.quantiles = { ranks: [...q.ranks], values: [...q.values], count: Number(q.count), min: q.min, max: q.max, exact: q.exact };
      } catch (err) {
        out.histogramError = labError(err);
      }
      try {
        const d = (await lab.listRegions({}, { timeoutMs: SHORT_MS })).discovery;
        if (d) {
          out.regions = d.regions.map(regionView);
          out.discovery = { k: d.k, samples: Number(d.samples), step: Number(d.step), overallMeanLoss: d.overallMeanLoss };
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.FailedPrecondition) throw err; // none discovered yet: no table
      }
      return { overview: out };
    }
    case "score": {
      const r = await lab.score({}, { timeoutMs: LONG_MS });
      return { score: { receipt: receipt(r.receipt), scores: r.scores.map(scoreView) } };
    }
    case "discover": {
      const d = (await lab.discoverRegions({ k: req.k ?? 0 }, { timeoutMs: LONG_MS })).discovery;
      return { regions: d ? d.regions.map(regionView) : [] };
    }
    case "region": {
      const r = (await lab.getRegion({ regionId: req.regionId! }, { timeoutMs: SHORT_MS })).region;
      if (!r?.summary) throw new ConnectError("the trainer sent no region", Code.Internal);
      return {
        region: {
          region: regionView(r.summary), accuracyIn: r.accuracyIn, accuracyOut: r.accuracyOut,
          classMix: Object.entries(r.classMix).map(([label, count]) => ({ label: Number(label), count: Number(count) }))
            .sort((a, b) => b.count - a.count),
          features: r.features.map((f) => ({ feature: f.feature, difference: f.difference })),
          trend: r.trend, examples: r.examples.map(Number), noiseFraction: r.noiseFraction,
        },
      };
    }
    case "sample": {
      const index = BigInt(req.index!);
      const t = await lab.sampleTrajectory({ index }, { timeoutMs: SHORT_MS });
      const view: LabSampleView = {
        index: req.index!, shape: [],
        series: t.series.map((s) => ({ split: SPLITS[s.split] ?? "train", steps: s.steps.map(Number), losses: [...s.losses] })),
      };
      try {
        const s = await lab.getSample({ index }, { timeoutMs: SHORT_MS });
        view.shape = [...s.shape];
        if (s.label !== undefined) view.label = Number(s.label);
        view.image = s.image ? thumbnail(view.shape, s.values) : undefined;
        if (!view.image) view.imageNote = `no thumbnail: the input's shape (${view.shape.join("×")}) is not an image`;
      } catch (err) {
        view.imageNote = `no thumbnail: ${labError(err)}`;
      }
      return { sample: view };
    }
    case "export": {
      const chunks: Uint8Array[] = [];
      let rows = 0;
      for await (const c of lab.exportSlice({ name: req.regionId!, format: FORMATS[req.format!] }, { timeoutMs: LONG_MS })) {
        if (chunks.length === 0) rows = Number(c.rows);
        chunks.push(c.data);
      }
      const data = Buffer.concat(chunks);
      const path = (await saveSlice?.(`${req.regionId}.${req.format}`, req.format!, data)) ?? "";
      return { exported: { name: req.regionId!, format: req.format!, rows, bytes: data.length, path } };
    }
    case "fork": {
      const r = await res.fork({ regionIds: [req.regionId!], budget: BigInt(req.budget!) }, { timeoutMs: LONG_MS });
      return { fork: { receipt: receipt(r.receipt), specialists: [...r.specialistIds] } };
    }
    case "compare": {
      const r = await res.compare({ extra: BigInt(req.extra ?? 0), resolutions: req.resolutions ?? [] }, { timeoutMs: LONG_MS });
      const c = r.comparison;
      const table = c?.validation ? tableView(c.validation, Number(c.step), Number(c.extra)) : undefined;
      if (table && c) {
        table.skipped = { ...c.skipped };
        table.blocked = { ...c.blocked };
      }
      return { comparison: { receipt: receipt(r.receipt), table } };
    }
    case "recommend": {
      const r = await res.recommend({}, { timeoutMs: SHORT_MS });
      return { recommendation: { resolution: r.resolution, reason: r.reason, split: r.split, worst: r.worstAccuracy, overall: r.overall,
        excluded: { ...r.excluded } } };
    }
    case "apply": {
      // The page asked the person to confirm before sending this.
      const r = await res.apply({ resolution: req.resolution!, confirm: true }, { timeoutMs: LONG_MS });
      return { applied: { receipt: receipt(r.receipt), kind: r.kind, stateHash: r.stateHash, replaced: r.replacedStateHash, record: r.record } };
    }
    case "lineage": {
      const r = await res.lineage({}, { timeoutMs: SHORT_MS });
      return {
        lineage: {
          nodes: r.nodes.map((n) => ({ id: n.id, kind: n.kind, step: Number(n.step), budget: Number(n.budget), spent: Number(n.spent),
            parents: [...n.parents] })),
          edges: r.edges.map((e) => ({ parent: e.parent, child: e.child })), training: [...r.training],
        },
      };
    }
  }
}
