// The one module that imports `vscode`: commands, status bar, the dashboard panel and dialogs.
// Everything else (discovery, client, store, webview protocol) is plain TypeScript in ./core.
import * as vscode from "vscode";
import * as os from "node:os";
import * as path from "node:path";
import { describeOutcome, type CommandName } from "./core/client.js";
import { listRuns, parseAddress, runAtAddress, runLabel, runtimeDir, type RunInfo } from "./core/discovery.js";
import { waitForLaunchedRun } from "./core/launch.js";
import { compareSources, type CompareSource } from "./core/compare.js";
import { listStored, storedIsLive, storedLabel, type StoredReader, type StoredRun, type StoredSeries } from "./core/stored.js";
import { compareHtml, dashboardHtml } from "./core/html.js";
import type { CompareMessage, HealthView, HostToView } from "./core/protocol.js";
import { RunSession, sessionTarget, type SessionTarget, type ViewSink } from "./core/session.js";

const VIEW_TYPE = "onthefly.dashboard";
/** A further run in a tab of its own (Open Run in New Tab…), beside the main dashboard. */
const TAB_VIEW_TYPE = "onthefly.run";

export function activate(context: vscode.ExtensionContext): void {
  const ext = new Extension(context);
  context.subscriptions.push(ext);
  const cmd = (id: string, fn: () => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, async () => {
      try {
        await fn();
      } catch (err) {
        void vscode.window.showErrorMessage(`OnTheFly: ${(err as Error).message ?? err}`);
      }
    }));
  cmd("onthefly.showDashboard", () => ext.showDashboard());
  cmd("onthefly.attach", () => ext.pickAndAttach());
  cmd("onthefly.pause", () => ext.sendCommand("pause"));
  cmd("onthefly.resume", () => ext.sendCommand("resume"));
  cmd("onthefly.stop", () => ext.sendCommand("stop"));
  cmd("onthefly.runTest", () => ext.sendCommand("runTest"));
  cmd("onthefly.setLearningRate", () => ext.setLearningRate());
  cmd("onthefly.runHealthChecks", () => ext.runHealthChecks());
  cmd("onthefly.checkpoint", () => ext.sendCommand("checkpoint"));
  cmd("onthefly.exportSession", () => ext.exportSession());
  cmd("onthefly.importSession", () => ext.importSession());
  cmd("onthefly.restoreCheckpoint", () => ext.restoreCheckpoint());
  cmd("onthefly.runTrainingScript", () => ext.runTrainingScript());
  cmd("onthefly.openRunInNewTab", () => ext.openRunInNewTab());
  cmd("onthefly.compareRuns", () => ext.compareRuns());
  context.subscriptions.push(vscode.window.registerWebviewPanelSerializer(VIEW_TYPE, {
    deserializeWebviewPanel: async (panel, state) => ext.adoptPanel(panel, state as { runId?: string } | undefined),
  }));
  context.subscriptions.push(vscode.window.registerWebviewPanelSerializer(TAB_VIEW_TYPE, {
    // The page's saved state names its run: reopen the tab on it while it still runs, else close it.
    deserializeWebviewPanel: async (panel, state) => ext.restoreTab(panel, (state as { model?: { run?: { runId?: string } } } | undefined)?.model?.run?.runId),
  }));
}

export function deactivate(): void {}

class Extension implements vscode.Disposable {
  private session?: RunSession;
  private panel?: vscode.WebviewPanel;
  private sink?: ViewSink;
  private readonly status: vscode.StatusBarItem;
  private readonly output: vscode.OutputChannel;
  private statusText = "";
  private discoveryTimer?: ReturnType<typeof setInterval>;
  private unsubscribe?: () => void;
  /** Sessions of the runs open in tabs of their own (each disposed with its tab). */
  private readonly tabs = new Set<RunSession>();

  constructor(private readonly context: vscode.ExtensionContext) {
    this.status = vscode.window.createStatusBarItem("onthefly.status", vscode.StatusBarAlignment.Left, 50);
    this.status.name = "OnTheFly";
    this.status.command = "onthefly.showDashboard";
    this.output = vscode.window.createOutputChannel("OnTheFly");
  }

