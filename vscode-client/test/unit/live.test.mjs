// Client, follower, store and session against a REAL Python trainer (test/fixtures/trainer.py).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";

const { RunClient, RunSession, TelemetryFollower, RunStore, sessionTarget, listRuns, Code } = core;

let trainer;
let session;
const HISTORY = 3000;

before(async () => {
  trainer = await startTrainer({ FIXTURE_HISTORY_EVENTS: String(HISTORY) });
});

after(async () => {
  if (trainer) {
    fs.mkdirSync(path.join(VSC_ROOT, "test-results"), { recursive: true });
    fs.writeFileSync(path.join(VSC_ROOT, "test-results/unit-trainer.log"), trainer.output());
  }
  await session?.dispose();
  await trainer?.stop();
});

/** A failed test may leave the run paused; the tests that need events flowing resume it first. */
async function ensureRunning() {
  if ((await session.client.status()).state === core.runPb.RunState.PAUSED) {
    const { outcome } = await session.command("resume");
    assert.equal(outcome.status, "applied", `resume before the test: ${outcome.detail}`);
  }
}

test("discovery finds the trainer and the client reads its status", async () => {
  const runs = listRuns(trainer.dir);
  assert.equal(runs.length, 1);
  assert.equal(runs[0].project, "vscode-tests");
  const client = new RunClient(runs[0]);
  try {
    const st = await client.status();
    assert.equal(st.identity.runId, runs[0].runId);
    assert.equal(Number(st.identity.pid), trainer.proc.pid);
    assert.equal(Number(st.totalSteps), 200000);
  } finally {
    client.close();
  }
});

test("a wrong token is refused with UNAUTHENTICATED and a message saying what to do", async () => {
  const client = new RunClient({ ...trainer.info, token: "wrong" });
  try {
    await assert.rejects(client.status(), (err) => err.code === Code.Unauthenticated && /token/.test(err.message));
    const o = await client.command("pause");
    assert.equal(o.status, "error");
    assert.match(o.detail, /token/);
    const h = await client.health();
    assert.equal(h.status, "error");
    assert.match(h.text, /^health checks: failed: .*token/);
  } finally {
    client.close();
  }
});

test("the session folds live telemetry into the store: metrics, per-sample losses, logs, runtime", async () => {
  session = new RunSession(sessionTarget(trainer.info), { statusIntervalMs: 300 });
  session.start();
  const s = session.store;
  await waitFor(() => s.seriesPoints("loss").x.length >= 30, { what: "30 loss points" });
  await waitFor(() => s.histogram("train")?.n > 0, { what: "per-sample losses" });
  await waitFor(() => s.delta(-1, 0, 0).logs.some((l) => l.message === "step 25 done" && l.logger === "fixture"), { what: "the fixture's log line" });
  await waitFor(() => s.delta(-1, 0, 0).runtime, { what: "runtime stats", timeout: 20_000 });
  await waitFor(() => s.statusView.state === "running" && s.statusView.totalSteps === 200000, { what: "running status" });
  assert.equal(session.connection.state, "live");
  const loss = s.seriesPoints("loss");
  assert.ok(loss.x.every((x, i) => i === 0 || x > loss.x[i - 1]), "steps ascend");
  assert.ok(loss.y.every(Number.isFinite));
  assert.ok(s.seriesPoints("lr").y.every((v) => v === 0.02));
});

