// Hosts the real dashboard page (dist/webview.js, the host's HTML with its CSP) in Chromium, the way a
// VS Code webview does: acquireVsCodeApi() with postMessage/getState/setState, messages from the host as
// window "message" events, theme variables on <html>. The host side is a real RunSession.
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT } from "./util.mjs";
import { THEMES } from "./browser.mjs";

const ORIGIN = "http://otf.test";

export async function openDashboard(browser, session, { theme = "dark", viewport = { width: 1280, height: 1000 }, compare = false } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.stack || err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  const files = { "/webview.js": "application/javascript", "/webview.css": "text/css", "/compare.js": "application/javascript", "/compare.css": "text/css" };
  await page.route(`${ORIGIN}/**`, (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === "/index.html") {
      // compare: the compare page (an overlay of runs) instead of the dashboard; the test posts its data.
      const html = compare
        ? core.compareHtml({ cspSource: ORIGIN, scriptUri: `${ORIGIN}/compare.js`, styleUri: `${ORIGIN}/compare.css`, title: "Compare runs" })
        : core.dashboardHtml({ cspSource: ORIGIN, scriptUri: `${ORIGIN}/webview.js`, styleUri: `${ORIGIN}/webview.css`, title: "OnTheFly" });
      return route.fulfill({ contentType: "text/html", body: html });
    }
    if (files[url.pathname]) {
      return route.fulfill({ contentType: files[url.pathname], body: fs.readFileSync(path.join(VSC_ROOT, "dist", url.pathname)) });
    }
    return route.fulfill({ status: 404, body: "" });
  });
  const sink = {
    post: (message) => page.evaluate((m) => window.dispatchEvent(new MessageEvent("message", { data: m })), message),
  };
  let current = session; // the host's attached session (switchTo changes it, as the extension's attach does)
  current?.addView(sink);
  const toHost = []; // what the host received from the page, in order
  await page.exposeFunction("__otfToHost", (message) => {
    toHost.push(message);
    return current?.handleViewMessage(sink, message);
  });
  await page.addInitScript(({ themes, initial }) => {
    window.__otfSent = [];
    window.__otfReceived = [];
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    window.addEventListener("message", (e) => {
      const m = e.data;
      window.__otfReceived.push(m.type === "delta" ? { type: "delta", reset: m.delta.reset, lastSeq: m.delta.lastSeq } : { type: m.type });
    });
    window.acquireVsCodeApi = () => ({
      postMessage: (m) => {
        window.__otfSent.push(m.type === "exportPng" ? { type: m.type, name: m.name } : m);
        window.__otfToHost(m);
      },
      getState: () => JSON.parse(sessionStorage.getItem("otf-state") || "null") ?? undefined,
      setState: (s) => sessionStorage.setItem("otf-state", JSON.stringify(s)),
    });
    window.__otfSetTheme = (name) => {
      const t = themes[name];
      if (!document.documentElement) return;
      for (const [k, v] of Object.entries(t.vars)) document.documentElement.style.setProperty(k, v);
      if (document.body) document.body.className = t.bodyClass;
    };
    const name = sessionStorage.getItem("otf-theme") || initial;
    window.__otfSetTheme(name);
    document.addEventListener("DOMContentLoaded", () => window.__otfSetTheme(name));
  }, { themes: THEMES, initial: theme });
  await page.goto(`${ORIGIN}/index.html`);
  return {
    page, context, sink, problems, toHost,
    async setTheme(name) {
      await page.evaluate((n) => {
        sessionStorage.setItem("otf-theme", n);
        window.__otfSetTheme(n);
      }, name);
    },
    /** Attaches the page to another session and reloads it, as the extension does when it attaches elsewhere. */
    async switchTo(next) {
      current.removeView(sink);
      current = next;
      next.addView(sink);
      await page.reload();
    },
    async close() {
      current?.removeView(sink);
      await context.close();
    },
  };
}
