// Builds the project's Motoko canisters with the pinned `motoko` npm package.
//
// usage: node tools/moc/build.js <manifest.json> [--out-dir DIR]
//
// The manifest lists canisters: {"canisters": [{"name", "main", "out_dir",
// "packages": {"alias": "dir"}}]}, or whole folders of them:
// {"dir": "tests/canisters/src", "out_dir": ..., "packages": ...} builds every
// <dir>/<name>/Main.mo as <name>. Paths are relative to the manifest's folder.
// For each canister every .mo file under main's folder is written into moc's
// virtual file system, so relative imports work as with a local moc. Output is
// <out_dir>/<name>.wasm and <name>.did, plus <out_dir>/SHA256SUMS.  moc's output
// is deterministic for one compiler instance, but the js_of_ocaml compiler keeps
// global state (fresh-name counters) across compilations: a canister's bytes would
// depend on what was built before it. So every canister is compiled in a child
// process of its own (two at a time), and CI can rebuild and compare the sums.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const mo = require('motoko');

function moFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...moFiles(full));
    else if (entry.name.endsWith('.mo')) out.push(full);
  }
  return out.sort();
}

function writeTree(srcDir, vfsDir) {
  for (const file of moFiles(srcDir)) {
    mo.write(path.posix.join(vfsDir, path.relative(srcDir, file).split(path.sep).join('/')),
      fs.readFileSync(file, 'utf8'));
  }
}

function build(root, spec, outOverride) {
  mo.clearPackages();
  mo.loadPackage(require('motoko/packages/latest/core.json'));
  for (const [alias, dir] of Object.entries(spec.packages || {})) {
    writeTree(path.join(root, dir), `pkg/${alias}`);
    mo.usePackage(alias, `pkg/${alias}`);
  }
  const mainAbs = path.join(root, spec.main);
  const vfsDir = `src/${spec.name}`;
  writeTree(path.dirname(mainAbs), vfsDir);
  const mainVfs = path.posix.join(vfsDir, path.basename(mainAbs));
  // Warnings are printed, not hidden: a non-exhaustive switch is a bug waiting.
  for (const d of mo.check(mainVfs)) {
    const where = `${d.source}:${d.range.start.line + 1}:${d.range.start.character + 1}`;
    console.error(`${d.severity === 1 ? 'error' : 'warning'} ${d.code} ${where}: ${d.message}`);
  }
  const result = mo.wasm(mainVfs, 'ic');
  const outDir = outOverride || path.join(root, spec.out_dir);
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${spec.name}.wasm`), result.wasm);
  fs.writeFileSync(path.join(outDir, `${spec.name}.did`), result.candid);
  return [outDir, `${spec.name}.wasm`, crypto.createHash('sha256').update(result.wasm).digest('hex')];
}

function expand(root, entries) {
  const specs = [];
  for (const entry of entries) {
    if (!entry.dir) { specs.push(entry); continue; }
    for (const name of fs.readdirSync(path.join(root, entry.dir)).sort()) {
      const main = path.join(entry.dir, name, 'Main.mo');
      if (fs.existsSync(path.join(root, main))) specs.push({ ...entry, name, main });
    }
  }
  return specs;
}

function buildOne(specJson) {
  const { root, spec, outOverride } = JSON.parse(specJson);
  try {
    const [outDir, file, sum] = build(root, spec, outOverride);
    process.stdout.write(JSON.stringify({ outDir, file, sum }) + '\n');
  } catch (err) {
    console.error(`moc failed for ${spec.name}:\n${err.message || err}`);
    process.exit(1);
  }
}

function buildInChild(job) {
  const { spawn } = require('child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, '--one', JSON.stringify(job)],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`building ${job.spec.name} failed (exit ${code})`));
      else resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

async function buildAll(root, specs, outOverride) {
  const results = [];
  const queue = specs.slice();
  const workers = Array.from({ length: 2 }, async () => {
    while (queue.length) {
      const spec = queue.shift();
      const result = await buildInChild({ root, spec, outOverride });
      console.log(`built ${spec.name} (moc ${mo.version}) ${result.sum.slice(0, 16)}`);
      results.push(result);
    }
  });
  await Promise.all(workers);
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--one') return buildOne(args[1]);
  const manifestPath = args[0];
  const outIdx = args.indexOf('--out-dir');
  const outOverride = outIdx >= 0 ? args[outIdx + 1] : null;
  if (!manifestPath) {
    console.error('usage: node tools/moc/build.js <manifest.json> [--out-dir DIR]');
    process.exit(2);
  }
  const root = path.dirname(path.resolve(manifestPath));
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const sums = new Map();
  let results;
  try {
    results = await buildAll(root, expand(root, manifest.canisters), outOverride);
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
  for (const { outDir, file, sum } of results) {
    if (!sums.has(outDir)) sums.set(outDir, []);
    sums.get(outDir).push(`${sum}  ${file}`);
  }
  for (const [outDir, lines] of sums) {
    fs.writeFileSync(path.join(outDir, 'SHA256SUMS'), lines.sort().join('\n') + '\n');
  }
}

main();
