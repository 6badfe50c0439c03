// The dashboard page. It restores its model from the webview state first (so a reload or a tab
// switch shows the charts at once), then tells the host what it holds and folds in the host's deltas.
import "uplot/dist/uPlot.min.css";
import "./dashboard.css";
import type { CheckpointView, Delta, HealthCheckName, HealthView, HostToView, ReceiptView, ViewCommand, ViewToHost } from "../core/protocol.js";
import { ChartBoard, fmtNum } from "./charts.js";
import { drawHistogram } from "./histogram.js";
import { LabPanel, type LabSnapshot } from "./lab.js";
import { applyDelta, defaultPrefs, emptyModel, filterLogs, savable, type Changes, type Prefs, type ViewModel } from "./model.js";
import { readTheme } from "./theme.js";
import { bytes } from "../core/format.js";

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

interface Saved {
  v: 1;
  model: ViewModel;
  prefs: Prefs;
  /** The Lab panel's drill-down, comparison and lineage (absent in states saved by older pages). */
  lab?: LabSnapshot;
}

const vscode = acquireVsCodeApi();
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const saved = vscode.getState() as Saved | undefined;
// A state saved by an older page lacks newer fields: start from an empty model and lay the saved one over it.
const model: ViewModel = saved?.v === 1 ? { ...emptyModel(), ...saved.model } : emptyModel();
model.health = { ...model.health, running: false }; // the host says whether checks are running now
const prefs: Prefs = { ...defaultPrefs(), ...(saved?.v === 1 ? saved.prefs : {}) };
const restoredPoints = Object.values(model.series).reduce((n, s) => n + s.x.length, 0);
document.body.dataset.restoredPoints = String(restoredPoints);

let theme = readTheme();
const board = new ChartBoard($("charts"), $("runtime-charts"), theme, () => model, () => prefs, (name, dataUrl) => {
  post({ type: "exportPng", name, dataUrl });
});

board.onZoom = (request) => post({ type: "zoom", ...request });

function post(message: ViewToHost): void {
  vscode.postMessage(message);
}

// -- rendering -------------------------------------------------------------------------------------

let pending: Changes | null = null;
let frameRequested = false;

function merge(a: Changes | null, b: Changes): Changes {
  if (!a) return b;
  return {
    reset: a.reset || b.reset, series: new Set([...a.series, ...b.series]), logs: a.logs || b.logs,
    histograms: a.histograms || b.histograms, runtime: a.runtime || b.runtime, status: a.status || b.status,
    receipts: a.receipts || b.receipts, notes: a.notes || b.notes, connection: a.connection || b.connection, run: a.run || b.run,
    health: a.health || b.health,
  };
}

function all(): Changes {
  return { reset: true, series: new Set(Object.keys(model.series)), logs: true, histograms: true, runtime: true,
    status: true, receipts: true, notes: true, connection: true, run: true, health: true };
}

function schedule(c: Changes): void {
  pending = merge(pending, c);
  if (frameRequested) return;
  frameRequested = true;
  // requestAnimationFrame does not run in a hidden page; a timeout keeps state current there too.
  const run = () => {
    if (!frameRequested) return;
    frameRequested = false;
    const c2 = pending!;
    pending = null;
    render(c2);
  };
  requestAnimationFrame(run);
  setTimeout(run, 250);
}

function render(c: Changes): void {
  if (c.reset) board.rebuild();
  else if (c.series.size) board.update(c.series);
  if (c.run || c.status || c.connection) renderHeader();
  if (c.run && model.run) lab.runChanged(model.run.runId);
  if (c.status || c.connection || c.health) renderControls();
  if (c.health) renderHealth();
  if (c.notes || c.connection) renderNotes();
  if (c.receipts) {
    renderReceipts();
    lab.onReceipts(model.receipts);
  }
  if (c.runtime || c.status) renderRuntime();
  if (c.histograms) renderHistogram();
  if (c.logs) renderLogs();
  document.body.dataset.lastSeq = String(model.lastSeq);
  saveSoon();
}

