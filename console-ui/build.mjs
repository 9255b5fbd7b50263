// Vendors uPlot's built files (and its licence) into the Python package, so that
// `pip install` needs no Node.js and the console page loads nothing from the internet.
//   node build.mjs          copy node_modules/uplot/dist/... into src/pgmcp/console/static/vendor
//   node build.mjs --check  exit 1 when the committed copies differ from node_modules
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "pgmcp", "console", "static", "vendor");
const pkg = JSON.parse(readFileSync(join(here, "node_modules", "uplot", "package.json"), "utf8"));
const files = [
  ["node_modules/uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["node_modules/uplot/LICENSE", "uPlot.LICENSE"],
];
const wanted = new Map(files.map(([src, dst]) => [dst, readFileSync(join(here, src))]));
wanted.set("VERSIONS.txt", Buffer.from(`uplot ${pkg.version} (MIT, see uPlot.LICENSE)\n`));

if (process.argv.includes("--check")) {
  const stale = [...wanted].filter(([dst, body]) => {
    const path = join(out, dst);
    return !existsSync(path) || !readFileSync(path).equals(body);
  });
  if (stale.length) {
    console.error(`console assets differ from a fresh build: ${stale.map(([d]) => d).join(", ")}; run make console-assets`);
    process.exit(1);
  }
  console.log(`console assets match uplot ${pkg.version}`);
} else {
  mkdirSync(out, { recursive: true });
  for (const [dst, body] of wanted) writeFileSync(join(out, dst), body);
  console.log(`vendored uplot ${pkg.version} into ${out}`);
}
