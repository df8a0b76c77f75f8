// Runs one Node example from the docs, as written, against a running gateway
// (tests/test_node_examples.py extracts the code blocks and drives this).
//
//   node doc_example.mjs BASE_URL [VARIABLE...] < example.js
//
// The example's own address (http://127.0.0.1:10000) becomes BASE_URL. What the
// example passes to console.log is printed as one `LOG <json array>` line per call;
// after it ran, the named top-level variables are printed as one `VARS <json>` line.
// The example runs as a module file under node_modules/ so that its imports
// ("openai", "@anthropic-ai/sdk") resolve to this package's pinned versions.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [baseUrl, ...variables] = process.argv.slice(2);
if (!baseUrl) {
  console.error("usage: node doc_example.mjs BASE_URL [VARIABLE...] < example.js");
  process.exit(2);
}
const code = readFileSync(0, "utf8").replaceAll("http://127.0.0.1:10000", baseUrl);

const print = console.log.bind(console);
globalThis.__docExampleLog = (...args) => print("LOG " + JSON.stringify(args));
globalThis.__docExampleVars = (vars) => print("VARS " + JSON.stringify(vars));

// Imports are hoisted in a module, so the prologue may precede them.
const module = [
  "console.log = globalThis.__docExampleLog;",
  code,
  `globalThis.__docExampleVars({ ${variables.join(", ")} });`,
].join("\n");

const dir = join(dirname(fileURLToPath(import.meta.url)), "node_modules", ".doc-examples");
mkdirSync(dir, { recursive: true });
const file = join(dir, `example-${process.pid}.mjs`);
writeFileSync(file, module);
await import(pathToFileURL(file).href);
