import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SHADER_INCLUDES } from '../../src/gpu/shader-includes.ts';
import { preprocessWgsl, WgslPreprocessError } from '../../src/gpu/wgsl.ts';

const SHADERS = fileURLToPath(new URL('../../shaders', import.meta.url));

describe('WGSL preprocessor', () => {
  it('keeps and drops #if / #elif / #else sections and substitutes $NAME', () => {
    const src = ['a', '#if X', 'x $N', '#elif !Y', 'not y', '#else', 'else', '#endif', 'b'].join('\n');
    expect(preprocessWgsl(src, { X: true, N: 3 })).toBe('a\nx 3\nb');
    expect(preprocessWgsl(src, { X: 0 })).toBe('a\nnot y\nb');
    expect(preprocessWgsl(src, { Y: 'yes' })).toBe('a\nelse\nb');
  });

  it('rejects unbalanced #if, a missing $NAME and unknown or malformed directives', () => {
    expect(() => preprocessWgsl('#if A\nx', {}, 'k.wgsl')).toThrow('k.wgsl: unterminated #if');
    expect(() => preprocessWgsl('x\n#endif', {})).toThrow('#endif without #if at line 2');
    expect(() => preprocessWgsl('$N', {})).toThrow('$N has no value');
    expect(() => preprocessWgsl('#ifdef A\n#endif', {})).toThrow('unknown directive #ifdef at line 1');
    expect(() => preprocessWgsl('#if A B\n#endif', {})).toThrow('malformed directive #if at line 1');
  });

  it('pastes #include snippets before #if processing, nested, with the includer\'s defines', () => {
    const includes = {
      'outer.wgsl': 'outer $N\n#include "inner.wgsl"',
      'inner.wgsl': '#if X\ninner x\n#else\ninner\n#endif',
    };
    const src = 'head\n  #include "outer.wgsl"  \ntail';
    expect(preprocessWgsl(src, { N: 7, X: true }, 's.wgsl', includes)).toBe('head\nouter 7\ninner x\ntail');
    expect(preprocessWgsl(src, { N: 7 }, 's.wgsl', includes)).toBe('head\nouter 7\ninner\ntail');
    // An include inside a dropped section is never expanded into the output.
    expect(preprocessWgsl('#if X\n#include "inner.wgsl"\n#endif\nend', {}, 's.wgsl', includes)).toBe('end');
  });

  it('names an unknown include, a malformed one, and an include cycle', () => {
    const includes = { 'a.wgsl': '#include "b.wgsl"', 'b.wgsl': 'x\n#include "a.wgsl"', 'self.wgsl': '#include "self.wgsl"' };
    const err = (src: string) => {
      try {
        preprocessWgsl(src, {}, 'main.wgsl', includes);
      } catch (e) {
        expect(e).toBeInstanceOf(WgslPreprocessError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err('ok\n#include "nope.wgsl"')).toBe('main.wgsl: unknown include "nope.wgsl" at main.wgsl line 2 (known: a.wgsl, b.wgsl, self.wgsl)');
    expect(err('#include nope.wgsl')).toMatch(/^main\.wgsl: malformed #include at main\.wgsl line 1/);
    expect(err('#include "a.wgsl"')).toBe('main.wgsl: include cycle main.wgsl -> a.wgsl -> b.wgsl -> a.wgsl at b.wgsl line 2');
    expect(err('#include "self.wgsl"')).toBe('main.wgsl: include cycle main.wgsl -> self.wgsl -> self.wgsl at self.wgsl line 1');
    expect(() => preprocessWgsl('#include "a.wgsl"', {})).toThrow('unknown include "a.wgsl" at shader line 1 (known: none)');
  });

  it('reports errors inside a snippet at the snippet\'s own line', () => {
    expect(() => preprocessWgsl('a\n#include "s.wgsl"', {}, 'main.wgsl', { 's.wgsl': 'x\ny\n#endif' })).toThrow('#endif without #if at s.wgsl line 3');
  });

  it('every file of shaders/common/ is in the include map, as it is on disk', () => {
    const common = readdirSync(join(SHADERS, 'common')).filter((f) => f.endsWith('.wgsl')).sort();
    expect(Object.keys(SHADER_INCLUDES).sort()).toEqual(common);
    for (const f of common) expect(SHADER_INCLUDES[f]).toBe(readFileSync(join(SHADERS, 'common', f), 'utf8'));
  });

  it('the Block struct and the workgroup reductions have one source, in shaders/common/', () => {
    const kernels = readdirSync(SHADERS).filter((f) => f.endsWith('.wgsl'));
    for (const f of kernels) {
      const text = readFileSync(join(SHADERS, f), 'utf8');
      expect(text, f).not.toMatch(/struct Block\b/);
      // A halving tree over workgroup memory (`s /= 2u`, `s >>= 1u` or `stride /= 2u` loops) lives in reduce.wgsl only.
      expect(text, f).not.toMatch(/for \(var \w+ = \(?WG \/ 2u/);
      if (/\bblk\b/.test(text)) expect(text, f).toContain('#include "block.wgsl"');
      if (/\bwg(Sum|Sum2f|SumU|Argmax|MinMax|RedF|RedU)\b/.test(text)) expect(text, f).toContain('#include "reduce.wgsl"');
    }
    expect(SHADER_INCLUDES['block.wgsl']).toContain('struct Block { rows: u32, pos0: u32, _a: u32, _b: u32 }');
  });
});
