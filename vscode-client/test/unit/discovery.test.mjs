import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core } from "../helpers/util.mjs";

const { runtimeDir, listRuns, parseAddress, runAtAddress, parseDiscovery, runLabel } = core;

test("runtimeDir follows the trainer's rule", () => {
  assert.equal(runtimeDir({ ONTHEFLY_RUNTIME_DIR: "/a", XDG_RUNTIME_DIR: "/x" }, "", "/h"), "/a");
  assert.equal(runtimeDir({ XDG_RUNTIME_DIR: "/x" }, "", "/h"), "/x/onthefly");
  assert.equal(runtimeDir({}, "", "/h"), "/h/.onthefly/run");
  assert.equal(runtimeDir({ ONTHEFLY_RUNTIME_DIR: "/a" }, "/setting", "/h"), "/setting");
});

test("listRuns reads live runs newest first and skips dead, malformed and foreign files", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-disc-"));
  const write = (name, data) => fs.writeFileSync(path.join(dir, name), typeof data === "string" ? data : JSON.stringify(data));
  const base = { token: "t", project: "p", run_name: "r", run_id: "id", started_at: 1 };
  write(`${process.pid}-1000.json`, { ...base, port: 1000, pid: process.pid, started_at: 10, run_name: "old" });
  write(`${process.pid}-1001.json`, { ...base, port: 1001, pid: process.pid, started_at: 20, run_name: "new" });
  write("999999-1002.json", { ...base, port: 1002, pid: 999999 });
  write("12-13.json", "{not json");
  write("notes.txt", "x");
  write(`${process.pid}-1003.json`, { port: "x", pid: process.pid, token: "t" });
  const runs = listRuns(dir, (pid) => pid === process.pid);
  assert.deepEqual(runs.map((r) => r.runName), ["new", "old"]);
  assert.equal(runs[0].host, "127.0.0.1");
  assert.equal(runs[0].file, path.join(dir, `${process.pid}-1001.json`));
  assert.ok(fs.existsSync(path.join(dir, "999999-1002.json")), "a stale file is the trainer's to remove");
  assert.deepEqual(listRuns(path.join(dir, "missing")), []);
  fs.rmSync(dir, { recursive: true });
});

test("parseDiscovery needs port, pid and token", () => {
  assert.equal(parseDiscovery('{"port": 1, "pid": 2}'), undefined);
  assert.equal(parseDiscovery("[]"), undefined);
  const r = parseDiscovery('{"port": 1, "pid": 2, "token": "t", "project": "p", "run_name": "n"}');
  assert.equal(runLabel(r), "p/n");
});

test("parseAddress accepts the usual spellings and explains what it rejects", () => {
  assert.deepEqual(parseAddress("127.0.0.1:47621"), { host: "127.0.0.1", port: 47621 });
  assert.deepEqual(parseAddress(" 5000 "), { host: "127.0.0.1", port: 5000 });
  assert.deepEqual(parseAddress("http://localhost:80/"), { host: "localhost", port: 80 });
  assert.deepEqual(parseAddress("[::1]:9"), { host: "::1", port: 9 });
  assert.throws(() => parseAddress("localhost"), /HOST:PORT/);
  assert.throws(() => parseAddress("h:70000"), /out of range/);
});

test("runAtAddress matches a typed loopback address to its discovery file", () => {
  const runs = [{ host: "127.0.0.1", port: 5, token: "a" }, { host: "127.0.0.1", port: 6, token: "b" }];
  assert.equal(runAtAddress(runs, "localhost", 6).token, "b");
  assert.equal(runAtAddress(runs, "127.0.0.1", 7), undefined);
});

test("successorOf: the newest other run of the same project that started after the ended one", () => {
  const run = (runId, project, startedAt) => ({ host: "127.0.0.1", port: 1, pid: 1, token: "t", project, runName: runId, runId, startedAt, file: "" });
  const ended = { project: "p", runId: "a", startedAt: 100 };
  const runs = [run("c", "other", 300), run("b2", "p", 250), run("b1", "p", 200), run("old", "p", 50), run("a", "p", 100)];
  assert.equal(core.successorOf(ended, runs)?.runId, "b2");
  assert.equal(core.successorOf(ended, [run("a", "p", 100), run("old", "p", 50)]), undefined, "not itself, not an older run");
  assert.equal(core.successorOf({ ...ended, project: "" }, runs), undefined, "unknown project: no guess");
});
