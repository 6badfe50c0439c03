// The store and the webview model on synthetic frames (the live tests use a real trainer).
import { test } from "node:test";
import assert from "node:assert/strict";
import { core } from "../helpers/util.mjs";

const { RunStore, create, telemetryPb: T, LossWindow, quantile, webviewModel: W, webviewScales: C } = core;

let seq = 0;
function ev(step, payload) {
  seq += 1;
  return { seq: BigInt(seq), step: BigInt(step), epoch: 0n, timeUnix: 1000 + seq, payload };
}
const metrics = (step, loss) => ev(step, { case: "stepMetrics", value: { loss, lr: 0.1, gradNorm: NaN, samplesPerSecond: 100, batchSize: 4n, stepSeconds: 0.01, dataSeconds: 0.001, extra: { acc: 0.5 } } });
const frame = (events, extra = {}) => create(T.SubscribeResponseSchema, { events, ...extra });

test("deltas carry only what is newer than the view's seq and version", () => {
  seq = 0;
  const s = new RunStore();
  s.reset({ runId: "r", label: "p/r", address: "a" });
  s.applyFrame(frame([metrics(1, 2.0), metrics(2, 1.5)]));
  const full = s.delta(-1, 0, 0);
  assert.equal(full.reset, true);
  assert.deepEqual(full.series.loss, { x: [1, 2], y: [2.0, 1.5] });
  assert.equal(full.series.grad_norm, undefined, "NaN grad norm means not computed: no point");
  assert.deepEqual(full.series["extra/acc"].y, [0.5, 0.5]);
  assert.equal(full.run.runId, "r");
  const v = s.version;
  s.applyFrame(frame([metrics(3, 1.0)]));
  const d = s.delta(full.gen, full.lastSeq, v);
  assert.equal(d.reset, false);
  assert.deepEqual(d.series.loss, { x: [3], y: [1.0] });
  assert.equal(d.run, undefined, "unchanged fields are not re-sent");
  assert.equal(d.status.step, 3);
  // A replayed event (reconnect overlap) is ignored.
  s.applyFrame(frame([{ ...metrics(3, 9.9), seq: 3n }]));
  assert.deepEqual(s.seriesPoints("loss").y, [2.0, 1.5, 1.0]);
});

test("gaps and drops become notes; command events merge with our receipts by id", () => {
  seq = 0;
  const s = new RunStore();
  s.applyFrame(frame([metrics(1, 1)], { gap: { firstSeq: 5n, lastSeq: 9n, reason: "fell behind" }, droppedAtSource: 7n }));
  assert.deepEqual(s.delta(-1, 0, 0).notes, { droppedAtSource: 7, gaps: [{ first: 5, last: 9, reason: "fell behind" }] });
  const r = s.addOutcome({ command: "pause", status: "applied", commandId: 4, step: 12, detail: "", at: 1 });
  assert.equal(r.text, "pause: applied at step 12");
  assert.equal(s.statusView.state, "paused");
  s.applyFrame(frame([ev(12, { case: "command", value: { commandId: 4n, name: "pause", applied: true, detail: "" } })]));
  s.applyFrame(frame([ev(12, { case: "command", value: { commandId: 5n, name: "set_hyperparameters", applied: false, detail: "lr must be >= 0" } })]));
  const receipts = s.delta(-1, 0, 0).receipts;
  assert.equal(receipts.length, 2);
  assert.equal(receipts[0].text, "pause: applied at step 12");
  assert.equal(receipts[1].text, "set hyperparameters: rejected: lr must be >= 0");
  // The run's event may come before our call's answer: the line ends up the same.
  s.applyFrame(frame([ev(20, { case: "command", value: { commandId: 6n, name: "pause", applied: true, detail: "paused at step 20" } })]));
  assert.equal(s.delta(-1, 0, 0).receipts.at(-1).text, "pause: applied at step 20 (paused at step 20)", "another client's command, as the run tells it");
  assert.equal(s.addOutcome({ command: "pause", status: "applied", commandId: 6, step: 20, detail: "", at: 2 }).text, "pause: applied at step 20");
  assert.equal(s.delta(-1, 0, 0).receipts.length, 3);
});

