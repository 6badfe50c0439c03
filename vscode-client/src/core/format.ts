/** Formatting shared by the extension host and the webview (plain TypeScript, no Node or DOM APIs). */

/** A byte count for a person: "512 B", "1.5 MiB". */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
