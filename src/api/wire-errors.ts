/**
 * Errors across the worker boundary. Comlink's default handler sends only name, message and stack and
 * rebuilds a plain Error, so `instanceof EngineAbortedError` and fields such as `processed` would be lost.
 * This handler sends the name, message, stack and every own cloneable field, and rebuilds the class
 * the name belongs to (without running its constructor, which would rewrite the message).
 */
import * as Comlink from 'comlink';
import * as PUBLIC_ERRORS from './error-classes.ts';
import {
  FileTruncatedError,
  HeaderMalformedError,
  HeaderTooLargeError,
  MissingTensorError,
  NonFiniteWeightError,
  ShapeMismatchError,
  UnexpectedTensorError,
  UnsupportedDtypeError,
} from '../model/errors.ts';

type ErrorClass = abstract new (...args: never[]) => Error;

/** Checked here: error-classes.ts may export nothing but error classes. */
const PUBLIC: Readonly<Record<string, ErrorClass>> = PUBLIC_ERRORS;

/**
 * Every class that keeps its identity across the worker, by a stable name. Names are spelled out, never
 * taken from `Class.name`: a minified build renames classes (and with them the constructor `name`), and
 * the page and the worker are separate bundles that may rename the same class differently. The public
 * classes are named by their export names (error-classes.ts); the rest are the loader's
 * ModelFormatError subclasses, which the package does not export (callers catch them as
 * ModelFormatError) but whose fields (`tensor`, `expected`, …) the page still reads, and the built-ins.
 */
export const WIRE_ERROR_CLASSES: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>([
  ...Object.entries(PUBLIC),
  ['FileTruncatedError', FileTruncatedError],
  ['HeaderMalformedError', HeaderMalformedError],
  ['HeaderTooLargeError', HeaderTooLargeError],
  ['UnsupportedDtypeError', UnsupportedDtypeError],
  ['MissingTensorError', MissingTensorError],
  ['UnexpectedTensorError', UnexpectedTensorError],
  ['ShapeMismatchError', ShapeMismatchError],
  ['NonFiniteWeightError', NonFiniteWeightError],
  ['Error', Error],
  ['RangeError', RangeError],
  ['TypeError', TypeError],
  ['SyntaxError', SyntaxError],
  ['ReferenceError', ReferenceError],
  ['EvalError', EvalError],
  ['URIError', URIError],
]);
const KNOWN = WIRE_ERROR_CLASSES;
const NAME_OF = new Map<unknown, string>([...KNOWN].map(([name, cls]) => [cls.prototype, name]));

/**
 * The nearest known class of `e` (by its stable name) and the name to show: the class's own stable
 * name when `e` is exactly that class, else `e.name` (an unknown subclass keeps its own name).
 */
function classify(e: Error): { cls: string; name: string } {
  let exact = true;
  for (let p: unknown = Object.getPrototypeOf(e); p; p = Object.getPrototypeOf(p)) {
    const n = NAME_OF.get(p);
    if (n) return { cls: n, name: exact ? (n === 'Error' ? e.name : n) : e.name };
    exact = false;
  }
  return { cls: 'Error', name: e.name };
}

/** An error as plain data. */
export interface WireError {
  /** Stable name of the nearest class both sides know. */
  readonly cls: string;
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly fields: Record<string, unknown>;
}

function cloneable(v: unknown): boolean {
  if (v === null || ['string', 'number', 'boolean', 'undefined', 'bigint'].includes(typeof v)) return true;
  if (typeof v !== 'object') return false;
  try {
    structuredClone(v);
    return true;
  } catch {
    return false;
  }
}

export function toWireError(e: Error): WireError {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'name' || k === 'message' || k === 'stack') continue;
    fields[k] = cloneable(v) ? v : String(v);
  }
  if ('cause' in e && e.cause !== undefined) fields.cause = e.cause instanceof Error ? toWireError(e.cause) : cloneable(e.cause) ? e.cause : String(e.cause);
  return { ...classify(e), message: e.message, stack: e.stack, fields };
}

export function fromWireError(w: WireError): Error {
  const cls = KNOWN.get(w.cls) ?? Error;
  // A real Error (with the engine's stack) whose prototype is the named class's.
  const e = Reflect.construct(Error, [w.message], cls) as Error;
  const { cause, ...fields } = w.fields;
  Object.assign(e, fields);
  if (cause !== undefined) {
    const c = cause as Partial<WireError>;
    Object.defineProperty(e, 'cause', { value: c && typeof c === 'object' && typeof c.cls === 'string' && c.fields ? fromWireError(c as WireError) : cause, writable: true, configurable: true });
  }
  Object.defineProperty(e, 'name', { value: w.name, writable: true, configurable: true });
  if (w.stack) Object.defineProperty(e, 'stack', { value: w.stack, writable: true, configurable: true });
  return e;
}

/**
 * Replaces comlink's "throw" handler; call on both sides (page and worker) before the first call.
 * Idempotent.
 */
export function installErrorTransfer(): void {
  const original = Comlink.transferHandlers.get('throw') as Comlink.TransferHandler<unknown, unknown> | undefined;
  if (!original || (original as { ttt?: boolean }).ttt) return;
  const handler: Comlink.TransferHandler<{ value: unknown }, { isError: boolean; value: unknown }> & { ttt: true } = {
    ttt: true,
    // comlink wraps a thrown value in an object keyed by a private symbol: let the original recognise it.
    canHandle: (v: unknown): v is { value: unknown } => original.canHandle(v),
    serialize({ value }) {
      if (value instanceof Error) return [{ isError: true, value: toWireError(value) }, []];
      return [{ isError: false, value: cloneable(value) ? value : String(value) }, []];
    },
    deserialize(s) {
      if (s.isError) throw fromWireError(s.value as WireError);
      throw s.value;
    },
  };
  Comlink.transferHandlers.set('throw', handler as Comlink.TransferHandler<unknown, unknown>);
}