test("per-sample losses feed a windowed histogram; an eval pass replaces the previous one", () => {
  seq = 0;
  const s = new RunStore({ windowSamples: 100 });
  const batch = (step, split, losses) => ev(step, { case: "sampleLosses", value: { split, indices: losses.map((_, i) => BigInt(i)), losses } });
  s.applyFrame(frame([batch(1, "train", Array.from({ length: 150 }, (_, i) => i))]));
  const h = s.histogram("train");
  assert.equal(h.n, 100, "window keeps the newest 100");
  assert.equal(h.lo, 50);
  assert.equal(h.hi, 149);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), 100);
  assert.equal(h.top[0].loss, 149);
  assert.equal(h.top[0].index, 149);
  assert.ok(Math.abs(h.quantiles.p50 - 99.5) < 1e-9);
  s.applyFrame(frame([batch(10, "val", [1, 2]), batch(10, "val", [3])]));
  assert.equal(s.histogram("val").n, 3);
  s.applyFrame(frame([batch(20, "val", [5])]));
  assert.equal(s.histogram("val").n, 1, "a pass at a new step starts over");
  assert.equal(quantile([0, 10], 0.25), 2.5);
  const w = new LossWindow("x", 4);
  w.add(1, [1, 2], [NaN, 3]);
  assert.equal(w.count, 1);
  assert.equal(w.nonFinite, 1);
});

test("long series are thinned and the views get a reset", () => {
  seq = 0;
  const s = new RunStore({ maxPoints: 100 });
  const gen0 = s.gen;
  s.applyFrame(frame(Array.from({ length: 101 }, (_, i) => metrics(i + 1, i))));
  assert.ok(s.gen > gen0);
  const pts = s.seriesPoints("loss");
  assert.ok(pts.x.length < 100 && pts.x.length > 50);
  assert.equal(pts.x.at(-1), 101, "the newest point survives");
  assert.equal(pts.x[0], 1, "the first point survives");
  assert.equal(s.delta(gen0, 50, 0).reset, true);
});

test("the webview model appends deltas, saves a thinned copy and computes EMA and epochs", () => {
  const m = W.emptyModel();
  W.applyDelta(m, { gen: 2, reset: true, lastSeq: 3, series: { loss: { x: [1, 2, 3], y: [3, 2, 1] } }, logs: [] });
  const c = W.applyDelta(m, { gen: 2, reset: false, lastSeq: 5, series: { loss: { x: [4, 2], y: [0.5, 9] } }, logs: [{ seq: 5, step: 4, time: 0, level: 3, logger: "x", message: "Hello" }] });
  assert.deepEqual(m.series.loss.x, [1, 2, 3, 4], "x stays ascending");
  assert.ok(c.series.has("loss") && c.logs);
  assert.equal(m.lastSeq, 5);
  const big = { x: Array.from({ length: 1000 }, (_, i) => i), y: Array.from({ length: 1000 }, (_, i) => i) };
  const t = W.thinned(big, 100);
  assert.equal(t.x.length, 100);
  assert.equal(t.x.at(-1), 999);
  const out = [];
  W.emaInto([1, 1, 1], out, 0.9);
  assert.ok(out.every((v) => Math.abs(v - 1) < 1e-12), "debiased EMA of a constant is the constant");
  W.emaInto([1, 1, 1, 5], out, 0.9);
  assert.equal(out.length, 4);
  assert.ok(out[3] > 1 && out[3] < 5);
  const starts = [{ epoch: 0, step: 0 }, { epoch: 1, step: 100 }];
  assert.equal(W.epochAt(50, starts), 0.5);
  assert.equal(W.epochAt(150, starts), 1.5);
  assert.deepEqual(W.filterLogs(m.logs, 3, "hell").length, 1);
  assert.deepEqual(W.filterLogs(m.logs, 4, "").length, 0);
  assert.deepEqual(W.filterLogs(m.logs, 1, "nope").length, 0);
});