  dispose(): void {
    clearInterval(this.discoveryTimer);
    void this.session?.dispose();
    for (const tab of this.tabs) void tab.dispose();
    this.tabs.clear();
    this.status.dispose();
    this.output.dispose();
  }

  private discoveryDir(): string {
    const override = vscode.workspace.getConfiguration("onthefly").get<string>("runtimeDir", "");
    return runtimeDir(process.env, override);
  }

  // -- attaching -------------------------------------------------------------------------------

  private attach(target: SessionTarget): RunSession {
    void this.session?.dispose();
    this.unsubscribe?.();
    clearInterval(this.discoveryTimer);
    this.discoveryTimer = undefined;
    const session = new RunSession(target, {
      savePng: (name, png) => this.savePng(name, png),
      saveSlice: (name, format, data) => this.saveSlice(name, format, data),
      pickExportPath: (suggested) => this.pickExportPath(suggested),
      pickImportPath: () => this.pickImportPath(),
      onAttachRequest: (runId) => void (runId ? this.attachToRun(runId) : this.pickAndAttach()),
      discoveryDir: () => this.discoveryDir(),
      onSuccessor: (run) => void this.offerSuccessor(session, run),
      onRunScriptRequest: () => void this.runTrainingScript(),
    });
    this.session = session;
    this.unsubscribe = session.store.onChange(() => this.updateStatusBar());
    session.start();
    this.output.appendLine(`attached to ${target.label} at ${target.host}:${target.port}`);
    this.updateStatusBar();
    if (this.panel) this.renderPanel(this.panel); // the page reloads and says "ready" to the new session
    return session;
  }

  /** Attaches to the running trainer with this run id (a successor the dashboard offered). */
  private attachToRun(runId: string): void {
    const run = listRuns(this.discoveryDir()).find((r) => r.runId === runId);
    if (!run) {
      void vscode.window.showErrorMessage(`OnTheFly: run ${runId} is no longer running (its discovery file is gone)`);
      return;
    }
    this.attach(sessionTarget(run));
  }

  /**
   * The attached run ended and a new run of its project started: switch to it (setting
   * onthefly.followNewRuns = "switch") or offer to ("ask", the default; the dashboard offers it too).
   */
  private async offerSuccessor(ended: RunSession, run: RunInfo): Promise<void> {
    if (this.session !== ended) return;
    const mode = vscode.workspace.getConfiguration("onthefly").get<string>("followNewRuns", "ask");
    if (mode === "off") return;
    if (mode === "switch") {
      this.output.appendLine(`${ended.target.label} ended; following the new run ${runLabel(run)}`);
      this.attach(sessionTarget(run));
      return;
    }
    const pick = await vscode.window.showInformationMessage(
      `OnTheFly: ${ended.target.label} has ended and ${runLabel(run)} started. Switch the dashboard to it?`, "Switch", "Always Switch");
    if (this.session !== ended) return;
    if (pick === "Always Switch") await vscode.workspace.getConfiguration("onthefly").update("followNewRuns", "switch", vscode.ConfigurationTarget.Global);
    if (pick) this.attach(sessionTarget(run));
  }

  /** The attached session; attaches on its own when exactly one run is running, else asks. */
  private async ensureSession(): Promise<RunSession | undefined> {
    if (this.session) return this.session;
    const runs = listRuns(this.discoveryDir());
    if (runs.length === 1) return this.attach(sessionTarget(runs[0]));
    return this.pickAndAttach(runs);
  }

