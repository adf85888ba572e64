// Builds dist/ from ts/ and pkg/: the SDK (easel.js + .d.ts), the page's Loro (loro.js), the
// demo page (index.html, demo.js), and the two wasm files next to the modules that load them.
// Deterministic: the same sources give the same bytes. Usage: node ts/build.mjs [outdir]
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = process.argv[2] ?? join(root, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// The demo imports the SDK and Loro as the sibling modules, so a page loads each once.
const siblings = {
  name: "siblings",
  setup(b) {
    b.onResolve({ filter: /^\.\/(easel|loro)\.js$/ }, (args) =>
      args.importer.endsWith("demo.ts") ? { path: args.path, external: true } : undefined,
    );
  },
};
await build({
  entryPoints: ["easel", "loro", "demo"].map((n) => join(root, "ts", `${n}.ts`)),
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
  plugins: [siblings],
});
copyFileSync(join(root, "ts", "page", "index.html"), join(out, "index.html"));
copyFileSync(join(root, "pkg", "easel_web_bg.wasm"), join(out, "easel_web_bg.wasm"));
copyFileSync(join(root, "node_modules", "loro-crdt", "web", "loro_wasm_bg.wasm"), join(out, "loro_wasm_bg.wasm"));
execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-p", root, "--declarationDir", out], { stdio: "inherit" });
