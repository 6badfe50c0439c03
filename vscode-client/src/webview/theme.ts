// Colors and fonts from VS Code's theme variables, so charts follow light, dark and high-contrast themes.

export interface Theme {
  background: string;
  foreground: string;
  axis: string;
  grid: string;
  font: string;
  fontFamily: string;
  colors: { blue: string; red: string; green: string; orange: string; purple: string; yellow: string };
}

export function readTheme(root: HTMLElement = document.body): Theme {
  const css = getComputedStyle(root);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  const dark = !document.body.classList.contains("vscode-light");
  const fontFamily = v("--vscode-font-family", "system-ui, sans-serif");
  const size = v("--vscode-font-size", "12px");
  return {
    background: v("--vscode-editor-background", dark ? "#1e1e1e" : "#ffffff"),
    foreground: v("--vscode-editor-foreground", dark ? "#cccccc" : "#333333"),
    axis: v("--vscode-descriptionForeground", dark ? "#9d9d9d" : "#717171"),
    grid: v("--vscode-charts-lines", dark ? "rgba(128,128,128,0.25)" : "rgba(0,0,0,0.12)"),
    font: `${parseInt(size, 10) - 1 || 11}px ${fontFamily}`,
    fontFamily,
    colors: {
      blue: v("--vscode-charts-blue", "#3794ff"),
      red: v("--vscode-charts-red", "#f14c4c"),
      green: v("--vscode-charts-green", "#89d185"),
      orange: v("--vscode-charts-orange", "#d18616"),
      purple: v("--vscode-charts-purple", "#b180d7"),
      yellow: v("--vscode-charts-yellow", "#cca700"),
    },
  };
}

/** `color` (hex or rgb) with alpha `a`, for translucent bands. */
export function withAlpha(color: string, a: number): string {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})([0-9a-f]{2})?$/i.exec(color);
  if (hex) {
    let h = hex[1];
    if (h.length === 3) h = h.split("").map((c) => c + c).join("");
    const n = parseInt(h, 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
  }
  const rgb = /^rgba?\(([^)]+)\)$/.exec(color);
  if (rgb) {
    const [r, g, b] = rgb[1].split(",").map((x) => x.trim());
    return `rgba(${r},${g},${b},${a})`;
  }
  return color;
}