function renderHeader(): void {
  const s = model.status;
  $("run-label").textContent = model.run?.label ?? "OnTheFly";
  const conn = model.connection.state;
  const state = conn === "live" || conn === "ended" || !s ? s?.state ?? conn : conn === "connecting" ? s.state : conn;
  const badge = $("state");
  badge.textContent = state;
  badge.dataset.state = state;
  document.body.dataset.state = s?.state ?? "";
  const parts: string[] = [];
  if (s) {
    parts.push(`step ${s.step}${s.totalSteps ? ` / ${s.totalSteps}` : ""}`);
    parts.push(`epoch ${s.epoch}${s.maxEpochs ? ` / ${s.maxEpochs}` : ""}`);
    if (s.lastLoss !== null) parts.push(`loss ${fmtNum(s.lastLoss)}`);
    const lr = s.hyperparameters[0]?.values.lr;
    if (lr !== undefined) parts.push(`lr ${fmtNum(lr)}`);
  }
  $("progress-text").textContent = parts.join(" · ");
  const frac = s && s.totalSteps ? Math.min(1, s.step / s.totalSteps) : 0;
  $("progress-bar").style.width = `${(frac * 100).toFixed(1)}%`;
  $("connection").textContent = model.connection.detail ||
    (model.run ? `${model.run.address}${conn === "ended" ? " · run ended" : ""}` : "");
  $("btn-attach").hidden = conn !== "detached" && conn !== "ended" && conn !== "failed";
  const lrInput = $<HTMLInputElement>("lr-input");
  if (document.activeElement !== lrInput && lrInput.value === "" && s?.hyperparameters[0]?.values.lr !== undefined) {
    lrInput.placeholder = String(s.hyperparameters[0].values.lr);
  }
}

const inFlight = new Set<ViewCommand>();
/** True from this page's "Run health checks" until its report comes back. */
let healthInFlight = false;

function renderControls(): void {
  const state = model.status?.state ?? "unknown";
  const conn = model.connection.state;
  const live = conn === "live" || conn === "connecting";
  // "testing" counts as running: a validation pass comes every epoch and lasts a moment, commands sent
  // meanwhile queue for the next step boundary, and buttons that flickered off would swallow clicks.
  const running = state === "running" || state === "testing";
  const can: Record<ViewCommand, boolean> = {
    pause: live && (running || state === "starting"),
    // Resume also ends a "run N steps" early: the run goes on instead of pausing when the N are done.
    resume: live && (state === "paused" || (running && (model.status?.pendingSteps ?? 0) > 0)),
    step: live && (state === "paused" || running),
    runTest: live && (state === "paused" || running),
    setLr: live && (state === "paused" || running || state === "starting"),
    stop: live && state !== "finished" && state !== "failed",
    checkpoint: live && (state === "paused" || running),
    exportSession: live && (state === "paused" || running),
    importSession: live && (state === "paused" || running),
    restoreCheckpoint: live && (state === "paused" || running) && $<HTMLSelectElement>("ckpt-select").value !== "",
  };
  $<HTMLButtonElement>("btn-restore").disabled = !(live && (state === "paused" || running)) || inFlight.has("restoreCheckpoint");
  for (const b of document.querySelectorAll<HTMLButtonElement>("#controls button[data-command]")) {
    const cmd = b.dataset.command as ViewCommand;
    b.disabled = !can[cmd] || inFlight.has(cmd);
    b.setAttribute("aria-busy", String(inFlight.has(cmd)));
  }
  const busy = healthInFlight || model.health.running;
  const hb = $<HTMLButtonElement>("btn-health");
  hb.disabled = !(live && (state === "paused" || running)) || busy;
  hb.setAttribute("aria-busy", String(busy));
  $("health-panel").setAttribute("aria-busy", String(busy));
}

const SEVERITY_RANK: Record<string, number> = { error: 0, warning: 1, info: 2 };

