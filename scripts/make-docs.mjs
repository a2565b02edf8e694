#!/usr/bin/env node
// Builds the demo's bundled long documents in public/docs/ (gzip, decompressed in the browser) and their
// index.json. Reproducible: the same .debs and the same commit give byte-identical files.
//
//   node scripts/make-docs.mjs [--commit REF] [--debs DIR]
//
// - kjv-pentateuch: Genesis to Deuteronomy of the King James Bible (public domain), as printed by the
//   `bible` program of Debian's `bible-kjv` package from the data file of Debian's `bible-kjv-text`
//   (both fetched with `apt-get download`, unpacked with `dpkg-deb -x`, never installed).
// - ttt-web-source: this project's own TypeScript and WGSL (src/, shaders/) at a commit (MIT), one file
//   after another with a header line each: long-range repetition, the kind of input where test-time
//   training should help.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { root } from './ensure-deps.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const outDir = join(root, 'public', 'docs');
const debsDir = arg('--debs', join(root, 'data', 'docs-debs'));
const commit = execFileSync('git', ['rev-parse', arg('--commit', 'HEAD')], { cwd: root, encoding: 'utf8' }).trim();

/** The cached .deb of `pkg`, downloaded with apt-get when absent. */
function deb(pkg) {
  mkdirSync(debsDir, { recursive: true });
  const find = () => readdirSync(debsDir).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb')).sort();
  if (find().length === 0) {
    const r = spawnSync('apt-get', ['download', pkg], { cwd: debsDir, stdio: 'inherit' });
    if (r.status !== 0 || find().length === 0) throw new Error(`apt-get download ${pkg} failed`);
  }
  const file = find().at(-1);
  const version = execFileSync('dpkg-deb', ['-f', join(debsDir, file), 'Version'], { encoding: 'utf8' }).trim();
  return { pkg, file, version, path: join(debsDir, file) };
}

function kjvPentateuch() {
  const tools = deb('bible-kjv');
  const text = deb('bible-kjv-text');
  const tmp = mkdtempSync(join(tmpdir(), 'ttt-docs-'));
  try {
    for (const d of [tools, text]) execFileSync('dpkg-deb', ['-x', d.path, tmp]);
    // -p: where bible.data lies; -l 80: lines broken at 80 columns; default pretty-printing (book and
    // chapter headings, verse numbers).
    const out = execFileSync(join(tmp, 'usr/bin/bible'), ['-p', join(tmp, 'usr/lib'), '-l', '80', 'Gen1:1-Deu34:12'], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    return {
      text: out.replace(/^\n+/, ''),
      origin: `Debian packages ${text.pkg} ${text.version} (the text) and ${tools.pkg} ${tools.version} (the \`bible\` program that prints it): \`bible -l 80 Gen1:1-Deu34:12\``,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function projectSource() {
  const files = execFileSync('git', ['ls-tree', '-r', '--name-only', commit, '--', 'src', 'shaders'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter((f) => /\.(ts|wgsl)$/.test(f))
    .sort();
  const parts = files.map((f) => `// ===== ${f} =====\n${execFileSync('git', ['show', `${commit}:${f}`], { cwd: root, encoding: 'utf8', maxBuffer: 16 << 20 })}`);
  return { text: parts.join('\n'), origin: `this repository at commit ${commit}: ${files.length} files under src/ and shaders/ (git ls-tree), in path order` };
}

const DOCS = [
  {
    id: 'kjv-pentateuch',
    title: 'The Five Books of Moses (King James Bible, Genesis to Deuteronomy)',
    licence: 'public domain (the 1611 translation; see the package copyright)',
    make: kjvPentateuch,
  },
  {
    id: 'ttt-web-source',
    title: "ttt-web's own source code (TypeScript and WGSL)",
    licence: 'MIT (this project)',
    make: projectSource,
  },
];

mkdirSync(outDir, { recursive: true });
const index = [];
for (const d of DOCS) {
  const { text, origin } = d.make();
  const bytes = Buffer.from(text, 'utf8');
  // Node's gzip writes no file name and a zero mtime: the same text gives the same bytes.
  const gz = gzipSync(bytes, { level: 9 });
  const file = `${d.id}.txt.gz`;
  writeFileSync(join(outDir, file), gz);
  index.push({
    id: d.id,
    title: d.title,
    file,
    bytes: bytes.length,
    characters: [...text].length,
    gzipBytes: gz.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    origin,
    licence: d.licence,
  });
  console.log(`${file}: ${bytes.length} bytes, ${gz.length} gzipped`);
}
writeFileSync(join(outDir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
if (!existsSync(join(outDir, 'README.md'))) console.warn('public/docs/README.md is missing: it states where the documents come from');
