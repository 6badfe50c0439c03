// The dashboard page. Strict CSP: nothing inline without the nonce, resources only from the
// webview's own origin (cspSource), no network.
import { randomBytes } from "node:crypto";

export interface PageOptions {
  /** The webview's cspSource (VS Code: webview.cspSource). */
  cspSource: string;
  /** URIs of the bundled script and stylesheet, as the webview can load them. */
  scriptUri: string;
  styleUri: string;
  nonce?: string;
  title?: string;
}

export function makeNonce(): string {
  return randomBytes(18).toString("base64").replace(/[^A-Za-z0-9]/g, "");
}

export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `img-src ${cspSource} data: blob:`,
    `style-src ${cspSource} 'nonce-${nonce}'`,
    `font-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join("; ");
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function dashboardHtml(o: PageOptions): string {
  const nonce = o.nonce ?? makeNonce();
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(contentSecurityPolicy(o.cspSource, nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" nonce="${nonce}" href="${esc(o.styleUri)}">
<title>${esc(o.title ?? "OnTheFly")}</title>
</head>
<body>
<header class="top">
  <div class="run">
    <h1 id="run-label">OnTheFly</h1>
    <span id="state" class="badge" role="status" aria-live="polite">connecting</span>
    <span id="progress-text" class="muted"></span>
  </div>
  <div class="progress" aria-hidden="true"><div id="progress-bar"></div></div>
  <div id="connection" class="muted" role="status" aria-live="polite"></div>
</header>
<div id="notes" class="notes" role="status" aria-live="polite" hidden></div>
<section id="controls" class="controls" aria-label="Controls">
  <button id="btn-pause" data-command="pause" title="Pause at the next step boundary (P)">Pause</button>
  <button id="btn-resume" data-command="resume" title="Resume training (R)">Resume</button>
  <span class="group">
    <button id="btn-step" data-command="step" title="Run N steps, then pause">Step</button>
    <label class="sr-only" for="step-count">Steps</label>
    <input id="step-count" type="number" min="1" step="1" value="10" aria-label="Steps to run">
  </span>
  <button id="btn-test" data-command="runTest" title="Evaluate the test set now (T)">Run test</button>
  <span class="group">
    <label for="lr-input">Learning rate</label>
    <input id="lr-input" type="text" inputmode="decimal" size="10" aria-label="New learning rate">
    <button id="btn-lr" data-command="setLr" title="Apply the learning rate at the next step boundary">Set</button>
  </span>
  <span class="group">
    <button id="btn-checkpoint" data-command="checkpoint" class="secondary" title="Take a checkpoint at the next step boundary">Checkpoint</button>
    <button id="btn-export" data-command="exportSession" class="secondary" title="Export the session (state now, checkpoints, history) to one bundle file">Export Session…</button>
    <button id="btn-restore" class="secondary" title="Go back to a checkpoint of the run's ring" aria-haspopup="true" aria-controls="restore-picker">Restore…</button>
    <button id="btn-import" data-command="importSession" class="secondary" title="Continue this run from an exported session bundle">Import Session…</button>
  </span>
  <span id="restore-picker" class="group picker" role="group" aria-label="Restore a checkpoint" hidden>
    <select id="ckpt-select" aria-label="Checkpoint to restore"></select>
    <button id="btn-restore-go" data-command="restoreCheckpoint" title="Restore the chosen checkpoint at the next step boundary">Restore</button>
    <button id="btn-restore-cancel" class="secondary">Cancel</button>
  </span>
  <button id="btn-stop" data-command="stop" class="danger" title="Finish the step and end the run">Stop</button>
  <button id="btn-attach" class="secondary" title="Attach to another run" hidden>Attach…</button>
  <button id="btn-run-script" class="secondary" title="Start a training script in a terminal with the chosen Python and attach to its run">Run training script…</button>
</section>
<main class="grid">
  <section class="panel wide" aria-labelledby="charts-title">
    <div class="panel-head">
      <h2 id="charts-title">Metrics</h2>
      <div class="tools">
        <label for="x-axis">x axis</label>
        <select id="x-axis"><option value="step">step</option><option value="epoch">epoch</option></select>
        <label><input id="smooth" type="checkbox" checked> smooth</label>
      </div>
    </div>
    <div id="charts" class="charts"></div>
  </section>
  <section class="panel" aria-labelledby="hist-title">
    <div class="panel-head">
      <h2 id="hist-title">Per-sample loss</h2>
      <div class="tools">
        <label for="hist-split">split</label>
        <select id="hist-split"><option value="train">train</option></select>
        <button id="hist-png" class="icon" title="Export PNG">PNG</button>
      </div>
    </div>
    <canvas id="hist" class="hist" role="img" aria-label="Histogram of per-sample losses"></canvas>
    <div id="hist-caption" class="muted small"></div>
    <ol id="hist-top" class="top-samples small" aria-label="Highest-loss samples"></ol>
  </section>
  <section class="panel" aria-labelledby="runtime-title">
    <div class="panel-head"><h2 id="runtime-title">Runtime</h2></div>
    <dl id="runtime" class="kv"></dl>
    <div id="gpu-list" class="gpus"></div>
    <div id="runtime-charts" class="charts"></div>
  </section>
  <section class="panel" aria-labelledby="receipts-title">
    <div class="panel-head"><h2 id="receipts-title">Commands</h2></div>
    <ol id="receipts" class="receipts" aria-live="polite"></ol>
  </section>
  <section id="lab-panel" class="panel wide" aria-labelledby="lab-title" aria-busy="false">
    <div class="panel-head">
      <h2 id="lab-title">Lab</h2>
      <div class="tools">
        <button id="lab-refresh" class="secondary" title="Read the trainer's loss histogram and latest regions again">Refresh</button>
        <button id="lab-score" title="Score every training sample with the current weights at the next step boundary">Score now</button>
        <label for="lab-k">k</label>
        <input id="lab-k" type="number" min="1" step="1" value="8" aria-label="Clusters (k)">
        <button id="lab-discover" title="Cluster the latest scoring pass and keep the high-loss clusters as regions">Find regions</button>
      </div>
    </div>
    <div id="lab-status" class="muted" role="status" aria-live="polite"></div>
    <div class="lab-row">
      <div class="lab-hist">
        <canvas id="lab-hist" class="hist" role="img" aria-label="Histogram of each training sample's latest loss"></canvas>
        <div id="lab-hist-caption" class="muted small"></div>
      </div>
      <div class="lab-regions">
        <table id="lab-regions" class="lab-table" aria-label="Error regions">
          <thead><tr><th>region</th><th>size</th><th>mean loss</th><th>× overall</th><th>accuracy</th><th>verdict</th><th>description</th></tr></thead>
          <tbody></tbody>
        </table>
        <div id="lab-regions-empty" class="muted small">No regions yet: <em>Score now</em>, then <em>Find regions</em>.</div>
      </div>
    </div>
    <div id="lab-region" class="lab-detail" hidden>
      <h3 id="lab-region-title"></h3>
      <div id="lab-region-verdict" class="verdict"></div>
      <p id="lab-region-text"></p>
      <dl id="lab-region-kv" class="kv"></dl>
      <div class="small">examples (click one for its loss trajectory): <span id="lab-examples"></span></div>
      <div class="tools">
        <label for="lab-format">export as</label>
        <select id="lab-format"><option value="parquet">parquet</option><option value="csv">csv</option><option value="json">json</option></select>
        <button id="lab-export" class="secondary" title="Export the region's samples (base indices, labels, predictions, losses) to a file you pick">Export slice…</button>
        <label for="lab-budget">budget</label>
        <input id="lab-budget" type="number" min="1" step="1" value="2000" aria-label="Fork budget (sample-gradients)">
        <button id="lab-fork" title="Train a specialist on this region for the budget, from the current weights (the run waits)">Fork</button>
      </div>
    </div>
    <div id="lab-sample" class="lab-detail" hidden>
      <h3 id="lab-sample-title"></h3>
      <div class="lab-row">
        <canvas id="lab-traj" role="img" aria-label="Loss trajectory"></canvas>
        <div><canvas id="lab-thumb" class="thumb" role="img" aria-label="The sample's input" hidden></canvas><div id="lab-thumb-note" class="muted small"></div></div>
      </div>
    </div>
    <div class="tools lab-actions">
      <label for="lab-extra">extra</label>
      <input id="lab-extra" type="number" min="0" step="1" value="2000" aria-label="Extra compute per resolution (sample-gradients)">
      <label for="lab-resolutions">resolutions</label>
      <input id="lab-resolutions" type="text" placeholder="all" aria-label="Resolutions to compare (comma-separated; empty: all)">
      <button id="lab-compare" title="Evaluate every resolution at the same extra compute, per slice">Compare</button>
      <button id="lab-recommend" title="The resolution to apply, chosen on validation, and why">Recommend</button>
      <button id="lab-apply" class="danger" hidden>Apply…</button>
      <span id="lab-apply-confirm" class="group picker" role="group" aria-label="Confirm apply" hidden>
        Apply <strong id="lab-apply-name"></strong> to the live run?
        <button id="lab-apply-yes" class="danger">Apply</button><button id="lab-apply-no" class="secondary">Cancel</button>
      </span>
      <button id="lab-lineage-refresh" class="secondary">Lineage</button>
    </div>
    <div id="lab-recommendation" role="status" aria-live="polite"></div>
    <table id="lab-compare-table" class="lab-table" aria-label="Resolutions compared per slice"></table>
    <div id="lab-compare-notes" class="muted small"></div>
    <svg id="lab-lineage" class="lineage" role="img" aria-label="Lineage of the lab's models" height="0"></svg>
    <div id="lab-lineage-note" class="muted small"></div>
    <ol id="lab-receipts" class="receipts" aria-label="Lab receipts" aria-live="polite"></ol>
  </section>
  <section id="health-panel" class="panel wide" aria-labelledby="health-title" aria-busy="false">
    <div class="panel-head">
      <h2 id="health-title">Health</h2>
      <div class="tools">
        <label for="health-check">checks</label>
        <select id="health-check">
          <option value="">all</option><option value="numerics">numerics</option><option value="gradients">gradients</option>
          <option value="activations">activations</option><option value="throughput">throughput</option>
          <option value="determinism">determinism</option><option value="configuration">configuration</option><option value="checkpoints">checkpoints</option>
        </select>
        <label><input id="health-info" type="checkbox" checked> notes</label>
        <button id="btn-health" title="Run the health checks at the next step boundary (H)">Run health checks</button>
      </div>
    </div>
    <div id="health-summary" class="muted" role="status" aria-live="polite">Not run yet. The checks hold the training loop only while they run and leave its numbers unchanged.</div>
    <ol id="health-findings" class="findings" aria-label="Health findings"></ol>
  </section>
  <section class="panel wide" aria-labelledby="logs-title">
    <div class="panel-head">
      <h2 id="logs-title">Logs</h2>
      <div class="tools">
        <label for="log-level">level</label>
        <select id="log-level">
          <option value="1">all</option><option value="2">info+</option><option value="3">warning+</option><option value="4">error+</option>
        </select>
        <label for="log-search" class="sr-only">Search logs</label>
        <input id="log-search" type="search" placeholder="Search logs" aria-label="Search logs">
        <span id="log-count" class="muted small"></span>
      </div>
    </div>
    <div id="logs" class="logs" tabindex="0" role="log" aria-label="Log lines"></div>
  </section>
</main>
<div id="toast" class="toast" role="status" aria-live="polite" hidden></div>
<script nonce="${nonce}" src="${esc(o.scriptUri)}"></script>
</body>
</html>`;
}

/** The compare page (an overlay of chosen runs): same CSP rules as the dashboard. */
export function compareHtml(o: PageOptions): string {
  const nonce = o.nonce ?? makeNonce();
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(contentSecurityPolicy(o.cspSource, nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" nonce="${nonce}" href="${esc(o.styleUri)}">
<title>${esc(o.title ?? "OnTheFly: compare runs")}</title>
</head>
<body>
<header class="top"><h1>${esc(o.title ?? "Compare runs")}</h1><div id="compare-caption" class="muted" role="status" aria-live="polite"></div></header>
<main id="compare-charts" class="charts" aria-label="Metrics of the chosen runs"></main>
<script nonce="${nonce}" src="${esc(o.scriptUri)}"></script>
</body>
</html>`;
}