function renderHealth(): void {
  const h = model.health;
  const r = h.report;
  const summary = $("health-summary");
  summary.classList.toggle("error", !!r && r.status !== "applied");
  summary.classList.toggle("muted", !r || r.status === "applied");
  if (h.running) {
    summary.textContent = r ? `Running the health checks… (last: ${r.text})` : "Running the health checks…";
  } else if (r) {
    const asked = r.checks.length ? ` [${r.checks.join(", ")}]` : "";
    summary.textContent = `${r.text}${asked} · ${new Date(r.at).toLocaleTimeString()}`;
  }
  document.body.dataset.healthAt = r ? String(r.at) : "";
  const list = $("health-findings");
  const findings = (r?.findings ?? [])
    .map((f, i) => ({ f, i }))
    .sort((a, b) => (SEVERITY_RANK[a.f.severity] ?? 3) - (SEVERITY_RANK[b.f.severity] ?? 3) || a.i - b.i)
    .map(({ f }) => f);
  const shown = findings.filter((f) => prefs.healthInfo || f.severity !== "info");
  list.replaceChildren(...shown.map((f) => {
    const li = document.createElement("li");
    li.className = "finding";
    li.dataset.severity = f.severity;
    li.dataset.check = f.check;
    const sev = document.createElement("span");
    sev.className = "sev";
    sev.textContent = f.severity;
    const check = document.createElement("span");
    check.className = "check";
    check.textContent = f.check;
    const msg = document.createElement("span");
    msg.className = "message";
    if (f.subject) {
      const subj = document.createElement("code");
      subj.className = "subject";
      subj.textContent = f.subject;
      msg.append(subj, ": ");
    }
    msg.append(f.message);
    li.append(sev, check, msg);
    const keys = Object.keys(f.evidence).sort();
    if (keys.length) {
      const dl = document.createElement("dl");
      dl.className = "evidence";
      dl.setAttribute("aria-label", "evidence");
      dl.append(...keys.map((k) => {
        const row = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = k;
        const dd = document.createElement("dd");
        dd.textContent = fmtNum(f.evidence[k]);
        row.append(dt, dd);
        return row;
      }));
      li.append(dl);
    }
    return li;
  }));
  if (r && r.status === "applied" && shown.length < findings.length) {
    const li = document.createElement("li");
    li.className = "muted small";
    li.textContent = `${findings.length - shown.length} note(s) hidden; tick "notes" to list them.`;
    list.append(li);
  }
}

function renderNotes(): void {
  const el = $("notes");
  el.replaceChildren();
  const add = (text: string, kind: string) => {
    const p = document.createElement("p");
    p.className = `note ${kind}`;
    p.textContent = text;
    el.append(p);
  };
  const n = model.notes;
  if (n.droppedAtSource > 0) {
    add(`${n.droppedAtSource.toLocaleString()} events were dropped at the source (the trainer's event bus was full); ` +
      "charts skip those points.", "warning");
  }
  for (const g of n.gaps.slice(-3)) {
    add(`Events ${g.first}–${g.last} could not be recovered${g.reason ? `: ${g.reason}` : ""}.`, "warning");
  }
  const c = model.connection;
  const next = model.successor;
  if (next) {
    const p = document.createElement("p");
    p.className = "note info successor";
    p.append(`This run has ended. ${next.label} (the same project) started at ${next.address}. `);
    const b = document.createElement("button");
    b.id = "btn-switch";
    b.textContent = `Switch to ${next.label}`;
    b.dataset.runId = next.runId;
    b.addEventListener("click", () => post({ type: "attach", runId: next.runId }));
    p.append(b);
    el.append(p);
  }
  if (c.state === "reconnecting") add(`Connection lost — ${c.detail}`, "info");
  if (c.state === "failed") add(`Not connected: ${c.detail}`, "error");
  if (c.state === "detached") add(c.detail || "Not attached to a run.", "info");
  el.hidden = el.childElementCount === 0;
}

function renderReceipts(): void {
  const list = $("receipts");
  list.replaceChildren(...[...model.receipts].reverse().map((r) => {
    const li = document.createElement("li");
    li.className = `receipt ${r.status}`;
    li.dataset.command = r.command;
    li.dataset.status = r.status;
    const time = document.createElement("time");
    time.textContent = new Date(r.at).toLocaleTimeString();
    const text = document.createElement("span");
    text.textContent = r.text;
    li.append(time, text);
    return li;
  }));
  if (!model.receipts.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No commands yet. Receipts show the step each command was applied at.";
    list.append(li);
  }
}

function renderRuntime(): void {
  const dl = $("runtime");
  const r = model.runtime;
  const s = model.status;
  const rows: [string, string][] = [];
  if (s) {
    rows.push(["device", s.device || "–"]);
    rows.push(["throughput", `${fmtNum(s.samplesPerSecond)} samples/s (last 10 s)`]);
    if (s.pendingSteps) rows.push(["pending steps", String(s.pendingSteps)]);
    for (const h of s.hyperparameters) {
      rows.push([`group ${h.group}`, Object.entries(h.values).sort().map(([k, v]) => `${k}=${fmtNum(v)}`).join("  ")]);
    }
  }
  if (r) {
    rows.push(["CPU", `${r.cpuPercent.toFixed(0)} %`]);
    rows.push(["memory (RSS)", bytes(r.rssBytes)]);
    rows.push(["threads", String(r.threads)]);
  }
  rows.push(["events dropped", model.notes.droppedAtSource.toLocaleString()]);
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
  const gpus = $("gpu-list");
  gpus.replaceChildren(...(r?.gpus ?? []).map((g) => {
    const div = document.createElement("div");
    div.className = "gpu";
    const name = document.createElement("div");
    name.textContent = `GPU ${g.index} · ${g.name}`;
    const util = meter(`utilization ${g.utilizationPercent.toFixed(0)} %`, g.utilizationPercent / 100);
    const mem = meter(`memory ${bytes(g.memoryUsedBytes)} / ${bytes(g.memoryTotalBytes)} (torch ${bytes(g.torchAllocatedBytes)})`,
      g.memoryTotalBytes ? g.memoryUsedBytes / g.memoryTotalBytes : 0);
    div.append(name, util, mem);
    return div;
  }));
  if (r && r.gpus.length === 0) {
    const p = document.createElement("p");
    p.className = "muted small";
    p.textContent = "No GPU in use (or nvidia-ml-py is missing).";
    gpus.append(p);
  }
}