test("the run's history starts every series; events it covers are skipped, newer ones follow; views reset", () => {
  seq = 0;
  const s = new RunStore();
  s.applyFrame(frame([metrics(1, 9)])); // seq 1, already in the history below
  const gen0 = s.gen;
  s.applyHistory({
    series: { loss: { x: [1, 2, 3], y: [3, 2, 1] }, "val/loss": { x: [2], y: [2.5] }, lr: { x: [], y: [] } },
    lastSeq: 10n, epochStarts: [{ epoch: 0, step: 1 }, { epoch: 1, step: 3 }],
  });
  assert.ok(s.gen > gen0, "views get a reset");
  assert.deepEqual(s.seriesPoints("loss"), { x: [1, 2, 3], y: [3, 2, 1] }, "the history replaces what the stream brought before it");
  assert.equal(s.lastSeq, 10);
  seq = 8;
  s.applyFrame(frame([metrics(3, 7), metrics(4, 0.5)])); // seq 9 (covered by the history), seq 10 (covered), then...
  s.applyFrame(frame([metrics(5, 0.25)])); // seq 11: new
  assert.deepEqual(s.seriesPoints("loss").x, [1, 2, 3, 5]);
  const d = s.delta(-1, 0, 0);
  assert.deepEqual(d.series["val/loss"], { x: [2], y: [2.5] });
  assert.deepEqual(d.epochStarts, [{ epoch: 0, step: 1 }, { epoch: 1, step: 3 }]);
  assert.equal(d.status.step, 5);
});

test("chart helpers: a loss spanning two decades defaults to log; epochs read 'epoch 4.2'", () => {
  assert.equal(C.spansDecades([1, 0.5, 0.011], 2), false);
  assert.equal(C.spansDecades([2, 0.5, 0.01, 0, -1], 2), true, "zero and below are ignored");
  const spec = { id: "loss", series: [{ name: "loss" }], loggable: true };
  const m = { series: { loss: { x: [1, 2], y: [3, 0.001] } } };
  assert.equal(C.yScale(spec, m, {}), "log");
  assert.equal(C.yScale(spec, m, { yScale: { loss: "linear" } }), "linear", "the person's choice wins");
  assert.equal(C.yScale({ ...spec, loggable: false }, m, {}), "linear");
  assert.equal(C.fmtEpoch(4.17), "epoch 4.2");
  assert.equal(C.fmtNum(-1.5e-4), "-1.50e-4");
});

test("the highest-loss list names each sample once, at its highest loss", () => {
  const w = new LossWindow("train", 64);
  w.add(1, [7, 8, 9], [5, 1, 2]);
  w.add(2, [7, 8, 10], [4, 1.5, 0.5]); // sample 7 again (a second epoch in the window)
  const top = w.histogram().top;
  assert.deepEqual(top.map((t) => t.index), [7, 9, 8, 10]);
  assert.equal(top[0].loss, 5);
});

test("earlier log lines from a late attach go before the live ones, once each; views reset", () => {
  seq = 0;
  const s = new RunStore();
  const log = (step, message) => ev(step, { case: "log", value: { level: 2, logger: "fixture", message } });
  const early = [log(1, "a"), log(2, "b")];
  seq = 100;
  s.applyFrame(frame([log(50, "c")]));
  const gen = s.gen;
  s.addEarlierLogs([...early, ev(3, { case: "stepMetrics", value: {} })]);
  s.addEarlierLogs(early);
  assert.deepEqual(s.delta(-1, 0, 0).logs.map((l) => l.message), ["a", "b", "c"]);
  assert.ok(s.gen > gen);
});
