// Type-checks Grafana dashboard JSON files against @grafana/schema's `Dashboard` type.
//
//   node check.mjs ../dashboards/operations.json ../dashboards/cost.json
//
// Each file becomes, in memory, `const dashboard: JsonOf<Dashboard> = <the JSON>;` and
// the TypeScript compiler checks it as an object literal: required fields, field types,
// enum values and unknown fields (excess property checks) are all enforced. Exits 1 and
// prints every diagnostic when a file does not fit.
import { readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node check.mjs DASHBOARD.json...");
  process.exit(2);
}

const virtual = new Map();
for (const file of files) {
  const json = readFileSync(resolve(file), "utf8");
  JSON.parse(json); // a syntax error is reported here, with its position
  const name = join(here, `__check_${basename(file).replace(/[^A-Za-z0-9]/g, "_")}.ts`);
  virtual.set(
    name,
    `import type { Dashboard } from "@grafana/schema";\n` +
      `import type { JsonOf } from "./json-of";\n` +
      `export const dashboard: JsonOf<Dashboard> = ${json};\n`,
  );
}

const config = ts.getParsedCommandLineOfConfigFile(join(here, "tsconfig.json"), {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (d) => {
    throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  },
});
const host = ts.createCompilerHost(config.options);
const readFile = host.readFile.bind(host);
const fileExists = host.fileExists.bind(host);
const getSourceFile = host.getSourceFile.bind(host);
host.readFile = (name) => virtual.get(name) ?? readFile(name);
host.fileExists = (name) => virtual.has(name) || fileExists(name);
host.getSourceFile = (name, language, ...rest) =>
  virtual.has(name)
    ? ts.createSourceFile(name, virtual.get(name), language, true)
    : getSourceFile(name, language, ...rest);

const program = ts.createProgram([...virtual.keys()], { ...config.options, noEmit: true }, host);
const diagnostics = ts.getPreEmitDiagnostics(program);
for (const d of diagnostics) {
  const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
  if (d.file && d.start !== undefined) {
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const shown = files[[...virtual.keys()].indexOf(d.file.fileName)] ?? d.file.fileName;
    // The JSON starts on line 3 of the generated source.
    console.error(`${shown}:${line - 1}:${character + 1}: ${text}`);
  } else {
    console.error(text);
  }
}
if (diagnostics.length > 0) {
  console.error(`${diagnostics.length} error(s): the dashboards do not fit @grafana/schema's Dashboard type`);
  process.exit(1);
}
console.log(`${files.length} dashboard(s) fit @grafana/schema's Dashboard type`);