test("commands come back with receipts and really steer the run", async () => {
  const s = session.store;
  const { outcome: paused, receipt } = await session.command("pause");
  assert.equal(paused.status, "applied", receipt.text);
  assert.ok(paused.step > 0);
  assert.equal(receipt.text, `pause: applied at step ${paused.step}`);
  const st = await session.client.status();
  assert.equal(st.state, core.runPb.RunState.PAUSED);
  assert.equal(Number(st.step), paused.step, "paused means stopped at that step");

  const lr = await session.command("setLr", 0.005);
  assert.equal(lr.outcome.status, "applied", lr.receipt.text);
  await waitFor(async () => (await session.client.status()).hyperparameters[0].values.lr === 0.005, { what: "lr 0.005" });

  const bad = await session.command("setLr", -1);
  assert.equal(bad.outcome.status, "error");
  assert.match(bad.receipt.text, /set learning rate: failed: .*lr/);

  const stepped = await session.command("step", 3);
  assert.equal(stepped.outcome.status, "applied", stepped.receipt.text);
  await waitFor(async () => {
    const now = await session.client.status();
    return now.state === core.runPb.RunState.PAUSED && Number(now.step) === paused.step + 3;
  }, { what: "three more steps, then paused" });
  await waitFor(() => s.seriesPoints("lr").y.at(-1) === 0.005, { what: "the new lr in the step metrics" });

  const tested = await session.command("runTest");
  assert.equal(tested.outcome.status, "applied", tested.receipt.text);
  assert.match(tested.receipt.text, /^run test: applied at step \d+ \(test loss [\d.]+ over 1024 samples/);
  await waitFor(() => s.seriesPoints("test/loss").x.length === 1, { what: "the test result in the store" });
  await waitFor(() => s.histogram("test")?.n === 1024, { what: "the test pass's per-sample losses" });

  const resumed = await session.command("resume");
  assert.equal(resumed.outcome.status, "applied", resumed.receipt.text);
  const again = await session.command("resume");
  assert.equal(again.outcome.status, "error", "resume while running is refused");
  assert.match(again.outcome.detail, /paused/);
  await waitFor(() => s.statusView.state === "running" && s.statusView.step > paused.step + 3, { what: "training again" });
  const texts = s.delta(-1, 0, 0).receipts.map((r) => r.text);
  assert.ok(texts.includes(receipt.text));
});

test("the view protocol: a fresh view gets a reset, a restored view only what it lacks, commands answer", async () => {
  const posted = [];
  const view = { post: (m) => void posted.push(m) };
  await session.handleViewMessage(view, { type: "ready", runId: "", gen: -1, lastSeq: 0 });
  const first = posted.shift();
  assert.equal(first.type, "delta");
  assert.equal(first.delta.reset, true);
  assert.ok(first.delta.series.loss.x.length > 30);
  assert.equal(first.delta.run.runId, trainer.info.runId);

  // A view that restored its state up to seq `have` gets only newer points, and no reset.
  const have = first.delta.lastSeq;
  const lastStep = first.delta.series.loss.x.at(-1);
  session.removeView(view);
  await waitFor(() => session.store.lastSeq > have + 50, { what: "more events" });
  posted.length = 0;
  await session.handleViewMessage(view, { type: "ready", runId: trainer.info.runId, gen: first.delta.gen, lastSeq: have });
  const catchUp = posted.shift();
  assert.equal(catchUp.delta.reset, false);
  assert.ok(catchUp.delta.series.loss.x[0] > lastStep, "nothing the view already has is re-sent");

  await waitFor(() => posted.some((m) => m.type === "delta" && m.delta.series.loss), { what: "a live delta" });
  await session.handleViewMessage(view, { type: "command", id: 7, command: "pause" });
  const done = posted.find((m) => m.type === "commandDone");
  assert.equal(done.id, 7);
  assert.match(done.receipt.text, /^pause: applied at step \d+$/);
  await session.handleViewMessage(view, { type: "command", id: 8, command: "resume" });
  assert.ok(posted.some((m) => m.type === "commandDone" && m.id === 8 && m.receipt.status === "applied"));
  session.removeView(view);
});

test("health checks through a view: the report answers the view and reaches every view through the store", async () => {
  const posted = [];
  const view = { post: (m) => void posted.push(m) };
  await session.handleViewMessage(view, { type: "ready", runId: "", gen: -1, lastSeq: 0 });
  await session.handleViewMessage(view, { type: "health", id: 9, checks: ["numerics", "gradients"] });
  const done = posted.find((m) => m.type === "healthDone");
  assert.equal(done.id, 9);
  const r = done.report;
  assert.equal(r.status, "applied", r.text);
  assert.deepEqual(r.checks, ["numerics", "gradients"]);
  assert.deepEqual([...new Set(r.findings.map((f) => f.check))], ["numerics", "gradients"], "only what was asked, in check order");
  assert.ok(r.findings.every((f) => ["info", "warning", "error"].includes(f.severity) && f.message.length > 0));
  const grads = r.findings.find((f) => f.check === "gradients" && "total_grad_norm" in f.evidence);
  assert.ok(grads && Number.isFinite(grads.evidence.total_grad_norm) && grads.evidence.total_grad_norm > 0, JSON.stringify(r.findings));
  assert.match(r.text, new RegExp(`^health at step ${r.step}: \\d+ errors?, \\d+ warnings?, \\d+ notes? \\(held the loop [\\d.]+ s\\)$`));
  assert.deepEqual(session.store.healthView, { running: false, report: r });
  await waitFor(() => posted.some((m) => m.type === "delta" && m.delta.health?.report?.at === r.at), { what: "the report in a delta" });
  session.removeView(view);
});

test("the follower resumes after the last seq when the connection drops", async () => {
  await ensureRunning();
  const client = new RunClient(trainer.info);
  const calls = [];
  let frames = 0;
  let cut = -1;
  const flaky = {
    async *subscribe(afterSeq, signal) {
      calls.push(afterSeq);
      for await (const frame of client.subscribe(afterSeq, signal)) {
        yield frame;
        if (calls.length === 1 && ++frames === 3) {
          cut = seqs.at(-1);
          throw new Error("connection reset (simulated)");
        }
      }
    },
  };
  const seqs = [];
  const states = [];
  const follower = new TelemetryFollower(flaky, (f) => seqs.push(...f.events.map((e) => Number(e.seq))), (c) => states.push(c.state),
    { afterSeq: BigInt(session.store.lastSeq), backoffMs: [50] });
  void follower.start();
  try {
    await waitFor(() => calls.length === 2 && seqs.length > 200, { what: "a reconnect and more events" });
    assert.equal(calls[1], BigInt(cut), "the reconnect asks for what follows the last event seen");
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i - 1]} then ${seqs[i]}: nothing lost or repeated`);
    assert.deepEqual(states.slice(0, 3), ["live", "reconnecting", "live"]);
  } finally {
    await follower.stop();
    client.close();
  }
});

test("a gap the run can no longer fill is reported, not skipped silently", async () => {
  await ensureRunning();
  // Well past the bounded history (the oldest kept event is a few seqs past lastSeq - HISTORY), so
  // the gap is sure to reach past 500 however the subscribe races the run.
  await waitFor(async () => Number((await session.client.status()).lastSeq) > HISTORY + 1000, { what: "history to roll over", timeout: 120_000 });
  const client = new RunClient(trainer.info);
  const store = new RunStore();
  const follower = new TelemetryFollower(client, (f) => store.applyFrame(f), () => {}, { afterSeq: 1n });
  void follower.start();
  try {
    await waitFor(() => store.delta(-1, 0, 0).notes.gaps.length > 0, { what: "a gap note" });
    const gap = store.delta(-1, 0, 0).notes.gaps[0];
    assert.equal(gap.first, 2);
    assert.ok(gap.last > 500);
    assert.ok(gap.reason.length > 0);
  } finally {
    await follower.stop();
    client.close();
  }
});

test("a late attach backfills the whole metric history from step 1, then follows live with no gap or overlap", async () => {
  await ensureRunning();
  // The bus's bounded history (HISTORY events) no longer holds the first steps.
  await waitFor(async () => Number((await session.client.status()).lastSeq) > HISTORY + 1000, { what: "history to roll over", timeout: 120_000 });
  const late = new RunSession(sessionTarget(trainer.info), { statusIntervalMs: 500 });
  late.start();
  try {
    await late.backfilled;
    const atAttach = late.store.seriesPoints("loss");
    assert.equal(atAttach.x[0], 1, "the loss series starts at step 1");
    const historySeq = late.store.lastSeq;
    assert.ok(historySeq > HISTORY, "the history ends past the bus's bounded history");
    await waitFor(() => late.store.lastSeq > historySeq + 50, { what: "live events after the history" });
    const loss = late.store.seriesPoints("loss");
    for (let i = 1; i < loss.x.length; i++) assert.ok(loss.x[i] > loss.x[i - 1], `step ${loss.x[i - 1]} then ${loss.x[i]}: ascending, none repeated`);
    assert.ok(loss.x.length > atAttach.x.length, "live points follow the history");
    assert.deepEqual(late.store.delta(-1, 0, 0).notes.gaps, [], "no gap notice: the history covers what the stream no longer holds");
    const zoom = await late.zoomHistory(["loss", "lr"], 10, 60, 1000);
    assert.deepEqual(zoom.loss.x, Array.from({ length: 51 }, (_, i) => 10 + i), "a zoomed range comes back step by step");
    assert.equal(zoom.lr.x.length, 51);
  } finally {
    await late.dispose();
  }
});

test("stop ends the run: receipt, final event, stream ends, process exits 0", async () => {
  const { outcome } = await session.command("stop");
  assert.equal(outcome.status, "applied");
  await waitFor(() => session.connection.state === "ended", { what: "the stream to end after the final event" });
  await waitFor(() => session.store.statusView.state === "finished", { what: "finished state" });
  const { code } = await trainer.exited;
  assert.equal(code, 0, trainer.output().slice(-2000));
});
