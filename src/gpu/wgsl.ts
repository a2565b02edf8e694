/**
 * A tiny WGSL preprocessor, so one `.wgsl` file serves every variant of its kernel family:
 *
 *  - `#include "NAME"` on a line of its own pastes the snippet NAME (e.g. `#include "block.wgsl"`) in
 *    place of that line. Snippets are the files of shaders/common/, handed over as a name → text map
 *    (src/gpu/shader-includes.ts, which imports them with `?raw` like every other shader source, so the
 *    Vite build, Vitest and the Node bench all see the same text). Includes are expanded first, so a
 *    snippet may itself include others and use `#if` and `$NAME` like the file that includes it. An
 *    unknown name or an include cycle is an error; a snippet included twice is pasted twice (WGSL then
 *    rejects the duplicate declarations), so include each snippet once per variant.
 *  - `#if NAME` / `#elif NAME` / `#else` / `#endif` lines keep or drop text (NAME is true when the define
 *    is `true` or a non-zero number; `#if !NAME` negates). Used for the weight storage type (f32, native
 *    f16, f16 packed in u32) and for optional features.
 *  - `$NAME` is replaced by the define's value, for values WGSL needs as constants (register-tile sizes
 *    size function-scope arrays, which `override` constants cannot).
 *
 * Unknown `$NAME`s, unknown or malformed `#` directives and unbalanced `#if`s are errors: a typo must not
 * silently pick a variant. Errors name the file and line they come from (a snippet's own line when the
 * line came from an include).
 */
export type Defines = Readonly<Record<string, number | boolean | string>>;

/** Snippet name (as written between the quotes of `#include`) → its text. */
export type Includes = Readonly<Record<string, string>>;

export class WgslPreprocessError extends Error {
  constructor(message: string, readonly shader: string) {
    super(`${shader}: ${message}`);
    this.name = 'WgslPreprocessError';
  }
}

function truthy(defines: Defines, name: string): boolean {
  const neg = name.startsWith('!');
  const key = neg ? name.slice(1) : name;
  const v = defines[key];
  const t = v === true || (typeof v === 'number' && v !== 0) || (typeof v === 'string' && v !== '');
  return neg ? !t : t;
}

/** One line of the expanded source, with where it came from (for error messages). */
interface Line {
  readonly text: string;
  readonly file: string;
  readonly line: number;
}

const INCLUDE = /^\s*#include\b(.*)$/;
const INCLUDE_NAME = /^\s+"([^"]+)"\s*$/;
const CONDITIONAL = /^\s*#(if|elif|else|endif)\b\s*(\S*)\s*$/;
const DIRECTIVE = /^\s*#\s*(\w*)/;

/** `source` with every `#include` replaced by its snippet, recursively; `chain` is the include stack. */
function expandIncludes(source: string, file: string, includes: Includes, shader: string, chain: readonly string[]): Line[] {
  const out: Line[] = [];
  source.split('\n').forEach((text, i) => {
    const m = INCLUDE.exec(text);
    if (!m) {
      out.push({ text, file, line: i + 1 });
      return;
    }
    const where = `${file} line ${i + 1}`;
    const name = INCLUDE_NAME.exec(m[1])?.[1];
    if (name === undefined) throw new WgslPreprocessError(`malformed #include at ${where} (write #include "name.wgsl")`, shader);
    if (!Object.hasOwn(includes, name)) {
      const known = Object.keys(includes).sort().join(', ') || 'none';
      throw new WgslPreprocessError(`unknown include "${name}" at ${where} (known: ${known})`, shader);
    }
    if (chain.includes(name)) throw new WgslPreprocessError(`include cycle ${[...chain, name].join(' -> ')} at ${where}`, shader);
    out.push(...expandIncludes(includes[name], name, includes, shader, [...chain, name]));
  });
  return out;
}

export function preprocessWgsl(source: string, defines: Defines, shader = 'shader', includes: Includes = {}): string {
  const lines = expandIncludes(source, shader, includes, shader, [shader]);
  const out: string[] = [];
  // Each frame: is this branch emitting, has any branch of this #if been taken, was the parent emitting.
  const stack: { emitting: boolean; taken: boolean; parent: boolean }[] = [];
  const emitting = () => (stack.length === 0 ? true : stack[stack.length - 1].emitting);
  for (const { text, file, line } of lines) {
    const where = file === shader ? `line ${line}` : `${file} line ${line}`;
    const m = CONDITIONAL.exec(text);
    if (!m) {
      const d = DIRECTIVE.exec(text);
      if (d) {
        const known = ['if', 'elif', 'else', 'endif'].includes(d[1]);
        throw new WgslPreprocessError(`${known ? 'malformed' : 'unknown'} directive #${d[1]} at ${where}`, shader);
      }
      if (emitting()) out.push(text);
      continue;
    }
    const [, dir, arg] = m;
    if (dir === 'if') {
      if (!arg) throw new WgslPreprocessError(`#if without a name at ${where}`, shader);
      const parent = emitting();
      const cond = parent && truthy(defines, arg);
      stack.push({ emitting: cond, taken: cond, parent });
    } else {
      const top = stack[stack.length - 1];
      if (!top) throw new WgslPreprocessError(`#${dir} without #if at ${where}`, shader);
      if (dir === 'elif') {
        const cond = top.parent && !top.taken && truthy(defines, arg);
        top.emitting = cond;
        top.taken ||= cond;
      } else if (dir === 'else') {
        top.emitting = top.parent && !top.taken;
        top.taken = true;
      } else {
        stack.pop();
      }
    }
  }
  if (stack.length) throw new WgslPreprocessError('unterminated #if', shader);
  return out.join('\n').replace(/\$([A-Z_][A-Z0-9_]*)/g, (_, name: string) => {
    const v = defines[name];
    if (v === undefined || typeof v === 'boolean') throw new WgslPreprocessError(`$${name} has no value`, shader);
    return String(v);
  });
}
