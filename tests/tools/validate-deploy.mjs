// Validates the deployment files under deploy/ for tests/Coordinator.Tests/Deploy (installed by test.sh with npm ci).
//
//   node validate-deploy.mjs kubernetes FILE...   every YAML document against the Kubernetes JSON schemas of the
//                                                 pinned kubernetes-models package (its model for apiVersion + kind)
//   node validate-deploy.mjs yaml FILE            the YAML documents as a JSON array (for what docker-compose config
//                                                 prints, which has its anchors and variables resolved)
//   node validate-deploy.mjs dockerfile FILE      the Dockerfile with dockerfile-utils' validator (the one behind
//                                                 VS Code's Dockerfile support): unknown instructions and flags, bad
//                                                 arguments, and its warnings
//
// Prints one JSON array on stdout. For kubernetes, one entry per document: {file, index, apiVersion, kind, name, errors,
// document} (errors empty when valid; document is the parsed manifest, so the caller can check what the schemas
// cannot); for a Dockerfile one entry {file, errors}. Exits 1 only when it could not run (a file missing, YAML that does not parse).
// The schemas accept fields they do not know, as the API's OpenAPI schema does; the caller checks the fields that matter.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [mode, ...files] = process.argv.slice(2);

// "apps/v1" -> kubernetes-models/apps/v1, "v1" -> kubernetes-models/v1
async function modelOf(apiVersion, kind) {
  const module = await import(`kubernetes-models/${apiVersion}`).catch(() => null);
  return module?.[kind] ?? null;
}

async function validateKubernetes(file) {
  const results = [];
  const documents = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [index, document] of documents.entries()) {
    if (document.errors.length > 0) throw new Error(`${file}: document ${index}: ${document.errors.map(e => e.message).join("; ")}`);
    const manifest = document.toJS();
    if (manifest === null) continue; // an empty document (a trailing ---)
    const { apiVersion, kind } = manifest;
    const entry = { file, index, apiVersion, kind, name: manifest.metadata?.name ?? null, errors: [], document: manifest };
    const Model = apiVersion && kind ? await modelOf(apiVersion, kind) : null;
    if (Model === null) {
      entry.errors.push(`no Kubernetes model for apiVersion ${apiVersion} kind ${kind}`);
    } else {
      try {
        new Model(manifest).validate();
      } catch (error) {
        entry.errors.push(error.message);
      }
    }
    results.push(entry);
  }
  return results;
}

function validateDockerfile(file) {
  const { validate } = require("dockerfile-utils");
  const severities = { 1: "error", 2: "warning", 3: "information", 4: "hint" };
  const errors = validate(readFileSync(file, "utf8"), {}).map(d =>
    `${severities[d.severity] ?? d.severity} at line ${d.range.start.line + 1}: ${d.message}`);
  return [{ file, errors }];
}

try {
  let results;
  if (mode === "kubernetes" && files.length > 0) {
    results = (await Promise.all(files.map(validateKubernetes))).flat();
  } else if (mode === "yaml" && files.length === 1) {
    results = parseAllDocuments(readFileSync(files[0], "utf8")).map(document => {
      if (document.errors.length > 0) throw new Error(`${files[0]}: ${document.errors.map(e => e.message).join("; ")}`);
      return document.toJS();
    });
  } else if (mode === "dockerfile" && files.length === 1) {
    results = validateDockerfile(files[0]);
  } else {
    throw new Error("usage: node validate-deploy.mjs kubernetes FILE... | yaml FILE | dockerfile FILE");
  }
  process.stdout.write(JSON.stringify(results));
} catch (error) {
  process.stderr.write(`validate-deploy.mjs: ${error.message}\n`);
  process.exit(1);
}
