/**
 * A tiny WGSL preprocessor, so one `.wgsl` file serves every variant of its kernel family:
 *
 *  - `#if NAME` / `#elif NAME` / `#else` / `#endif` lines keep or drop text (NAME is true when the define
 *    is `true` or a non-zero number; `#if !NAME` negates). Used for the weight storage type (f32, native
 *    f16, f16 packed in u32) and for optional features.
 *  - `$NAME` is replaced by the define's value, for values WGSL needs as constants (register-tile sizes
 *    size function-scope arrays, which `override` constants cannot).
 *
 * Unknown `$NAME`s and unbalanced `#if`s are errors: a typo must not silently pick a variant.
 */
export type Defines = Readonly<Record<string, number | boolean | string>>;

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

export function preprocessWgsl(source: string, defines: Defines, shader = 'shader'): string {
  const out: string[] = [];
  // Each frame: is this branch emitting, has any branch of this #if been taken, was the parent emitting.
  const stack: { emitting: boolean; taken: boolean; parent: boolean }[] = [];
  const emitting = () => (stack.length === 0 ? true : stack[stack.length - 1].emitting);
  source.split('\n').forEach((line, i) => {
    const m = /^\s*#(if|elif|else|endif)\b\s*(\S*)\s*$/.exec(line);
    if (!m) {
      if (emitting()) out.push(line);
      return;
    }
    const [, dir, arg] = m;
    const where = `line ${i + 1}`;
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
  });
  if (stack.length) throw new WgslPreprocessError('unterminated #if', shader);
  return out.join('\n').replace(/\$([A-Z_][A-Z0-9_]*)/g, (_, name: string) => {
    const v = defines[name];
    if (v === undefined || typeof v === 'boolean') throw new WgslPreprocessError(`$${name} has no value`, shader);
    return String(v);
  });
}