function meter(label: string, frac: number): HTMLElement {
  const wrap = document.createElement("div");
  wrap.className = "meter";
  const bar = document.createElement("div");
  bar.className = "meter-bar";
  bar.style.width = `${Math.max(0, Math.min(1, frac)) * 100}%`;
  const text = document.createElement("span");
  text.textContent = label;
  wrap.setAttribute("role", "meter");
  wrap.setAttribute("aria-valuenow", String(Math.round(frac * 100)));
  wrap.setAttribute("aria-valuemin", "0");
  wrap.setAttribute("aria-valuemax", "100");
  wrap.setAttribute("aria-label", label);
  wrap.append(bar, text);
  return wrap;
}

function renderHistogram(): void {
  const select = $<HTMLSelectElement>("hist-split");
  const splits = Object.keys(model.histograms).sort((a, b) => (a === "train" ? -1 : b === "train" ? 1 : a.localeCompare(b)));
  if (splits.join() !== [...select.options].map((o) => o.value).join() && splits.length) {
    select.replaceChildren(...splits.map((s) => new Option(s, s)));
  }
  if (!splits.includes(prefs.histSplit) && splits.length) prefs.histSplit = splits[0];
  select.value = prefs.histSplit;
  const h = model.histograms[prefs.histSplit];
  drawHistogram($<HTMLCanvasElement>("hist"), h, theme);
  $("hist-caption").textContent = h
    ? `median ${fmtNum(h.quantiles.p50)} · 25–75 % ${fmtNum(h.quantiles.p25)}–${fmtNum(h.quantiles.p75)} · ` +
      `5–95 % ${fmtNum(h.quantiles.p05)}–${fmtNum(h.quantiles.p95)} · mean ${fmtNum(h.mean)}`
    : "";
  $("hist-top").replaceChildren(...(h?.top ?? []).map((t) => {
    const li = document.createElement("li");
    li.textContent = `sample ${t.index < 0 ? "?" : t.index}: ${fmtNum(t.loss)}`;
    return li;
  }));
}

const LEVEL_NAMES = ["", "debug", "info", "warning", "error", "critical"];

function renderLogs(): void {
  const el = $("logs");
  const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  const lines = filterLogs(model.logs, prefs.logLevel, prefs.logSearch);
  el.replaceChildren(...lines.map((l) => {
    const row = document.createElement("div");
    row.className = `log ${LEVEL_NAMES[l.level] ?? "info"}`;
    const meta = document.createElement("span");
    meta.className = "log-meta";
    meta.textContent = `${new Date(l.time * 1000).toLocaleTimeString()} ${(LEVEL_NAMES[l.level] ?? "?").toUpperCase().padEnd(8)} step ${l.step} ${l.logger}`;
    const msg = document.createElement("span");
    msg.className = "log-msg";
    msg.textContent = l.message;
    row.append(meta, msg);
    return row;
  }));
  if (!lines.length) {
    const p = document.createElement("div");
    p.className = "muted";
    p.textContent = model.logs.length ? "No log line matches the filter." : "No log lines yet.";
    el.append(p);
  }
  $("log-count").textContent = `${lines.length} of ${model.logs.length}`;
  if (atBottom) el.scrollTop = el.scrollHeight;
}

// -- saving ----------------------------------------------------------------------------------------

let saveTimer: ReturnType<typeof setTimeout> | undefined;
function saveNow(): void {
  clearTimeout(saveTimer);
  saveTimer = undefined;
  vscode.setState({ v: 1, model: savable(model), prefs, lab: lab.snapshot() } satisfies Saved);
  document.body.dataset.savedSeq = String(model.lastSeq);
}
function saveSoon(): void {
  saveTimer ??= setTimeout(saveNow, 1000);
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") saveNow();
});
window.addEventListener("pagehide", saveNow);

