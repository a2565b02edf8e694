// Rules about which code may import which, checked on the source text (no bundler needed).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : /\.(ts|mts|js|mjs)$/.test(name) ? [p] : [];
  });
}

/** Every module specifier in `text`: `from '…'`, `import '…'`, `import('…')`, `typeof import('…')`. */
function specifiers(text: string): string[] {
  return [...text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*(['"])([^'"\n]+)\1/g)].map((m) => m[2]);
}

/** A relative specifier resolved to a repository path with '/' separators (the query, e.g. `?raw`, dropped). */
function target(file: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  return relative(root, resolve(dirname(file), spec.replace(/\?.*$/, ''))).split(sep).join('/');
}

/** What shipped code must never import, and why. */
const FORBIDDEN: readonly { test: (path: string) => boolean; why: string }[] = [
  { test: (p) => p === 'src/reference' || p.startsWith('src/reference/'), why: 'the CPU reference is a test oracle (src/reference/), never shipped' },
  { test: (p) => p === 'src/model/safetensors-writer.ts', why: 'the safetensors writer is for tests and benches (f16 conversion: src/model/f16.ts)' },
];

/** `file → target: why` for every forbidden import in the given files' texts. */
function forbiddenImports(files: readonly { path: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const { path, text } of files) {
    for (const spec of specifiers(text)) {
      const t = target(path, spec);
      const rule = t && FORBIDDEN.find((r) => r.test(t));
      if (rule) out.push(`${relative(root, path).split(sep).join('/')} imports ${t}: ${rule.why}`);
    }
  }
  return out;
}

/** Shipped code: the library (src/, the reference aside) and the demo app. */
function shippedFiles(): { path: string; text: string }[] {
  const src = walk(join(root, 'src')).filter((p) => !relative(join(root, 'src'), p).split(sep).join('/').startsWith('reference/'));
  return [...src, ...walk(join(root, 'demo'))].map((path) => ({ path, text: readFileSync(path, 'utf8') }));
}

describe('module structure', () => {
  it('finds the import forms it checks, and flags a planted import', () => {
    const text = [
      "import { a } from '../reference/sampling.ts';",
      "import type { B } from '../../src/reference/index.ts';",
      "export { c } from '../model/safetensors-writer.ts';",
      "import '../reference/model.ts';",
      "const m = await import('../reference/linalg.ts');",
      "type T = typeof import('../model/safetensors-writer.ts');",
      "import { ok } from './host.ts';",
      "import raw from '../../shaders/sample.wgsl?raw';",
      "import * as Comlink from 'comlink';",
    ].join('\n');
    expect(specifiers(text)).toHaveLength(9);
    const found = forbiddenImports([{ path: join(root, 'src/api/planted.ts'), text }]);
    expect(found).toHaveLength(6);
    expect(found[0]).toBe('src/api/planted.ts imports src/reference/sampling.ts: the CPU reference is a test oracle (src/reference/), never shipped');
    expect(forbiddenImports([{ path: join(root, 'src/api/fine.ts'), text: "import { x } from '../engine/sampling-params.ts';" }])).toEqual([]);
  });

  it('shipped code (src/ but src/reference/, and demo/) never imports the CPU reference or the safetensors writer', () => {
    const files = shippedFiles();
    expect(files.length).toBeGreaterThan(40);
    expect(files.some((f) => f.path.endsWith(join('src', 'gpu', 'ops', 'sample.ts')))).toBe(true);
    expect(forbiddenImports(files)).toEqual([]);
  });

  it('src/worker/ is gone: the worker lives with the API it serves (src/api/worker.ts)', () => {
    expect(() => statSync(join(root, 'src', 'worker'))).toThrow();
    expect(statSync(join(root, 'src', 'api', 'worker.ts')).isFile()).toBe(true);
  });

  /** Relative imports of the files under `dir` that resolve outside `allowed`. */
  function importsOutside(dir: string, allowed: (target: string) => boolean): string[] {
    return walk(join(root, dir)).flatMap((path) =>
      specifiers(readFileSync(path, 'utf8'))
        .map((spec) => target(path, spec))
        .filter((t): t is string => t !== null && !allowed(t))
        .map((t) => `${relative(root, path).split(sep).join('/')} imports ${t}`),
    );
  }

  it('the widget uses only the public API (src/api/index.ts) and its own files', () => {
    expect(importsOutside('src/widget', (t) => t.startsWith('src/widget/') || t === 'src/api/index.ts')).toEqual([]);
    // The check can fail: an import past the API is found.
    const planted = specifiers("import { EngineAbortedError } from '../engine/errors.ts';").map((s) => target(join(root, 'src/widget/element.ts'), s));
    expect(planted).toEqual(['src/engine/errors.ts']);
  });

  it('the shared engine knows no family: src/engine/ reaches src/families/ only through its registry', () => {
    expect(importsOutside('src/engine', (t) => !t.startsWith('src/families/') || t === 'src/families/index.ts')).toEqual([]);
  });
});
