// Headless Debian Chromium through playwright-core (no bundled browser).
import { chromium } from "playwright-core";
import * as fs from "node:fs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run scripts/setup.sh (apt-get install chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/** A few of VS Code's theme variables (Dark Modern / Light Modern), enough for the page to look like it does in VS Code. */
export const THEMES = {
  dark: {
    bodyClass: "vscode-dark",
    vars: {
      "--vscode-font-family": "system-ui, -apple-system, 'Segoe UI', Ubuntu, sans-serif", "--vscode-font-size": "13px",
      "--vscode-editor-font-family": "'Droid Sans Mono', monospace", "--vscode-editor-font-size": "12px",
      "--vscode-foreground": "#cccccc", "--vscode-editor-background": "#1f1f1f", "--vscode-editor-foreground": "#cccccc",
      "--vscode-descriptionForeground": "#9d9d9d", "--vscode-editorWidget-background": "#202020",
      "--vscode-editorWidget-border": "#454545", "--vscode-focusBorder": "#0078d4",
      "--vscode-button-background": "#0078d4", "--vscode-button-foreground": "#ffffff", "--vscode-button-hoverBackground": "#026ec1",
      "--vscode-button-secondaryBackground": "#313131", "--vscode-button-secondaryForeground": "#cccccc",
      "--vscode-input-background": "#313131", "--vscode-input-foreground": "#cccccc", "--vscode-input-border": "#3c3c3c",
      "--vscode-dropdown-background": "#313131", "--vscode-dropdown-foreground": "#cccccc", "--vscode-dropdown-border": "#3c3c3c",
      "--vscode-badge-background": "#616161", "--vscode-badge-foreground": "#f8f8f8",
      "--vscode-charts-blue": "#3794ff", "--vscode-charts-red": "#f14c4c", "--vscode-charts-green": "#89d185",
      "--vscode-charts-orange": "#d18616", "--vscode-charts-purple": "#b180d7", "--vscode-charts-yellow": "#cca700",
      "--vscode-charts-lines": "rgba(204, 204, 204, 0.25)", "--vscode-progressBar-background": "#0078d4",
      "--vscode-terminal-background": "#181818", "--vscode-editorWarning-foreground": "#cca700", "--vscode-editorError-foreground": "#f14c4c",
      "--vscode-statusBarItem-errorBackground": "#c72e0f", "--vscode-statusBarItem-errorForeground": "#ffffff",
    },
  },
  light: {
    bodyClass: "vscode-light",
    vars: {
      "--vscode-font-family": "system-ui, -apple-system, 'Segoe UI', Ubuntu, sans-serif", "--vscode-font-size": "13px",
      "--vscode-editor-font-family": "'Droid Sans Mono', monospace", "--vscode-editor-font-size": "12px",
      "--vscode-foreground": "#3b3b3b", "--vscode-editor-background": "#ffffff", "--vscode-editor-foreground": "#3b3b3b",
      "--vscode-descriptionForeground": "#717171", "--vscode-editorWidget-background": "#f8f8f8",
      "--vscode-editorWidget-border": "#e5e5e5", "--vscode-focusBorder": "#005fb8",
      "--vscode-button-background": "#005fb8", "--vscode-button-foreground": "#ffffff", "--vscode-button-hoverBackground": "#0258a8",
      "--vscode-button-secondaryBackground": "#e5e5e5", "--vscode-button-secondaryForeground": "#3b3b3b",
      "--vscode-input-background": "#ffffff", "--vscode-input-foreground": "#3b3b3b", "--vscode-input-border": "#cecece",
      "--vscode-dropdown-background": "#ffffff", "--vscode-dropdown-foreground": "#3b3b3b", "--vscode-dropdown-border": "#cecece",
      "--vscode-badge-background": "#cccccc", "--vscode-badge-foreground": "#3b3b3b",
      "--vscode-charts-blue": "#1a85ff", "--vscode-charts-red": "#e51400", "--vscode-charts-green": "#388a34",
      "--vscode-charts-orange": "#d18616", "--vscode-charts-purple": "#652d90", "--vscode-charts-yellow": "#bf8803",
      "--vscode-charts-lines": "rgba(59, 59, 59, 0.2)", "--vscode-progressBar-background": "#005fb8",
      "--vscode-terminal-background": "#f8f8f8", "--vscode-editorWarning-foreground": "#bf8803", "--vscode-editorError-foreground": "#e51400",
      "--vscode-statusBarItem-errorBackground": "#c72e0f", "--vscode-statusBarItem-errorForeground": "#ffffff",
    },
  },
};