// -- input -----------------------------------------------------------------------------------------

let nextId = 1;
function sendCommand(command: ViewCommand, value?: number, text?: string): void {
  if (inFlight.has(command)) return;
  inFlight.add(command);
  renderControls();
  post({ type: "command", id: nextId++, command, value, ...(text !== undefined ? { text } : {}) });
  pendingIds.set(nextId - 1, command);
}
const pendingIds = new Map<number, ViewCommand>();

function commandFromButton(cmd: ViewCommand): void {
  if (cmd === "setLr") {
    const input = $<HTMLInputElement>("lr-input");
    const value = Number(input.value.trim());
    if (input.value.trim() === "" || !Number.isFinite(value) || value < 0) {
      toast("Enter a learning rate ≥ 0, e.g. 0.001", true);
      input.focus();
      return;
    }
    sendCommand("setLr", value);
    return;
  }
  if (cmd === "step") {
    const n = Math.floor(Number($<HTMLInputElement>("step-count").value));
    sendCommand("step", Number.isFinite(n) && n >= 1 ? n : 1);
    return;
  }
  if (cmd === "restoreCheckpoint") {
    const id = $<HTMLSelectElement>("ckpt-select").value;
    if (!id) return;
    $("restore-picker").hidden = true;
    sendCommand("restoreCheckpoint", undefined, id);
    return;
  }
  sendCommand(cmd);
}

// The restore picker: the host lists the run's checkpoint ring; the person picks one.
let checkpointsRequest = 0;
function openRestorePicker(): void {
  checkpointsRequest = nextId++;
  post({ type: "listCheckpoints", id: checkpointsRequest });
}

function onCheckpoints(id: number, list: CheckpointView[], error?: string): void {
  if (id !== checkpointsRequest) return;
  if (error) {
    toast(`Cannot list checkpoints: ${error}`, true);
    return;
  }
  if (!list.length) {
    toast("The run has no checkpoints yet: take one with Checkpoint (or pause).", true);
    return;
  }
  const select = $<HTMLSelectElement>("ckpt-select");
  select.replaceChildren(...[...list].reverse().map((c) => {
    const o = document.createElement("option");
    o.value = c.id;
    o.textContent = `step ${c.step} · ${c.reason}${c.label ? ` “${c.label}”` : ""} · ${new Date(c.createdAt).toLocaleTimeString()}`;
    return o;
  }));
  $("restore-picker").hidden = false;
  renderControls();
  select.focus();
}

for (const b of document.querySelectorAll<HTMLButtonElement>("#controls button[data-command]")) {
  b.addEventListener("click", () => commandFromButton(b.dataset.command as ViewCommand));
}
$("btn-attach").addEventListener("click", () => post({ type: "attach" }));
$("btn-restore").addEventListener("click", openRestorePicker);
$("btn-run-script").addEventListener("click", () => post({ type: "runScript" }));
$("btn-restore-cancel").addEventListener("click", () => {
  $("restore-picker").hidden = true;
});
$("btn-health").addEventListener("click", runHealth);
const healthCheck = $<HTMLSelectElement>("health-check");
healthCheck.value = prefs.healthCheck;
healthCheck.addEventListener("change", () => {
  prefs.healthCheck = healthCheck.value;
  saveSoon();
});
const healthInfo = $<HTMLInputElement>("health-info");
healthInfo.checked = prefs.healthInfo;
healthInfo.addEventListener("change", () => {
  prefs.healthInfo = healthInfo.checked;
  renderHealth();
  saveSoon();
});
$("lr-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") commandFromButton("setLr");
});
$("step-count").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") commandFromButton("step");
});
document.addEventListener("keydown", (ev) => {
  const target = ev.target as HTMLElement;
  if (ev.altKey || ev.ctrlKey || ev.metaKey || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName)) return;
  if (ev.key === "h") {
    if (!$<HTMLButtonElement>("btn-health").disabled) {
      ev.preventDefault();
      runHealth();
    }
    return;
  }
  const map: Record<string, ViewCommand> = { p: "pause", r: "resume", t: "runTest" };
  const cmd = map[ev.key];
  if (!cmd) return;
  const b = document.querySelector<HTMLButtonElement>(`#controls button[data-command="${cmd}"]`);
  if (b && !b.disabled) {
    ev.preventDefault();
    commandFromButton(cmd);
  }
});

