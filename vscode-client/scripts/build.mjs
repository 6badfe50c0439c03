// Bundles the extension (Node, CommonJS, `vscode` external), the webview page (browser IIFE + CSS)
// and, with --tests, the plain-TypeScript core for the Node tests. Run by `vsce package` as well.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import * as path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const common = { bundle: true, sourcemap: false, logLevel: "warning", absWorkingDir: root, legalComments: "none" };

await Promise.all([
  esbuild.build({
    ...common, entryPoints: ["src/extension.ts"], outfile: "dist/extension.js",
    platform: "node", format: "cjs", target: "node20", external: ["vscode"], minify: true,
  }),
  esbuild.build({
    ...common, entryPoints: { webview: "src/webview/main.ts", compare: "src/webview/compare.ts" }, outdir: "dist",
    platform: "browser", format: "iife", target: "chrome120", minify: true,
  }),
  ...(process.argv.includes("--tests")
    ? [esbuild.build({
        ...common, entryPoints: ["src/core/index.ts"], outfile: "dist/test/core.cjs",
        platform: "node", format: "cjs", target: "node20",
      })]
    : []),
]);