  async pickAndAttach(runs = listRuns(this.discoveryDir())): Promise<RunSession | undefined> {
    type Item = vscode.QuickPickItem & { run?: RunInfo };
    const items: Item[] = runs.map((r) => ({
      label: runLabel(r),
      description: `${r.host}:${r.port}`,
      detail: `pid ${r.pid} · started ${new Date(r.startedAt * 1000).toLocaleTimeString()}`,
      run: r,
    }));
    items.push({ label: "$(plug) Enter an address…", description: "HOST:PORT and the run's token" });
    const pick = await vscode.window.showQuickPick(items, {
      title: "OnTheFly: Attach to Run",
      placeHolder: runs.length ? "Pick a running trainer" : `No running trainer found in ${this.discoveryDir()}`,
    });
    if (!pick) return undefined;
    if (pick.run) return this.showAfterAttach(this.attach(sessionTarget(pick.run)));
    const text = await vscode.window.showInputBox({
      title: "OnTheFly: Attach to Address", prompt: "Address of the trainer's API", placeHolder: "127.0.0.1:47621",
      validateInput: (v) => {
        try {
          parseAddress(v);
          return undefined;
        } catch (err) {
          return (err as Error).message;
        }
      },
    });
    if (!text) return undefined;
    const { host, port } = parseAddress(text);
    const known = runAtAddress(listRuns(this.discoveryDir()), host, port);
    if (known) return this.showAfterAttach(this.attach(sessionTarget(known)));
    const token = await vscode.window.showInputBox({
      title: "OnTheFly: Token", prompt: `The run's token (\`onthefly ps --tokens\` lists it)`, password: true, ignoreFocusOut: true,
    });
    if (!token) return undefined;
    return this.showAfterAttach(this.attach({ host, port, token, label: `${host}:${port}`, runId: "" }));
  }

  private showAfterAttach(session: RunSession): RunSession {
    if (!this.panel) void this.showDashboard();
    return session;
  }

  // -- commands --------------------------------------------------------------------------------

  async sendCommand(command: CommandName, arg?: number | string, known?: RunSession): Promise<void> {
    const session = known ?? (await this.ensureSession());
    if (!session) return;
    const { outcome } = await session.command(command, arg);
    const line = `OnTheFly ${session.target.label}: ${describeOutcome(outcome)}`;
    this.output.appendLine(line);
    if (outcome.status === "applied" || outcome.status === "accepted") void vscode.window.showInformationMessage(line);
    else void vscode.window.showErrorMessage(line);
  }

