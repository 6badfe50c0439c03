// Real VS Code in the browser: code-server (from npm, run under Node 24) with a fresh profile, the
// extension installed from the built .vsix, and settings that keep first-run dialogs and Restricted
// Mode out of the way. See ../../../shared/notes/vscode-e2e.md for why each flag and setting is here.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { VSC_ROOT, waitFor } from "./util.mjs";

/** Paths of the cached Node 24 and code-server (scripts/install-code-server.sh puts them there). */
export function codeServerPaths() {
  const r = spawnSync("bash", ["-c", `source "${VSC_ROOT}/scripts/common.sh"; echo "$NODE24_BIN"; echo "$CODE_SERVER_DIR"; echo "$CACHE_DIR"`], { encoding: "utf8" });
  const [nodeBin, csDir, cache] = r.stdout.trim().split("\n");
  const bin = path.join(csDir ?? "", "node_modules/.bin/code-server");
  if (r.status !== 0 || !fs.existsSync(bin) || !fs.existsSync(path.join(nodeBin, "node"))) {
    throw new Error(`code-server or Node 24 is not installed under ${cache}: run scripts/install-code-server.sh (make -C vscode-client code-server)`);
  }
  return { nodeBin, bin };
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The environment code-server gets: ours minus what would redirect or reconfigure it. */
function cleanEnv(extra, tmp, nodeBin) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(VSCODE_|CODE_SERVER_|CS_)/.test(k)) continue;
    if (["PORT", "PASSWORD", "HASHED_PASSWORD", "GITHUB_TOKEN", "ELECTRON_RUN_AS_NODE"].includes(k)) continue;
    env[k] = v;
  }
  return { ...env, PATH: `${nodeBin}:${env.PATH}`, TMPDIR: tmp, ...extra };
}

const SETTINGS = {
  "security.workspace.trust.enabled": false,
  "workbench.startupEditor": "none",
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "chat.disableAIFeatures": true,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "workbench.colorTheme": "Default Dark Modern",
};

/**
 * Installs `vsix` into a fresh profile under a short temp dir and starts code-server on a free
 * loopback port with `env` added (it reaches the extension host) and `settings` in the user settings. Returns { url, tmp, stop(), log() }.
 */
export async function startCodeServer({ vsix, env = {}, workspaceFiles = { "hello.txt": "hello\n" }, settings = {} }) {
  const { nodeBin, bin } = codeServerPaths();
  // Short: unix socket paths under TMPDIR are limited to 108 characters.
  const tmp = fs.mkdtempSync("/tmp/otfcs-");
  const dirs = { ud: path.join(tmp, "ud"), ext: path.join(tmp, "ext"), ws: path.join(tmp, "ws") };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  fs.mkdirSync(path.join(dirs.ud, "User"), { recursive: true });
  fs.writeFileSync(path.join(dirs.ud, "User/settings.json"), JSON.stringify({ ...SETTINGS, ...settings }, null, 2));
  for (const [name, text] of Object.entries(workspaceFiles)) fs.writeFileSync(path.join(dirs.ws, name), text);
  const config = path.join(tmp, "cs.yaml");
  fs.writeFileSync(config, "auth: none\ncert: false\n");
  const childEnv = cleanEnv(env, tmp, nodeBin);
  const common = ["--config", config, "--user-data-dir", dirs.ud, "--extensions-dir", dirs.ext];

  const install = spawnSync(bin, [...common, "--install-extension", vsix, "--force"], { env: childEnv, encoding: "utf8", timeout: 120_000 });
  if (install.status !== 0) throw new Error(`installing ${vsix} failed (${install.status}):\n${install.stdout}\n${install.stderr}`);

  const port = await freePort();
  let output = "";
  const proc = spawn(bin, [...common, "--bind-addr", `127.0.0.1:${port}`, "--auth", "none", "--disable-telemetry",
    "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override", "--ignore-last-opened", dirs.ws],
  { env: childEnv, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout.on("data", (d) => (output += d));
  proc.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        process.kill(-proc.pid, "SIGTERM");
      } catch {}
      const timer = setTimeout(() => {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {}
      }, 5_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`code-server exited (${proc.exitCode}): ${output.slice(-2000)}`);
      const health = await fetch(`${url}/healthz`).then((r) => r.ok).catch(() => false);
      // Under a wrong Node, /healthz is fine but / fails: check both.
      return health && (await fetch(`${url}/`, { redirect: "manual" }).then((r) => r.status < 400).catch(() => false));
    }, { timeout: 60_000, interval: 100, what: "code-server to serve" });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, tmp, workspace: dirs.ws, stop, log: () => output };
}

/** Opens the workbench and waits until the explorer shows the workspace (really ready). */
export async function openWorkbench(page, url, firstFile = "hello.txt") {
  await page.goto(`${url}/`);
  await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
  await page.locator(".explorer-folders-view .monaco-list-row", { hasText: firstFile }).waitFor({ timeout: 60_000 });
}

/**
 * Runs a palette command by its title: F1, type, click the matching row (Enter could run a fuzzy
 * "similar commands" entry while the extension is still being scanned); retries for up to a minute.
 */
export async function runCommand(page, title, { timeout = 60_000 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget .quick-input-box input");
    await input.waitFor({ timeout: 10_000 });
    await input.fill(`>${title}`);
    const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
    try {
      await row.waitFor({ timeout: 3_000 });
      await row.click();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`command "${title}" did not appear in the palette: ${err.message}`);
      await page.keyboard.press("Escape");
    }
  }
}

/** VS Code's outer webview iframe of the dashboard, once VS Code marks it ready. */
export const DASHBOARD_IFRAME = 'iframe.webview.ready[src*="extensionId=onthefly.onthefly-vscode"]';

/** The dashboard's document inside VS Code's two nested webview iframes. */
export function dashboardFrame(page) {
  return page.frameLocator(DASHBOARD_IFRAME).frameLocator("iframe#active-frame");
}
