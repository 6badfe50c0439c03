// The Lab panel: the trainer's per-sample loss histogram with quantile bands, scoring, error regions
// with their verdicts, a drill-down (region → examples → one sample's loss trajectory and thumbnail),
// slice export, and fork / compare / recommend / apply with the lineage graph. Every number comes
// from one lab request answered by the host (labDone); nothing here downloads every sample's loss.
import type { HistogramView, ReceiptView } from "../core/protocol.js";
import type { LabComparisonView, LabLineageView, LabOverview, LabReceiptView, LabRegionDetail, LabRegionView, LabRequest, LabResult,
  LabSampleView } from "../core/labview.js";
import { fmtNum } from "./charts.js";
import { drawHistogram } from "./histogram.js";
import type { Theme } from "./theme.js";

type Post = (message: { type: "lab"; id: number; request: LabRequest }) => void;

/** What the panel keeps in the webview's saved state, so a reload or tab switch shows it again (for the same run). */
export interface LabSnapshot {
  runId: string;
  region?: LabRegionDetail;
  sample?: LabSampleView;
  comparison?: LabComparisonView;
  recommendation?: { resolution: string; text: string };
  lineage?: LabLineageView;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
/** The run's lab commands (CommandApplied names) and the panel request that makes each. */
const LAB_COMMANDS: Record<string, LabRequest["op"]> = { "lab-score": "score", "lab-fork": "fork", "lab-compare": "compare", "lab-apply": "apply" };
const POLL_TICK_MS = 2_500;
/** Histogram and regions while the panel is on screen: regions found by another client come with no event. */
const OVERVIEW_POLL_MS = 10_000;
/** The lineage while a background fork trains (its end comes with no event). */
const LINEAGE_POLL_MS = 5_000;
const pct = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)} %` : "n/a");

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text = "", cls = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

export class LabPanel {
  private nextId = 1;
  private readonly pending = new Map<number, LabRequest>();
  private readonly quiet = new Set<number>();
  private overview: LabOverview | undefined;
  private regions: LabRegionView[] = [];
  private region: LabRegionDetail | undefined;
  private sample: LabSampleView | undefined;
  private lineage: LabLineageView | undefined;
  private recommended = "";
  private recommendation: LabSnapshot["recommendation"];
  private comparison: LabComparisonView | undefined;

  /** Lab commands the run applied that the panel has taken in (from the stream's command events). */
  private readonly seenCommands = new Set<number>();
  /** What to re-read because the lab changed (coalesced for a moment, then sent quietly). */
  private readonly due = new Set<"overview" | "lineage">();
  private dueTimer: ReturnType<typeof setTimeout> | undefined;
  private lastOverviewAt = 0;
  private lastLineageAt = 0;
  private onScreen = true;

  constructor(private readonly post: Post, private theme: () => Theme, private runId: string, restored: LabSnapshot | undefined,
    private readonly changed: () => void, receipts: ReceiptView[] = []) {
    for (const r of receipts) if (r.commandId > 0) this.seenCommands.add(r.commandId);
    // Changes that come without an event (regions found by another client, a background fork that
    // finished): a bounded poll, only while the panel is on screen and the page visible, one request at a time.
    new IntersectionObserver((entries) => (this.onScreen = entries.some((e) => e.isIntersecting))).observe($("lab-panel"));
    setInterval(() => this.poll(), POLL_TICK_MS);
    $("lab-refresh").addEventListener("click", () => this.send({ op: "overview" }));
    $("lab-score").addEventListener("click", () => this.send({ op: "score" }));
    $("lab-discover").addEventListener("click", () => {
      const k = Number($<HTMLInputElement>("lab-k").value);
      this.send({ op: "discover", ...(Number.isInteger(k) && k > 0 ? { k } : {}) });
    });
    $("lab-export").addEventListener("click", () => {
      if (!this.region) return;
      const format = $<HTMLSelectElement>("lab-format").value as "parquet" | "csv" | "json";
      this.send({ op: "export", regionId: this.region.region.id, format });
    });
    $("lab-fork").addEventListener("click", () => {
      if (!this.region) return;
      const budget = Number($<HTMLInputElement>("lab-budget").value);
      if (!Number.isInteger(budget)) return this.say("The budget is a whole number of sample-gradients.", true);
      this.send({ op: "fork", regionId: this.region.region.id, budget });
    });
    $("lab-compare").addEventListener("click", () => {
      const extra = Number($<HTMLInputElement>("lab-extra").value || "0");
      if (!Number.isInteger(extra) || extra < 0) return this.say("Extra compute is a whole number of sample-gradients (0: the lab's default).", true);
      const resolutions = $<HTMLInputElement>("lab-resolutions").value.split(/[\s,]+/).filter(Boolean);
      this.send({ op: "compare", extra, resolutions });
    });
    $("lab-recommend").addEventListener("click", () => this.send({ op: "recommend" }));
    $("lab-apply").addEventListener("click", () => {
      $("lab-apply-name").textContent = this.recommended;
      $("lab-apply-confirm").hidden = false;
    });
    $("lab-apply-no").addEventListener("click", () => ($("lab-apply-confirm").hidden = true));
    $("lab-apply-yes").addEventListener("click", () => {
      $("lab-apply-confirm").hidden = true;
      if (this.recommended) this.send({ op: "apply", resolution: this.recommended });
    });
    $("lab-lineage-refresh").addEventListener("click", () => this.send({ op: "lineage" }));
    if (restored && restored.runId === runId) {
      this.region = restored.region;
      this.sample = restored.sample;
      this.lineage = restored.lineage;
      this.renderRegion();
      this.renderSample();
      this.renderLineage();
      if (restored.comparison) this.renderComparison(restored.comparison);
      if (restored.recommendation) this.showRecommendation(restored.recommendation.resolution, restored.recommendation.text);
    }
    this.send({ op: "overview" });
  }

  /**
   * The run's command receipts (every client's: this page, the CLI, a script), as the stream reports
   * them. A lab command newly applied (a scoring pass, a fork, a comparison, a resolution applied)
   * makes the panel re-read what it changed, unless this panel's own request for it is still out
   * (its answer refreshes that part already).
   */
  onReceipts(receipts: ReceiptView[]): void {
    for (const r of receipts) {
      if (r.commandId <= 0 || this.seenCommands.has(r.commandId)) continue;
      if (r.status !== "applied" && r.status !== "rejected") continue; // wait for the outcome
      this.seenCommands.add(r.commandId);
      const op = LAB_COMMANDS[r.command];
      if (!op || r.status !== "applied") continue;
      if ([...this.pending.values()].some((p) => p.op === op)) continue;
      for (const part of op === "score" ? (["overview"] as const) : (["lineage"] as const)) this.due.add(part);
      $("lab-panel").dataset.autoRefresh = `${r.command} applied at step ${r.step} (command ${r.commandId})`;
    }
    if (this.due.size && !this.dueTimer) {
      this.dueTimer = setTimeout(() => {
        this.dueTimer = undefined;
        for (const op of this.due) if (![...this.pending.values()].some((p) => p.op === op)) this.send({ op }, true);
        this.due.clear();
      }, 150);
    }
  }

  private poll(): void {
    if (!this.onScreen || document.visibilityState !== "visible" || this.pending.size) return;
    const now = Date.now();
    // A background fork is training: its end shows in the lineage, which no event announces.
    if (this.lineage?.training.length && now - this.lastLineageAt >= LINEAGE_POLL_MS) this.send({ op: "lineage" }, true);
    else if (now - this.lastOverviewAt >= OVERVIEW_POLL_MS) this.send({ op: "overview" }, true);
  }

  /** The page now shows another run (attached elsewhere): what the panel held was about the old one. */
  runChanged(runId: string): void {
    if (runId === this.runId) return;
    this.runId = runId;
    this.seenCommands.clear(); // command ids count from 1 in every run
    this.overview = this.region = this.sample = this.lineage = this.comparison = this.recommendation = undefined;
    this.regions = [];
    this.recommended = "";
    $("lab-compare-table").replaceChildren();
    $("lab-compare-notes").textContent = "";
    $("lab-receipts").replaceChildren();
    this.showRecommendation("", "");
    this.renderHistogram();
    this.renderRegions();
    this.renderRegion();
    this.renderSample();
    this.renderLineage();
    this.changed();
    this.send({ op: "overview" });
  }

  snapshot(): LabSnapshot {
    return { runId: this.runId, region: this.region, sample: this.sample, comparison: this.comparison, recommendation: this.recommendation,
      lineage: this.lineage };
  }

  private showRecommendation(resolution: string, text: string): void {
    this.recommended = resolution;
    this.recommendation = resolution ? { resolution, text } : undefined;
    $("lab-recommendation").textContent = text;
    $("lab-apply").hidden = !resolution;
    $("lab-apply").textContent = `Apply ${resolution}…`;
    $("lab-apply-confirm").hidden = true;
  }

  /** `quiet`: a refresh the person did not ask for; it leaves the status line as it was. */
  private send(request: LabRequest, quiet = false): void {
    const id = this.nextId++;
    this.pending.set(id, request);
    if (quiet) this.quiet.add(id);
    if (request.op === "overview") this.lastOverviewAt = Date.now();
    if (request.op === "lineage") this.lastLineageAt = Date.now();
    this.busy();
    if (!quiet) this.say(`${request.op}…`);
    this.post({ type: "lab", id, request });
  }

  private busy(): void {
    $("lab-panel").setAttribute("aria-busy", String(this.pending.size > 0));
  }

  private say(text: string, error = false): void {
    const s = $("lab-status");
    s.textContent = text;
    s.classList.toggle("error", error);
    s.dataset.error = String(error);
  }

  /** The host's answer to one of our requests. */
  done(id: number, op: LabRequest["op"], result: LabResult | undefined, error: string | undefined, cancelled?: boolean): void {
    const req = this.pending.get(id);
    const quiet = this.quiet.delete(id);
    this.pending.delete(id);
    this.busy();
    if (quiet) {
      // A refresh nobody asked for: take what it brings; a failure (the run ended, say) is not news.
      if (result?.overview) {
        this.overview = result.overview;
        this.regions = result.overview.regions ?? this.regions;
        this.renderHistogram();
        this.renderRegions();
      }
      if (result?.lineage) {
        this.lineage = result.lineage;
        this.renderLineage();
      }
      $("lab-panel").dataset.refreshes = String(Number($("lab-panel").dataset.refreshes ?? 0) + 1);
      return this.changed();
    }
    if (error) return this.say(`${op}: ${error}`, true);
    if (cancelled) return this.say("Export cancelled.");
    if (!result || !req) return;
    if (result.overview) {
      this.overview = result.overview;
      if (result.overview.regions) this.regions = result.overview.regions;
      this.renderHistogram();
      this.renderRegions();
      this.say(result.overview.histogramError ? `No loss histogram yet: ${result.overview.histogramError}` : "Up to date.");
    }
    if (result.score) {
      const r = result.score;
      const text = r.receipt.status === "applied"
        ? `score: applied at step ${r.receipt.step}: ` + r.scores.map((s) =>
          `${s.split} ${s.samples} samples, accuracy ${pct(s.accuracy)}, mean loss ${fmtNum(s.meanLoss)} (${s.seconds.toFixed(2)} s)`).join("; ")
        : `score: ${r.receipt.status}${r.receipt.detail ? `: ${r.receipt.detail}` : ""}`;
      this.receipt("score", text, r.receipt);
      this.say(text, r.receipt.status !== "applied");
      this.send({ op: "overview" });
    }
    if (result.regions) {
      this.regions = result.regions;
      this.renderRegions();
      this.say(`${result.regions.length} region(s) found.`);
    }
    if (result.region) {
      this.region = result.region;
      this.renderRegion();
      this.say(`Region ${result.region.region.id}.`);
    }
    if (result.sample) {
      this.sample = result.sample;
      this.renderSample();
      this.say(`Sample ${result.sample.index}.`);
    }
    if (result.exported) {
      const e = result.exported;
      const text = `export: ${e.rows} samples of ${e.name} as ${e.format} (${e.bytes} bytes) to ${e.path}`;
      this.receipt("export", text, { status: "applied", step: 0, commandId: 0, detail: "" });
      this.say(text);
    }
    if (result.fork) {
      const f = result.fork;
      const text = f.receipt.status === "applied"
        ? `fork: applied at step ${f.receipt.step}: ${f.specialists.join(", ")}`
        : `fork: ${f.receipt.status}${f.receipt.detail ? `: ${f.receipt.detail}` : ""}`;
      this.receipt("fork", text, f.receipt);
      this.say(text, f.receipt.status === "rejected" || f.receipt.status === "error");
      this.send({ op: "lineage" });
    }
    if (result.comparison) {
      const c = result.comparison;
      if (c.table) this.renderComparison(c.table);
      const text = `compare: ${c.receipt.status}${c.receipt.status === "applied" ? ` at step ${c.receipt.step}` : ""}` +
        `${c.receipt.detail ? `: ${c.receipt.detail}` : ""}`;
      this.receipt("compare", text, c.receipt);
      this.say(text, c.receipt.status === "rejected" || c.receipt.status === "error");
      this.send({ op: "lineage" });
    }
    if (result.recommendation) {
      const r = result.recommendation;
      this.showRecommendation(r.resolution, `Recommended: ${r.resolution} — ${r.reason}`);
      this.say(`Recommended ${r.resolution}.`);
    }
    if (result.applied) {
      const a = result.applied;
      const text = a.receipt.status === "applied"
        ? `apply ${req.resolution}: applied at step ${a.receipt.step} (${a.kind}${a.record ? `, record ${a.record}` : ""})`
        : `apply ${req.resolution}: ${a.receipt.status}${a.receipt.detail ? `: ${a.receipt.detail}` : ""}`;
      this.receipt("apply", text, a.receipt);
      this.say(text, a.receipt.status !== "applied");
      this.send({ op: "lineage" });
    }
    if (result.lineage) {
      this.lineage = result.lineage;
      this.renderLineage();
    }
    this.changed();
  }

  setTheme(): void {
    this.renderHistogram();
    this.renderSample();
    this.renderLineage();
  }

  private receipt(kind: string, text: string, r: LabReceiptView): void {
    const li = el("li", text, r.status);
    li.dataset.kind = kind;
    li.dataset.status = r.status;
    $("lab-receipts").prepend(li);
  }

  private renderHistogram(): void {
    const o = this.overview;
    const canvas = $<HTMLCanvasElement>("lab-hist");
    if (!o?.histogram || !o.quantiles || o.histogram.total === 0) {
      drawHistogram(canvas, undefined, this.theme());
      $("lab-hist-caption").textContent = "";
      return;
    }
    const h = o.histogram;
    const q = o.quantiles;
    const at = (rank: number) => q.values[q.ranks.findIndex((r) => Math.abs(r - rank) < 1e-9)] ?? NaN;
    // The mean from the bins' centres: the trainer sends bins and quantiles, not every loss.
    let sum = 0;
    h.counts.forEach((c, i) => (sum += c * (h.edges[i] + h.edges[i + 1]) / 2));
    const view: HistogramView = {
      split: "train, latest loss", step: o.step ?? 0, n: h.total, lo: h.edges[0], hi: h.edges[h.edges.length - 1], counts: h.counts,
      mean: sum / Math.max(1, h.total), quantiles: { p05: at(0.05), p25: at(0.25), p50: at(0.5), p75: at(0.75), p95: at(0.95) }, top: [],
    };
    drawHistogram(canvas, view, this.theme());
    canvas.dataset.total = String(h.total);
    $("lab-hist-caption").textContent = `${h.total} samples · median ${fmtNum(view.quantiles.p50)} · 25–75 % ` +
      `${fmtNum(view.quantiles.p25)}–${fmtNum(view.quantiles.p75)} · 5–95 % ${fmtNum(view.quantiles.p05)}–${fmtNum(view.quantiles.p95)}` +
      ` · min ${fmtNum(q.min)} · max ${fmtNum(q.max)}${q.exact ? "" : " (sketch)"}`;
  }

  private renderRegions(): void {
    const body = $("lab-regions").querySelector("tbody")!;
    body.replaceChildren(...this.regions.map((r) => {
      const tr = el("tr");
      tr.dataset.region = r.id;
      if (r.noise) tr.classList.add("noise");
      const verdict = el("td", r.noise ? "⚠ likely label noise — do not upweight" : r.verdict, r.noise ? "verdict noise" : "verdict");
      const open = el("button", r.id, "link");
      open.title = `Show region ${r.id}`;
      open.addEventListener("click", () => this.send({ op: "region", regionId: r.id }));
      const first = el("td");
      first.append(open);
      tr.append(first, el("td", String(r.size), "num"), el("td", fmtNum(r.meanLoss), "num"), el("td", `${r.lossRatio.toFixed(2)}×`, "num"),
        el("td", pct(r.accuracy), "num"), verdict, el("td", r.sentence, "sentence"));
      return tr;
    }));
    $("lab-regions-empty").hidden = this.regions.length > 0;
  }

  private renderRegion(): void {
    const d = this.region;
    $("lab-region").hidden = !d;
    if (!d) return;
    const r = d.region;
    $("lab-region-title").textContent = `Region ${r.id}`;
    const verdict = $("lab-region-verdict");
    verdict.textContent = r.noise ? "Likely label noise — do not upweight." : `Verdict: ${r.verdict}.`;
    verdict.classList.toggle("noise", r.noise);
    $("lab-region-text").textContent = r.sentence;
    const kv = $("lab-region-kv");
    const rows: [string, string][] = [
      ["size", String(r.size)], ["mean loss", `${fmtNum(r.meanLoss)} (${r.lossRatio.toFixed(2)}× overall)`],
      ["accuracy in / out", `${pct(d.accuracyIn)} / ${pct(d.accuracyOut)}`], ["trend", d.trend],
      ["classes", d.classMix.map((c) => `${c.label}: ${c.count}`).join(", ")],
      ["features", d.features.slice(0, 5).map((f) => `${f.feature} ${f.difference >= 0 ? "+" : ""}${f.difference.toFixed(2)} sd`).join(", ") || "—"],
      ["label noise", Number.isFinite(d.noiseFraction) ? pct(d.noiseFraction) : "unchecked"],
    ];
    kv.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
    $("lab-examples").replaceChildren(...d.examples.map((i) => {
      const b = el("button", String(i), "link sample");
      b.dataset.index = String(i);
      b.title = `Show sample ${i}'s loss trajectory`;
      b.addEventListener("click", () => this.send({ op: "sample", index: i }));
      return b;
    }));
  }

  private renderSample(): void {
    const s = this.sample;
    $("lab-sample").hidden = !s;
    if (!s) return;
    $("lab-sample-title").textContent = `Sample ${s.index}${s.label !== undefined ? ` · label ${s.label}` : ""}`;
    const canvas = $<HTMLCanvasElement>("lab-traj");
    const t = this.theme();
    const w = 360, h = 140, dpr = window.devicePixelRatio || 1;
    canvas.width = w * dpr;
    canvas.height = h * dpr;
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = t.font;
    const series = s.series.filter((x) => x.steps.length);
    const points = series.reduce((n, x) => n + x.steps.length, 0);
    canvas.dataset.points = String(points);
    if (!points) {
      ctx.fillStyle = t.axis;
      ctx.fillText("No losses recorded for this sample yet", 8, 20);
    } else {
      const xs = series.flatMap((x) => x.steps), ys = series.flatMap((x) => x.losses);
      const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = 0, y1 = Math.max(...ys) * 1.05 || 1;
      const L = 40, R = w - 8, T = 16, B = h - 18;
      const px = (v: number) => L + ((v - x0) / (x1 - x0)) * (R - L), py = (v: number) => B - ((v - y0) / (y1 - y0)) * (B - T);
      ctx.strokeStyle = t.grid;
      ctx.strokeRect(L, T, R - L, B - T);
      ctx.fillStyle = t.axis;
      ctx.fillText(fmtNum(y1), 2, T + 4);
      ctx.fillText("0", 2, B);
      ctx.fillText(`step ${x0}`, L, h - 4);
      ctx.textAlign = "right";
      ctx.fillText(`step ${x1}`, R, h - 4);
      ctx.textAlign = "left";
      const colors: Record<string, string> = { train: t.colors.blue, val: t.colors.orange, test: t.colors.green };
      series.forEach((x, n) => {
        ctx.strokeStyle = ctx.fillStyle = colors[x.split] ?? t.colors.purple;
        ctx.beginPath();
        x.steps.forEach((st, i) => (i ? ctx.lineTo(px(st), py(x.losses[i])) : ctx.moveTo(px(st), py(x.losses[i]))));
        ctx.stroke();
        if (x.steps.length < 60) x.steps.forEach((st, i) => ctx.fillRect(px(st) - 1.5, py(x.losses[i]) - 1.5, 3, 3));
        ctx.fillText(x.split, L + 4 + 40 * n, T - 4);
      });
    }
    canvas.setAttribute("aria-label", `Loss trajectory of sample ${s.index}: ` +
      s.series.map((x) => `${x.split} ${x.steps.length} losses`).join(", "));
    const thumb = $<HTMLCanvasElement>("lab-thumb");
    thumb.hidden = !s.image;
    $("lab-thumb-note").textContent = s.image ? `input ${s.shape.join("×")}` : s.imageNote ?? "";
    if (s.image) {
      const { width, height, channels, pixels } = s.image;
      thumb.width = width;
      thumb.height = height;
      const scale = Math.max(1, Math.floor(96 / Math.max(width, height)));
      thumb.style.width = `${width * scale}px`;
      thumb.style.height = `${height * scale}px`;
      const tctx = thumb.getContext("2d")!;
      const img = tctx.createImageData(width, height);
      for (let i = 0; i < width * height; i++) {
        for (let k = 0; k < 3; k++) img.data[4 * i + k] = Math.round(255 * pixels[i * channels + (channels === 1 ? 0 : k)]);
        img.data[4 * i + 3] = 255;
      }
      tctx.putImageData(img, 0, 0);
    }
  }

  private renderComparison(c: LabComparisonView): void {
    this.comparison = c;
    const table = $("lab-compare-table");
    const head = el("tr");
    const cols = [...c.columns.map((x) => x.name), "worst", "flops", "time"];
    head.append(el("th", "resolution"), ...c.columns.map((x) => {
      const th = el("th", x.name);
      th.title = `${x.kind}, ${x.size} samples`;
      return th;
    }), el("th", "worst slice"), el("th", "FLOPs ×"), el("th", "time ×"));
    const rows = c.rows.map((r) => {
      const tr = el("tr");
      tr.dataset.resolution = r.name;
      const name = el("td", r.name);
      name.title = r.description;
      const cells = [...r.accuracy.map(pct), `${pct(r.worst)} (${r.worstSlice})`, r.flopsRatio.toFixed(2), r.timeRatio.toFixed(2)];
      tr.append(name, ...cells.map((v, i) => {
        const td = el("td", v, "num");
        const col = cols[i];
        // The trainer names the best resolution per column; "time" is measured here from the rows (lowest wins).
        const best = col === "time" ? c.rows.reduce((a, b) => (b.timeRatio < a.timeRatio ? b : a)).name : c.best[col];
        if (best === r.name) {
          td.classList.add("best");
          td.title = `best ${col}`;
        }
        return td;
      }));
      return tr;
    });
    table.replaceChildren(el("caption", `Validation accuracy per slice at step ${c.step}, each resolution at ${c.extra} extra sample-gradients; ` +
      "inference cost relative to the generalist. Best per column in bold."), head, ...rows);
    const notes = [...Object.entries(c.skipped).map(([k, v]) => `${k} skipped: ${v}`), ...Object.entries(c.blocked).map(([k, v]) => `${k} blocked: ${v}`)];
    $("lab-compare-notes").textContent = notes.join(" · ");
  }

  private renderLineage(): void {
    const g = this.lineage;
    const svg = $("lab-lineage") as unknown as SVGSVGElement;
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    if (!g || !g.nodes.length) {
      svg.setAttribute("height", "0");
      $("lab-lineage-note").textContent = g ? "No models made by the lab yet." : "";
      return;
    }
    // Layers by depth (parents first), boxes left to right within a layer.
    const depth = new Map<string, number>();
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const depthOf = (id: string, seen = new Set<string>()): number => {
      if (depth.has(id)) return depth.get(id)!;
      if (seen.has(id)) return 0;
      seen.add(id);
      const parents = byId.get(id)?.parents.filter((p) => byId.has(p)) ?? [];
      const d = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, seen))) : 0;
      depth.set(id, d);
      return d;
    };
    g.nodes.forEach((n) => depthOf(n.id));
    const layers: string[][] = [];
    g.nodes.forEach((n) => (layers[depth.get(n.id)!] ??= []).push(n.id));
    const BW = 170, BH = 36, GX = 16, GY = 40;
    const pos = new Map<string, { x: number; y: number }>();
    layers.forEach((ids, d) => ids.forEach((id, i) => pos.set(id, { x: 8 + i * (BW + GX), y: 8 + d * (BH + GY) })));
    const width = 16 + Math.max(...layers.map((l) => l.length)) * (BW + GX);
    const height = 16 + layers.length * (BH + GY) - GY;
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const t = this.theme();
    for (const e of g.edges) {
      const a = pos.get(e.parent), b = pos.get(e.child);
      if (!a || !b) continue;
      const line = document.createElementNS(NS, "line");
      line.setAttribute("x1", String(a.x + BW / 2));
      line.setAttribute("y1", String(a.y + BH));
      line.setAttribute("x2", String(b.x + BW / 2));
      line.setAttribute("y2", String(b.y));
      line.setAttribute("stroke", t.axis);
      line.setAttribute("class", "edge");
      svg.append(line);
    }
    const fill: Record<string, string> = { generalist: t.colors.blue, specialist: t.colors.orange, resolution: t.colors.purple, applied: t.colors.green };
    for (const n of g.nodes) {
      const p = pos.get(n.id)!;
      const grp = document.createElementNS(NS, "g");
      grp.setAttribute("class", "node");
      grp.setAttribute("data-id", n.id);
      grp.setAttribute("data-kind", n.kind);
      const rect = document.createElementNS(NS, "rect");
      Object.entries({ x: p.x, y: p.y, width: BW, height: BH, rx: 4, fill: fill[n.kind] ?? t.axis, "fill-opacity": 0.25, stroke: fill[n.kind] ?? t.axis })
        .forEach(([k, v]) => rect.setAttribute(k, String(v)));
      const title = document.createElementNS(NS, "title");
      title.textContent = `${n.kind} ${n.id} at step ${n.step}${n.budget ? `, budget ${n.budget}, spent ${n.spent}` : ""}`;
      const label = document.createElementNS(NS, "text");
      label.setAttribute("x", String(p.x + 6));
      label.setAttribute("y", String(p.y + 15));
      label.setAttribute("fill", t.foreground);
      label.textContent = n.id.length > 26 ? `${n.id.slice(0, 25)}…` : n.id;
      const sub = document.createElementNS(NS, "text");
      sub.setAttribute("x", String(p.x + 6));
      sub.setAttribute("y", String(p.y + 30));
      sub.setAttribute("fill", t.axis);
      sub.textContent = `${n.kind} · step ${n.step}`;
      grp.append(title, rect, label, sub);
      svg.append(grp);
    }
    $("lab-lineage-note").textContent = g.training.join(" · ");
  }
}
