// The Lab panel's requests and answers as plain data (JSON-safe, no Node or gRPC imports), shared by the
// host (core/lab.ts runs them) and the page (webview/lab.ts draws them); the host validates every request.
export const LAB_OPS = ["overview", "score", "discover", "region", "sample", "export", "fork", "compare", "recommend", "apply",
  "lineage"] as const;
export type LabOp = (typeof LAB_OPS)[number];
export const SLICE_FORMATS = ["parquet", "csv", "json"] as const;
export type SliceFormatName = (typeof SLICE_FORMATS)[number];

/** A page's request, validated: only the fields its op reads. */
export interface LabRequest {
  op: LabOp;
  k?: number;
  regionId?: string;
  index?: number;
  format?: SliceFormatName;
  budget?: number;
  extra?: number;
  resolutions?: string[];
  resolution?: string;
}

export interface LabReceiptView {
  status: "applied" | "accepted" | "rejected" | "error";
  step: number;
  commandId: number;
  detail: string;
}

export interface LabRegionView {
  id: string;
  size: number;
  meanLoss: number;
  lossRatio: number;
  accuracy: number;
  verdict: string;
  /** True when the lab flagged the region as likely label noise (do not upweight it). */
  noise: boolean;
  sentence: string;
}

export interface LabOverview {
  /** The run's step when the histogram was read (its status). */
  step?: number;
  histogram?: { edges: number[]; counts: number[]; total: number; exact: boolean };
  quantiles?: { ranks: number[]; values: number[]; count: number; min: number; max: number; exact: boolean };
  /** Why there is no histogram yet (e.g. no losses recorded). */
  histogramError?: string;
  regions?: LabRegionView[];
  discovery?: { k: number; samples: number; step: number; overallMeanLoss: number };
}

export interface LabRegionDetail {
  region: LabRegionView;
  accuracyIn: number;
  accuracyOut: number;
  classMix: { label: number; count: number }[];
  features: { feature: string; difference: number }[];
  trend: string;
  examples: number[];
  noiseFraction: number;
}

export interface LabSampleView {
  index: number;
  series: { split: string; steps: number[]; losses: number[] }[];
  label?: number;
  shape: number[];
  /** Grayscale or RGB pixels in [0, 1] when the input reads as an image; absent otherwise. */
  image?: { width: number; height: number; channels: number; pixels: number[] };
  /** Why no thumbnail (not image-shaped, or the read failed). */
  imageNote?: string;
}

export interface LabComparisonView {
  step: number;
  extra: number;
  split: string;
  columns: { name: string; kind: string; size: number }[];
  rows: { name: string; description: string; accuracy: number[]; overall: number; worst: number; worstSlice: string;
    flopsRatio: number; timeRatio: number; routed: boolean }[];
  /** Column name ("overall", a slice name, "worst", "flops") → the best resolution in it. */
  best: Record<string, string>;
  skipped: Record<string, string>;
  blocked: Record<string, string>;
}

export interface LabLineageView {
  nodes: { id: string; kind: string; step: number; budget: number; spent: number; parents: string[] }[];
  edges: { parent: string; child: string }[];
  training: string[];
}

/** What one op answers; the field named after the op is set. */
export interface LabResult {
  overview?: LabOverview;
  score?: { receipt: LabReceiptView; scores: { split: string; samples: number; accuracy: number; meanLoss: number; step: number;
    seconds: number; stateHash: string }[] };
  regions?: LabRegionView[];
  region?: LabRegionDetail;
  sample?: LabSampleView;
  exported?: { name: string; format: string; rows: number; bytes: number; path: string };
  fork?: { receipt: LabReceiptView; specialists: string[] };
  comparison?: { receipt: LabReceiptView; table?: LabComparisonView };
  recommendation?: { resolution: string; reason: string; split: string; worst: number; overall: number; excluded: Record<string, string> };
  applied?: { receipt: LabReceiptView; kind: string; stateHash: string; replaced: string; record: string };
  lineage?: LabLineageView;
}

const ID = /^[\w.@:+-]{1,200}$/;

/** Validates a page's lab request; undefined for anything malformed. */
export function parseLabRequest(m: Record<string, unknown>): LabRequest | undefined {
  if (typeof m.op !== "string" || !(LAB_OPS as readonly string[]).includes(m.op)) return undefined;
  const op = m.op as LabOp;
  const int = (v: unknown) => typeof v === "number" && Number.isInteger(v);
  const id = (v: unknown) => typeof v === "string" && ID.test(v);
  switch (op) {
    case "discover":
      return m.k === undefined || int(m.k) ? { op, k: m.k as number | undefined } : undefined;
    case "region":
      return id(m.regionId) ? { op, regionId: m.regionId as string } : undefined;
    case "sample":
      return int(m.index) ? { op, index: m.index as number } : undefined;
    case "export":
      if (!id(m.regionId) || !(SLICE_FORMATS as readonly unknown[]).includes(m.format)) return undefined;
      return { op, regionId: m.regionId as string, format: m.format as SliceFormatName };
    case "fork":
      // The budget goes to the trainer as typed (0 or negative included): it answers with why it refuses.
      return id(m.regionId) && int(m.budget) ? { op, regionId: m.regionId as string, budget: m.budget as number } : undefined;
    case "compare": {
      if (m.extra !== undefined && !int(m.extra)) return undefined;
      const list = m.resolutions ?? [];
      if (!Array.isArray(list) || list.length > 16 || !list.every(id)) return undefined;
      return { op, extra: m.extra as number | undefined, resolutions: list as string[] };
    }
    case "apply":
      return id(m.resolution) ? { op, resolution: m.resolution as string } : undefined;
    default:
      return { op };
  }
}