const xAxis = $<HTMLSelectElement>("x-axis");
xAxis.value = prefs.xAxis;
xAxis.addEventListener("change", () => {
  prefs.xAxis = xAxis.value === "epoch" ? "epoch" : "step";
  board.rebuild();
  saveSoon();
});
const smooth = $<HTMLInputElement>("smooth");
smooth.checked = prefs.smooth;
smooth.addEventListener("change", () => {
  prefs.smooth = smooth.checked;
  board.update(null);
  saveSoon();
});
const histSplit = $<HTMLSelectElement>("hist-split");
histSplit.addEventListener("change", () => {
  prefs.histSplit = histSplit.value;
  renderHistogram();
  saveSoon();
});
$("hist-png").addEventListener("click", () => {
  const canvas = $<HTMLCanvasElement>("hist");
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const ctx = out.getContext("2d")!;
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(canvas, 0, 0);
  post({ type: "exportPng", name: `${(model.run?.label ?? "run").replace(/\W+/g, "_")}-per_sample_loss`, dataUrl: out.toDataURL("image/png") });
});
const logLevel = $<HTMLSelectElement>("log-level");
logLevel.value = String(prefs.logLevel);
logLevel.addEventListener("change", () => {
  prefs.logLevel = Number(logLevel.value) || 1;
  renderLogs();
  saveSoon();
});
const logSearch = $<HTMLInputElement>("log-search");
logSearch.value = prefs.logSearch;
logSearch.addEventListener("input", () => {
  prefs.logSearch = logSearch.value;
  renderLogs();
  saveSoon();
});

let toastTimer: ReturnType<typeof setTimeout> | undefined;
function toast(text: string, error = false): void {
  const el = $("toast");
  el.textContent = text;
  el.classList.toggle("error", error);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

// Theme changes: VS Code swaps the body class (vscode-light / vscode-dark / vscode-high-contrast).
const themeKind = () => [...document.body.classList].filter((c) => c.startsWith("vscode-")).sort().join(" ");
let lastThemeKind = themeKind();
new MutationObserver(() => {
  if (themeKind() === lastThemeKind) return;
  lastThemeKind = themeKind();
  theme = readTheme();
  board.setTheme(theme);
  renderHistogram();
  lab.setTheme();
}).observe(document.body, { attributes: true, attributeFilter: ["class"] });

// -- host messages ---------------------------------------------------------------------------------

function onDelta(d: Delta): void {
  schedule(applyDelta(model, d));
}

function onReceipt(id: number, r: ReceiptView | null): void {
  const cmd = pendingIds.get(id);
  pendingIds.delete(id);
  if (cmd) inFlight.delete(cmd);
  renderControls();
  if (r) toast(r.text, r.status === "rejected" || r.status === "error"); // null: the person cancelled
}

function runHealth(): void {
  if (healthInFlight || model.health.running) return;
  healthInFlight = true;
  renderControls();
  post({ type: "health", id: nextId++, checks: prefs.healthCheck ? [prefs.healthCheck as HealthCheckName] : [] });
}

function onHealthDone(r: HealthView): void {
  healthInFlight = false;
  renderControls();
  toast(r.text, r.status !== "applied" || r.findings.some((f) => f.severity === "error"));
}

window.addEventListener("message", (ev: MessageEvent) => {
  const msg = ev.data as HostToView;
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "delta":
      onDelta(msg.delta);
      break;
    case "commandDone":
      onReceipt(msg.id, msg.receipt);
      break;
    case "healthDone":
      onHealthDone(msg.report);
      break;
    case "exported":
      if (msg.error) toast(`Export failed: ${msg.error}`, true);
      else if (msg.path) toast(`Saved ${msg.path}`);
      break;
    case "zoomData":
      board.setDetail(msg);
      break;
    case "checkpoints":
      onCheckpoints(msg.id, msg.checkpoints, msg.error);
      break;
    case "toast":
      toast(msg.text, msg.error);
      break;
    case "labDone":
      lab.done(msg.id, msg.op, msg.result, msg.error, msg.cancelled);
      break;
  }
});

const lab = new LabPanel(post, () => theme, model.run?.runId ?? "", saved?.v === 1 ? saved.lab : undefined, () => saveSoon(), model.receipts);
render(all());
post({ type: "ready", runId: model.run?.runId ?? "", gen: model.gen, lastSeq: model.lastSeq });
