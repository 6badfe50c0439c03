// The committed TypeScript in src/gen is what buf + protoc-gen-es make from ../proto today.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { VSC_ROOT } from "../helpers/util.mjs";

test("src/gen matches a fresh generation from ../proto", () => {
  const r = spawnSync("bash", [path.join(VSC_ROOT, "scripts/gen.sh"), "--check"], { encoding: "utf8" });
  assert.equal(r.status, 0, `generated code drifted:\n${r.stdout}\n${r.stderr}`);
});