  async setLearningRate(): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const current = session.store.statusView.hyperparameters[0]?.values.lr;
    const text = await vscode.window.showInputBox({
      title: `OnTheFly: Set Learning Rate (${session.target.label})`,
      prompt: current !== undefined ? `Current: ${current}` : "New learning rate for every param group",
      value: current !== undefined ? String(current) : "",
      validateInput: (v) => (Number.isFinite(Number(v)) && v.trim() !== "" && Number(v) >= 0 ? undefined : "Enter a number ≥ 0, e.g. 0.001"),
    });
    if (text === undefined) return;
    await this.sendCommand("setLr", Number(text));
  }

  async exportSession(): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const file = await this.pickExportPath(session.suggestedBundleName());
    if (file) await this.sendCommand("exportSession", file, session);
  }

  async importSession(): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const file = await this.pickImportPath();
    if (file) await this.sendCommand("importSession", file, session);
  }

  /** Picks a checkpoint of the attached run's ring (newest first) and restores it. */
  async restoreCheckpoint(): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const list = await session.client.listCheckpoints();
    if (!list.length) throw new Error(`${session.target.label} has no checkpoints yet: take one with OnTheFly: Checkpoint (or pause the run)`);
    const pick = await vscode.window.showQuickPick([...list].reverse().map((c) => ({
      label: `step ${c.step}`, description: `${c.reason}${c.label ? ` “${c.label}”` : ""}`,
      detail: `${c.id} · ${new Date(c.createdAt).toLocaleString()}`, id: c.id,
    })), { title: `OnTheFly: Restore a checkpoint of ${session.target.label}`, placeHolder: "The run continues from the state you pick" });
    if (pick) await this.sendCommand("restoreCheckpoint", pick.id, session);
  }

  /**
   * "Run training script…": starts a Python script in a VS Code terminal whose process is the
   * interpreter itself (the Python extension's interpreter, else the onthefly.pythonPath setting, else
   * python3), then attaches the dashboard to the run it hosts once it is up. A script that ends before
   * that is reported (here and in the page); the attached run, if any, is left as it was.
   */
  async runTrainingScript(): Promise<void> {
    const script = await this.pickScript();
    if (!script) return;
    const python = await this.pythonFor(vscode.Uri.file(script));
    const dir = this.discoveryDir();
    const name = `OnTheFly: ${path.basename(script)}`;
    const terminal = vscode.window.createTerminal({
      name, shellPath: python, shellArgs: [script], cwd: path.dirname(script),
      env: { ONTHEFLY_RUNTIME_DIR: dir }, // the trainer announces itself where we look
    });
    terminal.show(true);
    this.output.appendLine(`started ${python} ${script} in terminal "${name}"`);
    const outcome = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `OnTheFly: waiting for ${path.basename(script)} to start its run…` },
      () => waitForLaunchedRun({
        dir, pid: () => Promise.resolve(terminal.processId), exited: () => (terminal.exitStatus ? { code: terminal.exitStatus.code } : null),
      }),
    );
    if (outcome.kind === "up") {
      this.showAfterAttach(this.attach(sessionTarget(outcome.run)));
      return;
    }
    const why = outcome.kind === "exited"
      ? `${path.basename(script)} exited${outcome.code !== undefined ? ` with code ${outcome.code}` : ""} before a run came up: see the terminal "${name}"`
      : `${path.basename(script)} has not started an OnTheFly run after 2 minutes (does it train with onthefly's Trainer?): see the terminal "${name}"`;
    this.output.appendLine(why);
    void this.sink?.post({ type: "toast", text: why, error: true });
    void vscode.window.showErrorMessage(`OnTheFly: ${why}`);
  }

  private async pickScript(): Promise<string | undefined> {
    const active = vscode.window.activeTextEditor?.document;
    const items: (vscode.QuickPickItem & { file?: string })[] = [];
    if (active?.uri.scheme === "file" && active.languageId === "python") {
      items.push({ label: path.basename(active.uri.fsPath), description: "the active editor", file: active.uri.fsPath });
    }
    items.push({ label: "$(folder-opened) Choose a script…" });
    const pick = items.length > 1 ? await vscode.window.showQuickPick(items, { title: "OnTheFly: Run Training Script" }) : items[0];
    if (!pick) return undefined;
    if (pick.file) return pick.file;
    const uris = await vscode.window.showOpenDialog({
      canSelectMany: false, filters: { "Python script": ["py"] }, title: "The training script to run", openLabel: "Run",
      defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
    });
    if (!uris?.[0]) return undefined;
    if (uris[0].scheme !== "file") throw new Error(`pick a local script (not ${uris[0].scheme}:)`);
    return uris[0].fsPath;
  }

  /** The Python extension's interpreter for `resource` when it is installed, else the setting, else python3. */
  private async pythonFor(resource: vscode.Uri): Promise<string> {
    const configured = vscode.workspace.getConfiguration("onthefly").get<string>("pythonPath", "");
    const ext = vscode.extensions.getExtension("ms-python.python");
    if (ext) {
      try {
        const api = (ext.isActive ? ext.exports : await ext.activate()) as {
          environments?: { getActiveEnvironmentPath(r?: vscode.Uri): { path: string } };
          settings?: { getExecutionDetails(r?: vscode.Uri): { execCommand?: string[] } };
        };
        const found = api.environments?.getActiveEnvironmentPath(resource)?.path ?? api.settings?.getExecutionDetails(resource)?.execCommand?.[0];
        if (found) return found;
      } catch (err) {
        this.output.appendLine(`the Python extension did not name an interpreter (${(err as Error).message}); using ${configured || "python3"}`);
      }
    }
    return configured || "python3";
  }

  /** Runs every health check on the attached run; the findings go to the dashboard's Health panel and the output channel. */
  async runHealthChecks(): Promise<void> {
    const session = await this.ensureSession();
    if (!session) return;
    const report = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `OnTheFly: running health checks on ${session.target.label}…` },
      () => session.health(),
    );
    this.logHealth(session.target.label, report);
    const line = `OnTheFly ${session.target.label}: ${report.text}`;
    const worst = report.status !== "applied" || report.findings.some((f) => f.severity === "error") ? "error"
      : report.findings.some((f) => f.severity === "warning") ? "warning" : "info";
    const top = report.findings.find((f) => f.severity === worst);
    const message = top && worst !== "info" ? `${line} — ${top.check}: ${top.message}` : line;
    const actions = ["Show in Dashboard", "Show Details"];
    const shown = worst === "error" ? vscode.window.showErrorMessage(message, ...actions)
      : worst === "warning" ? vscode.window.showWarningMessage(message, ...actions)
      : vscode.window.showInformationMessage(message, ...actions);
    // Not awaited: the command is done once the report is in; the notification waits for the person.
    void shown.then((pick) => {
      if (pick === "Show in Dashboard") void this.showDashboard();
      if (pick === "Show Details") this.output.show(true);
    });
  }

  private logHealth(label: string, r: HealthView): void {
    this.output.appendLine(`OnTheFly ${label}: ${r.text}`);
    for (const f of r.findings) {
      this.output.appendLine(`  ${f.severity.toUpperCase().padEnd(7)} ${f.check.padEnd(13)} ${f.subject ? `${f.subject}: ` : ""}${f.message}`);
      const ev = Object.entries(f.evidence).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${Number(v.toPrecision(4))}`);
      if (ev.length) this.output.appendLine(`          ${ev.join("  ")}`);
    }
  }

  /** Where to write an exported bundle: a save dialog (the trainer writes the file, so its machine must see the path). */
  private async pickExportPath(suggested: string): Promise<string | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(os.homedir());
    const uri = await vscode.window.showSaveDialog({
      defaultUri: vscode.Uri.joinPath(folder, suggested),
      filters: { "OnTheFly session bundle": ["onthefly"] },
      title: "Export the session to a bundle (written by the trainer)",
      saveLabel: "Export",
    });
    if (!uri) return undefined;
    if (uri.scheme !== "file") throw new Error(`the trainer writes the bundle itself, so pick a local file (not ${uri.scheme}:)`);
    return path.resolve(uri.fsPath);
  }

  /** Which bundle to import: an open dialog (the trainer reads the file, so its machine must see the path). */
  private async pickImportPath(): Promise<string | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(os.homedir());
    const uris = await vscode.window.showOpenDialog({
      defaultUri: folder, canSelectMany: false, canSelectFolders: false,
      filters: { "OnTheFly session bundle": ["onthefly"], "All files": ["*"] },
      title: "Import a session bundle into the attached run (read by the trainer)", openLabel: "Import",
    });
    const uri = uris?.[0];
    if (!uri) return undefined;
    if (uri.scheme !== "file") throw new Error(`the trainer reads the bundle itself, so pick a local file (not ${uri.scheme}:)`);
    return path.resolve(uri.fsPath);
  }

  // -- more runs, a tab each ---------------------------------------------------------------------

  /** Opens a running trainer in a tab of its own beside the dashboard (several runs side by side). */
  async openRunInNewTab(): Promise<void> {
    const runs = listRuns(this.discoveryDir());
    if (!runs.length) throw new Error(`no running trainer found in ${this.discoveryDir()}`);
    const pick = await vscode.window.showQuickPick(runs.map((r) => ({
      label: runLabel(r), description: `${r.host}:${r.port}`, detail: `pid ${r.pid} · started ${new Date(r.startedAt * 1000).toLocaleTimeString()}`, run: r,
    })), { title: "OnTheFly: Open Run in New Tab", placeHolder: "Pick a running trainer" });
    if (!pick) return;
    const panel = vscode.window.createWebviewPanel(TAB_VIEW_TYPE, `OnTheFly: ${runLabel(pick.run)}`, vscode.ViewColumn.Beside, {
      enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, "dist")], retainContextWhenHidden: false,
    });
    this.bindTab(panel, pick.run);
  }

  restoreTab(panel: vscode.WebviewPanel, runId: string | undefined): void {
    const run = runId ? listRuns(this.discoveryDir()).find((r) => r.runId === runId) : undefined;
    if (run) this.bindTab(panel, run);
    else panel.dispose(); // that run has ended since: nothing to show live
  }

  /** One run's session bound to one tab: its page talks to that session only; closing the tab ends it. */
  private bindTab(panel: vscode.WebviewPanel, run: RunInfo): void {
    panel.webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, "dist")] };
    const session = new RunSession(sessionTarget(run), {
      savePng: (name, png) => this.savePng(name, png),
      saveSlice: (name, format, data) => this.saveSlice(name, format, data),
      pickExportPath: (suggested) => this.pickExportPath(suggested),
      pickImportPath: () => this.pickImportPath(),
      onAttachRequest: (runId) => void (runId ? this.attachToRun(runId) : this.pickAndAttach()),
      onRunScriptRequest: () => void this.runTrainingScript(),
    });
    this.tabs.add(session);
    const sink: ViewSink = { post: (m: HostToView) => panel.webview.postMessage(m) };
    session.addView(sink);
    panel.webview.onDidReceiveMessage((m) => void session.handleViewMessage(sink, m));
    panel.onDidChangeViewState(() => {
      if (!panel.visible) session.removeView(sink);
      else session.addView(sink);
    });
    panel.onDidDispose(() => {
      this.tabs.delete(session);
      void session.dispose();
    });
    session.start();
    const dist = vscode.Uri.joinPath(this.context.extensionUri, "dist");
    panel.title = `OnTheFly: ${session.target.label}`;
    panel.webview.html = dashboardHtml({
      cspSource: panel.webview.cspSource,
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "webview.js")).toString(),
      styleUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "webview.css")).toString(),
      title: panel.title,
    });
    this.output.appendLine(`opened ${session.target.label} at ${session.target.host}:${session.target.port} in a tab of its own`);
  }

  /** How to read the stores on disk: the interpreter of Run Training Script…, from the first workspace folder. */
  private async storedReader(): Promise<StoredReader> {
    const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === "file")?.uri;
    const cfg = vscode.workspace.getConfiguration("onthefly");
    return {
      python: await this.pythonFor(folder ?? vscode.Uri.file(os.homedir())), cwd: folder?.fsPath ?? os.homedir(),
      stores: cfg.get<string[]>("sessionStores", []), trackingRoots: cfg.get<string[]>("trackingStores", []),
    };
  }

  /**
   * An overlay of chosen runs: running trainers, finished sessions in the session store and tracked
   * experiments in the local tracking store, loss and validation loss of each on one step axis. Live
   * runs are read over their API and refreshed every few seconds while the tab is open; stored ones are
   * read from disk by `onthefly stored` with the chosen interpreter (no run needs to be live).
   */
  async compareRuns(): Promise<void> {
    const runs = listRuns(this.discoveryDir());
    const reader = await this.storedReader();
    let stored: StoredRun[] = [];
    let storedProblem = "";
    try {
      stored = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: "OnTheFly: reading the stores…" },
        () => listStored(reader));
    } catch (err) {
      storedProblem = (err as Error).message;
      this.output.appendLine(`compare: stored runs not listed: ${storedProblem}`);
    }
    const liveIds = new Set(runs.map((r) => r.runId));
    // A session whose run is live is offered as the live run (it is the same run, and fresher).
    const past = stored.filter((s) => !(s.state === "running" && (s.kind === "session" || liveIds.has(s.runId ?? ""))));
    type Item = vscode.QuickPickItem & { source?: CompareSource };
    const when = (t?: number) => (t ? new Date(t * 1000).toLocaleString() : "");
    const items: Item[] = [
      ...(runs.length ? [{ label: "Running", kind: vscode.QuickPickItemKind.Separator } as Item] : []),
      ...runs.map((r): Item => ({ label: runLabel(r), description: `${r.host}:${r.port}`, picked: true, source: { kind: "live", target: sessionTarget(r) } })),
      ...(past.some((s) => s.kind === "session") ? [{ label: "Sessions in the store", kind: vscode.QuickPickItemKind.Separator } as Item] : []),
      ...past.filter((s) => s.kind === "session").reverse().map((s): Item => ({
        label: storedLabel(s), description: `${s.state} · last step ${s.lastStep ?? "?"}`, detail: `started ${when(s.when)} · ${s.where}`,
        source: { kind: "stored", run: s },
      })),
      ...(past.some((s) => s.kind === "experiment") ? [{ label: "Tracked experiments", kind: vscode.QuickPickItemKind.Separator } as Item] : []),
      ...past.filter((s) => s.kind === "experiment").map((s): Item => ({
        label: s.id, description: s.state, detail: `updated ${when(s.when)} · ${s.where}`, source: { kind: "stored", run: s },
      })),
    ];
    if (!items.some((i) => i.source)) {
      throw new Error(`nothing to compare: no running trainer in ${this.discoveryDir()} and no stored session or experiment` +
        (storedProblem ? ` (${storedProblem})` : ` in the stores under ${reader.cwd}`));
    }
    const picks = await vscode.window.showQuickPick(items, {
      title: "OnTheFly: Compare Runs", placeHolder: "The runs to overlay (running, finished sessions, tracked experiments)", canPickMany: true,
    });
    const sources = (picks ?? []).flatMap((p) => (p.source ? [p.source] : []));
    if (!sources.length) return;
    const labels = sources.map((s) => (s.kind === "live" ? s.target.label : storedLabel(s.run)));
    const dist = vscode.Uri.joinPath(this.context.extensionUri, "dist");
    const panel = vscode.window.createWebviewPanel("onthefly.compare", "OnTheFly: compare runs", vscode.ViewColumn.Active, {
      enableScripts: true, localResourceRoots: [dist],
    });
    panel.webview.html = compareHtml({
      cspSource: panel.webview.cspSource,
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "compare.js")).toString(),
      styleUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "compare.css")).toString(),
      title: `Compare: ${labels.join(" · ")}`,
    });
    const cache = new Map<string, StoredSeries>();
    let busy = false;
    let again = false; // a request (a reloaded page's "ready") came while one was being read: read once more
    const send = async () => {
      if (!panel.visible) return;
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          await panel.webview.postMessage({ type: "compare", view: await compareSources(sources, undefined, undefined, reader, cache) } satisfies CompareMessage);
        } while (again && panel.visible);
      } finally {
        busy = false;
      }
    };
    panel.webview.onDidReceiveMessage((m) => void ((m as { type?: string })?.type === "ready" && send()));
    // Only live runs change; with none chosen there is nothing to refresh.
    const timer = sources.some((s) => s.kind === "live" || storedIsLive(s.run)) ? setInterval(() => void send(), 5_000) : undefined;
    panel.onDidDispose(() => clearInterval(timer));
  }

  // -- dashboard -------------------------------------------------------------------------------

  async showDashboard(): Promise<void> {
    if (this.panel) {
      this.panel.reveal();
    } else {
      const panel = vscode.window.createWebviewPanel(VIEW_TYPE, "OnTheFly", vscode.ViewColumn.Active, {
        enableScripts: true,
        localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, "dist")],
        // Hidden panels are torn down; the page restores its charts from its saved state when shown again.
        retainContextWhenHidden: false,
      });
      this.adoptPanel(panel, undefined);
    }
    if (!this.session) {
      const runs = listRuns(this.discoveryDir());
      if (runs.length === 1) this.attach(sessionTarget(runs[0]));
      else if (runs.length > 1) void this.pickAndAttach(runs);
      else this.waitForRuns();
    }
  }

  adoptPanel(panel: vscode.WebviewPanel, state: { runId?: string } | undefined): void {
    this.panel = panel;
    panel.webview.options = {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, "dist")],
    };
    const sink: ViewSink = { post: (m: HostToView) => panel.webview.postMessage(m) };
    this.sink = sink;
    panel.webview.onDidReceiveMessage((m) => {
      if (this.session) void this.session.handleViewMessage(sink, m);
      else if ((m as { type?: string })?.type === "ready") this.postDetached();
      else if ((m as { type?: string })?.type === "attach") void this.pickAndAttach();
      else if ((m as { type?: string })?.type === "runScript") void this.runTrainingScript();
    });
    panel.onDidChangeViewState(() => {
      // A hidden page is torn down: stop sending until it says "ready" again.
      if (!panel.visible) this.session?.removeView(sink);
    });
    panel.onDidDispose(() => {
      this.session?.removeView(sink);
      if (this.panel === panel) this.panel = undefined;
      clearInterval(this.discoveryTimer);
      this.discoveryTimer = undefined;
    });
    this.renderPanel(panel);
    if (!this.session && state?.runId) {
      const run = listRuns(this.discoveryDir()).find((r) => r.runId === state.runId);
      if (run) this.attach(sessionTarget(run));
    }
  }

  private renderPanel(panel: vscode.WebviewPanel): void {
    const dist = vscode.Uri.joinPath(this.context.extensionUri, "dist");
    panel.title = this.session ? `OnTheFly: ${this.session.target.label}` : "OnTheFly";
    panel.webview.html = dashboardHtml({
      cspSource: panel.webview.cspSource,
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "webview.js")).toString(),
      styleUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, "webview.css")).toString(),
      title: panel.title,
    });
  }

  private postDetached(): void {
    const dir = this.discoveryDir();
    void this.sink?.post({
      type: "delta",
      delta: {
        gen: -1, reset: false, lastSeq: 0, series: {}, logs: [],
        connection: { state: "detached", detail: `No running trainer found in ${dir}; waiting for one to start.` },
      },
    });
  }

  /** While the dashboard is open and detached, attach to the first trainer that starts. */
  private waitForRuns(): void {
    if (this.discoveryTimer) return;
    this.discoveryTimer = setInterval(() => {
      if (this.session || !this.panel) {
        clearInterval(this.discoveryTimer);
        this.discoveryTimer = undefined;
        return;
      }
      const runs = listRuns(this.discoveryDir());
      if (runs.length > 0) this.attach(sessionTarget(runs[0]));
    }, 1500);
  }

  /** Writes a slice exported from the Lab panel to the file the person picks (the trainer never writes it). */
  private async saveSlice(name: string, format: string, data: Uint8Array): Promise<string | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const filters: Record<string, string[]> = { parquet: { "Apache Parquet": ["parquet"] }, csv: { CSV: ["csv"] }, json: { JSON: ["json"] } }[format]
      ?? {};
    const uri = await vscode.window.showSaveDialog({
      defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined, filters, title: `Export slice as ${format}`,
    });
    if (!uri) return undefined;
    await vscode.workspace.fs.writeFile(uri, data);
    return uri.fsPath;
  }

  private async savePng(name: string, png: Uint8Array): Promise<string | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const uri = await vscode.window.showSaveDialog({
      defaultUri: folder ? vscode.Uri.joinPath(folder, `${name}.png`) : undefined,
      filters: { "PNG image": ["png"] },
      title: "Export chart as PNG",
    });
    if (!uri) return undefined;
    await vscode.workspace.fs.writeFile(uri, png);
    return uri.fsPath;
  }

  private updateStatusBar(): void {
    const s = this.session;
    if (!s) {
      this.status.hide();
      return;
    }
    const st = s.store.statusView;
    const conn = s.store.connectionView.state;
    const state = conn === "reconnecting" || conn === "failed" ? conn : st.state;
    const icon = { running: "$(pulse)", paused: "$(debug-pause)", testing: "$(beaker)", finished: "$(check)", failed: "$(error)" }[state] ?? "$(plug)";
    const total = st.totalSteps ? `/${st.totalSteps}` : "";
    const text = `${icon} ${s.target.label}: ${state} · step ${st.step}${total}`;
    if (text !== this.statusText) {
      this.statusText = text;
      this.status.text = text;
      this.status.tooltip = `OnTheFly — ${s.target.label} at ${s.target.host}:${s.target.port}\nClick to show the dashboard`;
      this.status.show();
    }
  }
}
