// The stored-run reader the overlay uses (`onthefly stored` spawned with the chosen interpreter): empty
// stores list nothing, a session that is not there is named with the reason, and an interpreter that
// cannot run says which setting to fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core, PYTHON, REPO_ROOT } from "../helpers/util.mjs";

const env = { ...process.env, PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };

test("empty stores list nothing; a session that is not in the store is named with the reason", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-stored-"));
  try {
    const reader = { python: PYTHON, cwd: dir, stores: [path.join(dir, "store")], trackingRoots: [path.join(dir, "dash")], env };
    assert.deepEqual(await core.listStored(reader), []);
    const gone = { kind: "session", id: "20990101-000000-gone00", state: "finished", where: path.join(dir, "store") };
    const [answer] = await core.readStored(reader, [gone], ["loss"], 100);
    assert.match(answer.error, /no session 20990101-000000-gone00 in .*onthefly stored list/);
    assert.deepEqual(answer.series, {});
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("an interpreter that cannot be run is reported with the setting to fix", async () => {
  const reader = { python: "/nonexistent/bin/python3", cwd: os.tmpdir(), env };
  await assert.rejects(core.listStored(reader), /cannot run \/nonexistent\/bin\/python3 .*onthefly\.pythonPath/);
  const run = { kind: "experiment", id: "me/p/r", state: "completed", where: os.tmpdir() };
  const [answer] = await core.readStored(reader, [run], ["loss"], 100);
  assert.match(answer.error, /onthefly\.pythonPath/);
});
